"""Open the offline engine `parity.yaml` names (DuckDB or Spark); imports it only when used."""

from __future__ import annotations

from pathlib import Path

from parity.offline.engine import OfflineEngine
from parity.repo.config import OfflineConfig


def open_engine(repo_root: Path, config: OfflineConfig) -> OfflineEngine:
    if config.type == "spark":
        from parity.offline.spark_engine import SparkEngine

        return SparkEngine(repo_root, config)
    from parity.offline.duckdb_engine import DuckDBEngine

    return DuckDBEngine(repo_root, config)
