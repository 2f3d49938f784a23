"""Parity's side of bench_drift.py, run under Parity's venv, one step per process:

    drift_parity.py profile DATA_DIR WORK_DIR RESULT.json
    drift_parity.py drift DATA_DIR WORK_DIR RESULT.json [--psi]

profile: the reference profiles of the training dataset (the 20 features, and the model output
`prediction`), computed with parity.monitoring.profile and stored in a SQLite registry database
(WORK_DIR/registry.db) by the ProfileStore, plus the model version `drift_bench/1` (alias
champion) in the model registry, trained on that dataset (a stand-in artifact digest: nothing
loads the model). Done once; timed apart from the drift run.

drift: `DriftRunner.run("drift_bench@champion")` over the window of the prediction log, the code
path of `store.monitoring.drift` (it resolves the alias in the registry, loads the stored
profiles, reads the log with DuckDB, tests each column, records the history rows). A Monitor
restricts it to the 20 features; with --psi the Monitor sets `tests` to "psi" for every column.
The time of the run itself is measured inside the process (imports are not in it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

PROJECT = "drift_bench"
DATASET = "drift_reference"
ALIAS = "champion"


def cpu_seconds() -> float:
    """CPU time of every thread of this process (DuckDB's and the column pool's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def engine_for(work: Path) -> Any:
    import sqlalchemy as sa

    return sa.create_engine(f"sqlite:///{work / 'registry.db'}")


def model_registry(engine: Any, work: Path) -> Any:
    from parity.models.artifacts import LocalArtifactStore
    from parity.models.registry import ModelRegistry
    from parity.models.sql import SqlModelStore

    artifacts = LocalArtifactStore(work / "artifacts")
    return ModelRegistry(SqlModelStore(engine), artifacts, project=PROJECT, trusted=True)


def profile(data: Path, work: Path) -> dict[str, Any]:
    """Profiles stored and the model version registered; returns the step's timings."""
    import pyarrow.parquet as pq

    from parity.models.store import ModelVersion
    from parity.monitoring.profile import profile_table
    from parity.monitoring.profile_store import (
        FEATURES,
        OK,
        ProfileStore,
        StoredProfile,
        model_subject,
    )

    manifest = json.loads((data / "manifest.json").read_text())
    names = [c["name"] for c in manifest["columns"]]
    work.mkdir(parents=True, exist_ok=True)
    (work / "registry.db").unlink(missing_ok=True)
    started = time.perf_counter()
    path = data / "reference.parquet"
    digest = fingerprint(path)
    table = pq.read_table(path)
    read = time.perf_counter()
    features = profile_table(table, names, dataset=DATASET, fingerprint=digest)
    outputs = profile_table(table, ["prediction"], dataset=DATASET, fingerprint=digest)
    profiled = time.perf_counter()
    engine = engine_for(work)
    store = ProfileStore(engine)
    now = datetime.now(UTC)
    for subject, computed in ((FEATURES, features), (model_subject(PROJECT, 1), outputs)):
        store.put(
            StoredProfile(
                PROJECT, digest, subject, DATASET, now, OK, table.num_rows, computed.to_json()
            )
        )
    registry = model_registry(engine, work)
    draft = ModelVersion(
        project=PROJECT,
        name=PROJECT,
        version=0,
        created_at=now,
        author="bench_drift",
        flavor="sklearn",
        artifact="0" * 64,
        artifact_size=0,
        training_dataset=DATASET,
        dataset_fingerprint=digest,
    )
    version = registry.store.add_version(draft)
    registry.set_alias(PROJECT, ALIAS, version.version)
    stored = time.perf_counter()
    return {
        "read_s": read - started,
        "profile_s": profiled - read,
        "store_s": stored - profiled,
        "total_s": stored - started,
        "profile_bytes": len(features.to_json()) + len(outputs.to_json()),
        "reference_rows": table.num_rows,
    }


def drift(data: Path, work: Path, psi: bool) -> dict[str, Any]:
    from parity import Monitor
    from parity.monitoring.drift_history import DriftHistory
    from parity.monitoring.drift_runner import DriftRunner
    from parity.monitoring.logs import PredictionLogReader
    from parity.monitoring.profile_store import ProfileStore

    manifest = json.loads((data / "manifest.json").read_text())
    names = [c["name"] for c in manifest["columns"]]
    start = datetime.fromisoformat(manifest["window_start"])
    end = datetime.fromisoformat(manifest["window_end"])
    monitor = Monitor(
        name="drift_bench_monitor",
        model=PROJECT,
        window=end - start,
        columns=tuple(names),
        tests={name: "psi" for name in names} if psi else {},
    )
    engine = engine_for(work)
    runner = DriftRunner(
        project=PROJECT,
        models=model_registry(engine, work),
        profiles=ProfileStore(engine),
        history=DriftHistory(engine),
        reader=PredictionLogReader(data / "prediction_log"),
        monitor_for=lambda name: monitor if name == PROJECT else None,
        clock=lambda: end + timedelta(hours=1),
    )
    started, cpu = time.perf_counter(), cpu_seconds()
    report = runner.run(f"{PROJECT}@{ALIAS}", since=start, until=end)
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    (window,) = report.windows
    return {
        "evidently_rule_psi": evidently_rule_psi(report) if psi else {},
        "run_s": seconds,
        "run_cpu_s": cpu,
        "rows": window.rows,
        "dataset": {"share": window.share, "drifted": window.drifted, "status": window.status},
        "columns": {c.column: c.to_dict() for c in window.columns},
    }


def evidently_rule_psi(report: Any) -> dict[str, float | None]:
    """Per column, Parity's PSI computed with Evidently's rule instead of its own (untimed, for
    the side-by-side): Sturges bins over both samples for numbers with > 20 distinct reference
    values, one bin per value otherwise, and Evidently's empty-bin fill."""
    from parity.errors import ParityError
    from parity.monitoring.stats import psi

    (window,) = report.windows
    reference = report.references[window.version]
    out: dict[str, float | None] = {}
    for name in window.values.column_names:
        profile = reference.profiles[name]
        binning = "sturges" if profile.kind == "numeric" and profile.distinct > 20 else "values"
        values = window.values.column(name)
        try:
            out[name] = psi(profile, values, binning=binning, empty_bins="evidently").statistic
        except (TypeError, ParityError):  # a stats module without Evidently's rule
            out[name] = None
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("step", choices=("profile", "drift"))
    parser.add_argument("data", type=Path)
    parser.add_argument("work", type=Path)
    parser.add_argument("result", type=Path)
    parser.add_argument("--psi", action="store_true", help="PSI for every column")
    args = parser.parse_args(argv)
    import duckdb  # noqa: F401  (imports stay out of the timed steps)
    import numpy  # noqa: F401
    import pandas  # noqa: F401  (pyarrow's ChunkedArray.to_numpy imports it on first use)
    import pyarrow.parquet  # noqa: F401
    import scipy.stats  # noqa: F401

    import parity.monitoring.drift_runner
    import parity.monitoring.stats  # noqa: F401

    if args.step == "profile":
        result = profile(args.data, args.work)
    else:
        result = drift(args.data, args.work, args.psi)
    result["maxrss_kib_in_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    args.result.write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
