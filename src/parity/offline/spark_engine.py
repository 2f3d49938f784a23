"""The Spark offline engine (issue 16, being built): same OfflineEngine protocol as DuckDB."""

from __future__ import annotations

from pathlib import Path

from parity.repo.config import OfflineConfig


class SparkEngine:
    def __init__(self, repo_root: Path, config: OfflineConfig) -> None:
        raise NotImplementedError("the Spark engine is being built (issue 16)")
