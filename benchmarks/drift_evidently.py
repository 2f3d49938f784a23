"""The peer of bench_drift.py: Evidently's DataDriftPreset on the same reference Parquet and the
same prediction log. Runs under benchmarks/.venv-evidently's Python (evidently, pandas, pyarrow);
must not import parity.

    drift_evidently.py DATA_DIR RESULT.json [--method psi]

Steps, each timed inside the process (interpreter start and imports are not in them):
load: the reference Parquet into pandas; the log's `features` JSON (every `*.parquet` file of the
log, the window's rows) into pandas with pyarrow's JSON reader and the reference's column types;
report: `Report([DataDriftPreset()]).run(current, reference)` with a DataDefinition that declares
numbers numerical and strings categorical (Evidently then picks its default test per column).
With --method psi: one `ValueDrift(column, method="psi")` per column instead (see run_report).
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import sys
import time
import warnings
from pathlib import Path
from typing import Any


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load(data: Path) -> tuple[Any, Any, list[str], list[str]]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    manifest = json.loads((data / "manifest.json").read_text())
    names = [column["name"] for column in manifest["columns"]]
    reference = pq.read_table(data / "reference.parquet", columns=names)
    schema = reference.schema
    start = pa.scalar(_timestamp(manifest["window_start"]), pa.timestamp("us", tz="UTC"))
    end = pa.scalar(_timestamp(manifest["window_end"]), pa.timestamp("us", tz="UTC"))
    parts = []
    for path in sorted((data / "prediction_log").glob("date=*/*.parquet")):
        table = pq.read_table(path, columns=["event_timestamp", "model", "version", "features"])
        keep = pc.and_(
            pc.and_(
                pc.equal(table["model"], manifest["model"]),
                pc.equal(table["version"], manifest["version"]),
            ),
            pc.and_(
                pc.greater_equal(table["event_timestamp"], start),
                pc.less(table["event_timestamp"], end),
            ),
        )
        features = table.filter(keep)["features"]
        lines = "\n".join(features.to_pylist()).encode()
        options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
        parts.append(pj.read_json(io.BytesIO(lines), parse_options=options))
    current = pa.concat_tables(parts)
    numerical = [
        f.name for f in schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
    ]
    categorical = [f.name for f in schema if f.name not in numerical]
    return reference.to_pandas(), current.to_pandas(), numerical, categorical


def _timestamp(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text)


def run_report(
    reference: Any, current: Any, numerical: list[str], categorical: list[str], method: str | None
) -> Any:
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    ref = Dataset.from_pandas(reference, data_definition=definition)
    cur = Dataset.from_pandas(current, data_definition=definition)
    if method is None:
        report = Report([DataDriftPreset()], include_tests=True)
    else:
        # One ValueDrift per column, as DataDriftPreset generates them, without the preset's
        # DriftedColumnsCount: with method="psi" that metric stops the whole report with
        # "autodetected range of [-inf, inf] is not finite" on a column holding +-inf and no
        # null (it cleans +-inf only in columns with nulls), so no PSI value would come back.
        columns = [*numerical, *categorical]
        report = Report([ValueDrift(column=c, method=method) for c in columns], include_tests=True)
    return report.run(current_data=cur, reference_data=ref)


def extract(snapshot: Any) -> dict[str, Any]:
    """Per column: the test Evidently chose, its score, threshold and verdict; and the dataset
    verdict (the drifted-columns count and share)."""
    out: dict[str, Any] = {"columns": {}, "dataset": None, "dataset_drift": None}
    content = snapshot.dict()
    for metric in content["metrics"]:
        config = metric.get("config", {})
        kind = config.get("type", "")
        if kind.endswith("ValueDrift"):
            out["columns"][config["column"]] = {
                "test": config.get("method"),
                "threshold": config.get("threshold"),
                "score": metric["value"],
            }
        elif kind.endswith("DriftedColumnsCount"):
            out["dataset"] = metric["value"]
    for test in content.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type", "").endswith("DriftedColumnsCount"):
            out["dataset_drift"] = test["status"] == "FAIL"  # "share < drift_share" failed
        elif params.get("column") in out["columns"]:
            out["columns"][params["column"]]["drift"] = test["status"] == "FAIL"
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", type=Path)
    parser.add_argument("result", type=Path)
    parser.add_argument("--method", default=None, help="one test for every column, e.g. psi")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")  # numpy's RuntimeWarnings from Evidently's plots of +-inf
    import evidently
    import pyarrow.json
    import pyarrow.parquet  # noqa: F401  (imports stay out of the timed steps)

    started, cpu_started = time.perf_counter(), cpu_seconds()
    reference, current, numerical, categorical = load(args.data)
    loaded, cpu_loaded = time.perf_counter(), cpu_seconds()
    snapshot = run_report(reference, current, numerical, categorical, args.method)
    reported, cpu_reported = time.perf_counter(), cpu_seconds()
    result = extract(snapshot)
    result |= {
        "version": evidently.__version__,
        "method": args.method,
        "load_s": loaded - started,
        "report_s": reported - loaded,
        "load_cpu_s": cpu_loaded - cpu_started,
        "report_cpu_s": cpu_reported - cpu_loaded,
        "rows": len(current),
        "reference_rows": len(reference),
        "maxrss_kib_in_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }
    args.result.write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
