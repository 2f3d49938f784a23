"""Cross-check of bench_retrieval.py: do the engines return the same features?

    python retrieval_check.py CHECK.json REPORT.json

CHECK.json: {"entity_path", "features", "reference": "asof", "ordered": [engines that must keep
the entity frame's row order], "outputs": {engine: result.parquet}}. Each result is normalized
(timestamps to µs since the epoch, features to float64 with NaN for null), its rows aligned by
sorting on (driver_id, event_timestamp, label), and compared with the reference row by row:
row count, the set of entity rows, per-feature sums and null counts, and exact values (null ==
null). Prints one line per engine and writes {engine: {"agree": bool, "detail": str}}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

KEYS = ("driver_id", "event_timestamp", "label")


def _micros(column: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_timestamp(column.type):
        if column.type.tz is None:
            column = pc.assume_timezone(column, "UTC")
        column = column.cast(pa.timestamp("us", tz="UTC"))
    return column.cast(pa.int64()).to_numpy(zero_copy_only=False)


def _floats(column: Any) -> Any:
    import numpy as np
    import pyarrow as pa

    return column.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


def load(path: str, features: list[str]) -> dict[str, Any]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    data: dict[str, Any] = {"__columns": table.column_names, "__rows": table.num_rows}
    data["driver_id"] = table.column("driver_id").cast("int64").to_numpy(zero_copy_only=False)
    data["event_timestamp"] = _micros(table.column("event_timestamp"))
    data["label"] = table.column("label").cast("int64").to_numpy(zero_copy_only=False)
    for name in features:
        data[name] = _floats(table.column(name)) if name in table.column_names else None
    return data


def aligned(data: dict[str, Any], features: list[str]) -> dict[str, Any]:
    import numpy as np

    order = np.lexsort((data["label"], data["event_timestamp"], data["driver_id"]))
    return {
        name: (None if data[name] is None else data[name][order]) for name in (*KEYS, *features)
    }


def compare(
    engine: str, got: dict[str, Any], ref: dict[str, Any], features: list[str], entity: Any
) -> tuple[bool, str]:
    import numpy as np

    notes: list[str] = []
    if got["__rows"] != ref["__rows"]:
        return False, f"{got['__rows']:,} rows, the reference has {ref['__rows']:,}"
    missing = [name for name in features if got[name] is None]
    if missing:
        return False, f"columns missing: {missing} (has {got['__columns']})"
    a, b = aligned(got, features), aligned(ref, features)
    for key in KEYS:
        if not np.array_equal(a[key], b[key]):
            return False, f"a different set of entity rows (column {key} differs after sorting)"
    bad = []
    for name in features:
        x, y = a[name], b[name]
        same = (x == y) | (np.isnan(x) & np.isnan(y))
        if not same.all():
            first = int(np.flatnonzero(~same)[0])
            bad.append(
                f"{name}: {int((~same).sum()):,} rows differ (sum {np.nansum(x):.6g} vs "
                f"{np.nansum(y):.6g}, nulls {int(np.isnan(x).sum()):,} vs "
                f"{int(np.isnan(y).sum()):,}; first: driver_id {a['driver_id'][first]}, "
                f"event_timestamp_us {a['event_timestamp'][first]}: {x[first]} vs {y[first]})"
            )
    if bad:
        return False, "; ".join(bad)
    nulls = sum(int(np.isnan(a[name]).sum()) for name in features)
    notes.append(
        f"{got['__rows']:,} rows, all {len(features)} features equal in every row "
        f"(equal sums and null counts; {nulls:,} nulls in all)"
    )
    if entity is not None:
        order_kept = all(np.array_equal(got[key], entity[key]) for key in KEYS)
        wanted = [*KEYS, *features]
        columns_ok = got["__columns"] == wanted
        notes.append("entity row order kept" if order_kept else "entity row order NOT kept")
        if not columns_ok:
            notes.append(f"columns {got['__columns']} (expected {wanted})")
        if not (order_kept and columns_ok):
            return False, "; ".join(notes)
    return True, "; ".join(notes)


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    features: list[str] = spec["features"]
    outputs: dict[str, str] = spec["outputs"]
    reference = spec["reference"]
    report: dict[str, dict[str, Any]] = {}
    if reference not in outputs:
        print(f"  check: no {reference} result to compare against")
        Path(argv[1]).write_text(json.dumps(report))
        return 0
    import pyarrow.parquet as pq

    entity_table = pq.read_table(spec["entity_path"])
    entity = {
        "driver_id": entity_table.column("driver_id").to_numpy(),
        "event_timestamp": _micros(entity_table.column("event_timestamp")),
        "label": entity_table.column("label").to_numpy(),
    }
    ref = load(outputs[reference], features)
    if ref["__rows"] != entity_table.num_rows:
        report[reference] = {
            "agree": False,
            "detail": f"{ref['__rows']:,} rows for {entity_table.num_rows:,} entity rows",
        }
    for engine, path in outputs.items():
        if engine == reference:
            continue
        ordered = engine in spec.get("ordered", [])
        agree, detail = compare(
            engine, load(path, features), ref, features, entity if ordered else None
        )
        report[engine] = {"agree": agree, "detail": detail}
        word = "AGREES" if agree else "DISAGREES"
        print(f"  check: {engine} {word} with {reference}: {detail}", flush=True)
    Path(argv[1]).write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
