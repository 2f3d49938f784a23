"""A hung registry database: another transaction holds an exclusive lock on the PostgreSQL
registry's head table, so every head check blocks. /health must still answer within about a
second (a 503 naming the registry), not wait for the lock; once the lock goes, it answers 200.
The lock is taken on the shared test database and always released."""

from __future__ import annotations

import time
from pathlib import Path

import httpx2 as httpx
import pytest
import sqlalchemy as sa

from parity import FeatureStore
from parity.registry.sql import normalize_url
from parity.serving.app import create_app
from tests.conftest import DRIVER_REPO, write_repo
from tests.inference.serving_helpers import running


@pytest.mark.postgres
def test_health_answers_fast_while_the_registry_database_hangs(
    tmp_path: Path, postgres_url: str, project_name: str
) -> None:
    extra = f"registry:\n  type: postgres\n  url: {postgres_url}\n  cache_ttl_seconds: 0.05\n"
    store = FeatureStore(write_repo(tmp_path / "r", DRIVER_REPO, project=project_name, extra=extra))
    store.apply()
    engine = sa.create_engine(normalize_url(postgres_url))
    try:
        with running(create_app(store)) as address:
            url = f"http://{address}/health"
            assert httpx.get(url, timeout=5).json()["registry_version"] == 1
            with engine.connect() as locker:
                locker.execute(sa.text("SET lock_timeout = '5s'"))
                locker.execute(
                    sa.text("LOCK TABLE parity_registry_projects IN ACCESS EXCLUSIVE MODE")
                )
                time.sleep(0.1)  # past the cache interval: the next health check reads the head
                timings = []
                for _ in range(3):
                    started = time.monotonic()
                    reply = httpx.get(url, timeout=10)
                    timings.append(time.monotonic() - started)
                    assert reply.status_code == 503, reply.text
                    assert reply.json()["error"]["code"] == "registry_unavailable"
                assert max(timings) < 2.5, timings  # the health timeout is 1 s
                locker.rollback()  # the lock goes
            deadline = time.monotonic() + 10
            while (reply := httpx.get(url, timeout=5)).status_code != 200:
                assert time.monotonic() < deadline, reply.text
                time.sleep(0.1)
            assert reply.json()["registry_version"] == 1
    finally:
        engine.dispose()
        store.registry.teardown()
        store.close()
