"""The one small SparkSession of a pytest process, and Spark engines on it (tests marked spark).

Two local cores, two shuffle partitions, 1 GB of driver memory and no web UI: what the 2-core CI
machine affords while other tests run beside it.
"""

from __future__ import annotations

from pathlib import Path

from parity.repo.config import OfflineConfig

SPARK_TEST_CONFIG = OfflineConfig(
    type="spark",
    master="local[2]",
    conf={
        "spark.sql.shuffle.partitions": "2",
        "spark.driver.memory": "1g",
        "spark.ui.enabled": "false",
        "spark.sql.adaptive.enabled": "false",
    },
)


def spark_engine(repo_root: Path) -> object:
    """A SparkEngine on the process's test session (started on first use)."""
    from parity.offline.spark_engine import SparkEngine

    return SparkEngine(repo_root, SPARK_TEST_CONFIG)
