"""Fixtures of the job tests (tests/jobs/support.py): a tiny repo with training jobs on SQLite
and PostgreSQL."""

from tests.jobs.support import backend, tiny_repo

__all__ = ["backend", "tiny_repo"]
