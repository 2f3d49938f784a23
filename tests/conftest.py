"""Shared fixtures: real PostgreSQL and Redis connections, and small feature repos on disk.

With CI=true an unreachable service fails the run instead of skipping.
"""

from __future__ import annotations

import os
import textwrap
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

POSTGRES_URL = os.environ.get("PARITY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("PARITY_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _unreachable(service: str, error: Exception) -> None:
    message = f"{service} is unreachable: {error}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message} (CI=true: service tests must not skip)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    import sqlalchemy as sa

    from parity.registry.sql import normalize_url

    engine = sa.create_engine(normalize_url(POSTGRES_URL))
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as error:  # any failure to connect means the service is not usable
        _unreachable("PostgreSQL", error)
    finally:
        engine.dispose()
    return POSTGRES_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except Exception as error:  # any failure to connect means the service is not usable
        _unreachable("Redis", error)
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def project_name() -> str:
    """A project name no other test (or earlier run) uses, so tests share one database safely."""
    return f"t_{uuid.uuid4().hex[:12]}"


BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)


def write_parquet(path: Path, columns: dict[str, pa.Array | list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)


def driver_stats_columns(rows: int = 3) -> dict[str, pa.Array | list[object]]:
    return {
        "driver_id": pa.array(range(1, rows + 1), pa.int64()),
        "event_timestamp": pa.array(
            [BASE_TIME + timedelta(hours=i) for i in range(rows)], pa.timestamp("us", tz="UTC")
        ),
        "conv_rate": pa.array([0.5] * rows, pa.float64()),
        "trips": pa.array([3] * rows, pa.int64()),
        "city": pa.array(["x"] * rows, pa.string()),
    }


DRIVER_REPO = {
    "entities.py": """
        from parity import Entity
        driver = Entity(name="driver", join_keys=["driver_id"])
    """,
    "views.py": """
        from datetime import timedelta
        from entities import driver
        from parity import FeatureService, FeatureView, Field, FileSource, Float64, Int64, String

        driver_stats = FeatureView(
            name="driver_stats",
            entities=[driver],
            schema=[
                Field(name="conv_rate", dtype=Float64),
                Field(name="trips", dtype=Int64),
                Field(name="city", dtype=String),
            ],
            source=FileSource(path="data/driver_stats.parquet"),
            ttl=timedelta(days=1),
        )
        driver_service = FeatureService(name="driver_service", features=[driver_stats[["trips"]]])
    """,
}


def write_repo(
    root: Path, files: dict[str, str], *, project: str = "demo", extra: str = ""
) -> Path:
    """A feature repo with a SQLite registry in root/data, the given files and driver data."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "parity.yaml").write_text(f"project: {project}\n{extra}")
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    write_parquet(root / "data" / "driver_stats.parquet", driver_stats_columns())
    return root


@pytest.fixture
def driver_repo(tmp_path: Path) -> Iterator[Path]:
    yield write_repo(tmp_path / "repo", DRIVER_REPO)


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A local Redis Cluster (six nodes) shared by the session's tests that kill no node: its
    node URLs, comma-separated. Tests that stop nodes start a cluster of their own."""
    from tests.redis_cluster import local_redis_cluster

    with local_redis_cluster() as cluster:
        yield cluster.url
