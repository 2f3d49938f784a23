"""Fixtures of the control tests (tests/deploy/control_support.py): a repo with a registered model
on SQLite and PostgreSQL, and a settable clock."""

from tests.deploy.control_support import backend, clock, fraud_store, repo

__all__ = ["backend", "clock", "fraud_store", "repo"]
