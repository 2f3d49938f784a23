"""Fixtures of the QA tests: the control tests' repo with a registered model (SQLite and
PostgreSQL) and a settable clock."""

from tests.deploy.control_support import backend, clock, fraud_store, repo

__all__ = ["backend", "clock", "fraud_store", "repo"]
