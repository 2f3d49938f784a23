"""Time the phases of one cold `parity apply` and one no-op, in a fresh process; print JSON.

    python apply_phases.py REPO PROJECT

The same steps the CLI takes (cli/main.py -> FeatureStore.apply), one by one, so the import costs
land on the phase that pays them. The registry is a throw-away SQLite file in a temp folder.
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path


class Stopwatch:
    """`with clock("phase"): ...` appends [phase, seconds]."""

    def __init__(self) -> None:
        self.phases: list[tuple[str, float]] = []

    @contextmanager
    def __call__(self, label: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.phases.append((label, time.perf_counter() - start))


def phases(root: Path, project: str, folder: Path) -> list[tuple[str, float]]:
    clock = Stopwatch()
    with clock("import parity.cli.main (pydantic, typer, rich)"):
        import parity.cli.main  # noqa: F401
    with clock("open the registry (SQLAlchemy, create tables)"):
        from parity.registry.sql import SqlRegistryStore, sqlite_url

        store = SqlRegistryStore(sqlite_url(folder / "registry.db"))
    with clock("load repo: import the files, build the catalog"):
        from parity.repo.loader import load_repo

        catalog = load_repo(root, project).catalog
    with clock("check sources: pyarrow, Parquet schemas"):
        from parity.offline.sources import check_sources

        check_sources(catalog.feature_views.values(), root)
    with clock("plan against the empty registry"):
        from parity.registry.apply import plan_against

        first = plan_against(store, catalog)
    with clock("commit: to_json, fingerprint, INSERT"):
        now = datetime.now(UTC)
        store.commit(
            catalog,
            expected_version=0,
            changes=first.changes,
            author="b",
            message="",
            committed_at=now,
        )
    with clock(f"render the plan ({len(first.changes)} rows, rich)"):
        from rich.console import Console

        from parity.cli.render import render_plan

        render_plan(Console(file=io.StringIO(), width=80), first)
    with clock("no-op: read + parse the head catalog"):
        snapshot = store.read(project)
    with clock("no-op: diff (plan)"):
        from parity.registry.plan import plan

        plan(snapshot.catalog, catalog, snapshot.version)
    store.close()
    return clock.phases


def main(argv: list[str]) -> int:
    root, project = Path(argv[0]).resolve(), argv[1]
    with tempfile.TemporaryDirectory() as folder:
        print(json.dumps(phases(root, project, Path(folder))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
