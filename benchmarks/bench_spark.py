"""Point-in-time retrieval on Spark beside DuckDB and the raw ASOF limit, on bench_retrieval.py's
data, in one run: time, peak memory (the driver and Spark's JVM), ratios, and a crossover estimate.

    .venv/bin/python benchmarks/bench_spark.py [--size small|large] [--master local[2]]
        [--driver-memory 2g] [--timeout 900]

Each measurement runs in a process of its own (this file with --worker), which makes one call on
1,000 entity rows against a 1,000-row view (the first call: class loading), times a second one
(the engine's fixed cost per retrieval, "fixed s"), then times the whole entity frame twice: the
first ("cold s": Spark's JVM compiles the hot code of the plan) and the second ("seconds"),
for two shapes: pandas in, Arrow out ("frame"), and a Parquet entity path in, one Parquet file out
("parquet"). Peak memory is each process's high-water mark (VmHWM in /proc) read at its end: the
Python driver's, and for Spark also the JVM's (the `java` child PySpark starts) and the Python
workers'. The parent then checks that Spark's and DuckDB's results are equal row for row (same
columns, types, order and nulls; pyarrow's Table.equals) and compares the ASOF limit's values.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import retrieval_data as data  # noqa: E402

ROOT = BENCH_DIR.parent
WORK = BENCH_DIR / ".work" / "retrieval"
OUT = BENCH_DIR / ".work" / "spark"
VIEW = "driver_stats"
WARM_ROWS = 1_000
TINY_ROWS = 1_000
RUNS = (
    "asof/frame",
    "duckdb/frame",
    "spark/frame",
    "asof/parquet",
    "duckdb/parquet",
    "spark/parquet",
)


# --- the worker: one engine, one shape, in its own process --------------------------------------


def _status_kib(pid: int | str, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    kids = [int(child) for child in children.read().split()]
                    found.extend(kids)
                    todo.extend(kids)
        except (OSError, ValueError):
            continue
    return found


def _memory() -> dict[str, int]:
    """Peak RSS (KiB) of this process, of the JVM children, and of the other children."""
    peaks = {"driver_kib": _status_kib("self", "VmHWM"), "jvm_kib": 0, "workers_kib": 0}
    for child in _descendants(os.getpid()):
        try:
            name = Path(f"/proc/{child}/comm").read_text().strip()
        except OSError:
            continue
        peaks["jvm_kib" if name == "java" else "workers_kib"] += _status_kib(child, "VmHWM")
    return peaks


def _asof(config: dict[str, Any], shape: str, entity_df: Any, out: str) -> Any:
    import duckdb
    from retrieval_worker import asof_sql

    connection = duckdb.connect()
    if shape == "frame":
        connection.register("entity_df", entity_df)
        sql = asof_sql(config, "entity_df")
        return lambda frame=None: connection.sql(sql).to_arrow_table()
    sql = asof_sql(config, f"read_parquet('{config['entity_path']}')")
    copy = f"COPY ({sql}) TO '{out}' (FORMAT parquet, COMPRESSION zstd)"
    return lambda frame=None: connection.execute(copy).fetchone()[0]


def worker(argv: list[str]) -> int:
    config = json.loads(Path(argv[0]).read_text())
    engine, shape = argv[1].split("/")
    result_path, out = Path(argv[2]), argv[3]
    import pyarrow.parquet as pq

    entity_df = pq.read_table(config["entity_path"]).to_pandas()
    refs = [f"{VIEW}:{name}" for name in config["features"]]
    started = time.perf_counter()
    if engine == "asof":
        run = _asof(config, shape, entity_df, out)
        warm = None
    else:
        from parity import FeatureStore

        store = FeatureStore(config["repos"][engine])
        store._offline_engine  # starts the engine (for Spark: the JVM and its session)  # noqa: B018
        warm = entity_df.head(WARM_ROWS)
        tiny = [f"{VIEW}_tiny:{name}" for name in config["features"]]

        def run(frame: Any = None) -> Any:
            if frame is not None:  # the fixed cost: a small frame against the tiny view
                return store.get_historical_features(frame, tiny).to_arrow()
            if shape == "frame":
                return store.get_historical_features(entity_df, refs).to_arrow()
            return store.get_historical_features(config["entity_path"], refs).to_parquet(out)

    start_s = time.perf_counter() - started
    warm_s = first_s = 0.0
    if warm is not None:
        begin = time.perf_counter()
        run(warm)  # the first call also loads classes, compiles and starts Python workers
        first_s = time.perf_counter() - begin
        begin = time.perf_counter()
        run(warm)
        warm_s = time.perf_counter() - begin
    begin = time.perf_counter()
    result = run()  # the first full-size call: the JVM compiles the plan's hot code now
    cold_s = time.perf_counter() - begin
    begin = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - begin
    memory = _memory()
    if not isinstance(result, int):
        pq.write_table(result, out)
    result_path.write_text(
        json.dumps(
            {
                "seconds": seconds,
                "cold_s": cold_s,
                "start_s": start_s,
                "first_s": first_s,
                "warm_s": warm_s,
                **memory,
            }
        )
    )
    return 0


# --- the benchmark ------------------------------------------------------------------------------


def repo(root: Path, feature_path: Path, offline: str) -> Path:
    """A repo with the benchmark's view and `driver_stats_tiny`: the same on the first
    TINY_ROWS feature rows, which measures what a retrieval costs before any data."""
    root.mkdir(parents=True, exist_ok=True)
    tiny = root / "tiny.parquet"
    if not tiny.exists():
        import pyarrow.parquet as pq

        pq.write_table(pq.ParquetFile(feature_path).read_row_group(0).slice(0, TINY_ROWS), tiny)
    (root / "parity.yaml").write_text(f"project: bench\noffline:\n{offline}")
    fields = "\n".join(
        f'        Field(name="{name}", dtype={kind.capitalize()}),' for name, kind in data.FEATURES
    )
    (root / "drivers.py").write_text(
        "from datetime import timedelta\n\n"
        "from parity import Entity, FeatureView, Field, FileSource, Float64, Int64\n\n"
        'driver = Entity(name="driver", join_keys=["driver_id"])\n\n'
        f'driver_stats = FeatureView(\n    name="{VIEW}",\n    entities=[driver],\n'
        f"    schema=[\n{fields}\n    ],\n"
        f'    source=FileSource(path="{feature_path}", timestamp_field="event_timestamp",\n'
        '                      created_timestamp_column="created"),\n'
        f"    ttl=timedelta(days={data.TTL_DAYS}),\n)\n\n"
        f'driver_stats_tiny = FeatureView(\n    name="{VIEW}_tiny",\n    entities=[driver],\n'
        f"    schema=[\n{fields}\n    ],\n"
        f'    source=FileSource(path="{tiny}", timestamp_field="event_timestamp",\n'
        '                      created_timestamp_column="created"),\n'
        f"    ttl=timedelta(days={data.TTL_DAYS}),\n)\n"
    )
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "parity"), "apply", "--repo", str(root)],
        check=True,
        capture_output=True,
    )
    return root


def measure(run: str, config_path: Path, timeout: float) -> dict[str, Any]:
    name = run.replace("/", "-")
    result, out, log = OUT / f"{name}.json", OUT / f"{name}.parquet", OUT / f"{name}.log"
    out.unlink(missing_ok=True)
    command = [sys.executable, __file__, "--worker", str(config_path), run, str(result), str(out)]
    with open(log, "wb") as sink:
        done = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, timeout=timeout)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise SystemExit(f"{run} failed (exit {done.returncode}); log {log}:\n{tail}")
    return {**json.loads(result.read_text()), "out": str(out)}


def same_rows(a_path: str, b_path: str) -> str:
    import pyarrow.parquet as pq

    a, b = pq.read_table(a_path), pq.read_table(b_path)
    what = f"equal row for row ({a.num_rows:,} rows, {a.num_columns} columns"
    if a.equals(b):
        return what + ")"
    if (
        a.schema.names == b.schema.names
        and a.schema.types == b.schema.types
        and a.cast(b.schema).equals(b)
    ):  # DuckDB's Parquet writer marks columns it knows have no nulls as required
        return what + "; only the files' not-null flags differ)"
    names = [n for n in a.schema.names if not a[n].equals(b[n])] if a.num_rows == b.num_rows else []
    return f"DIFFERENT: {a.num_rows:,} vs {b.num_rows:,} rows; columns differing: {names}"


def asof_agrees(asof_path: str, parity_path: str, features: list[str]) -> str:
    """The ASOF limit ignores created-time ties (there are none in this data) and its row order
    is its own: aligned on (driver_id, event_timestamp, label), its values must equal Parity's."""
    import pyarrow.parquet as pq

    order = [(k, "ascending") for k in ("driver_id", "event_timestamp", "label")]
    a = pq.read_table(asof_path).sort_by(order)
    b = pq.read_table(parity_path).sort_by(order)
    same = all(a[f].cast("double").equals(b[f].cast("double")) for f in features)
    return "equal values" if same else "values DIFFER"


def mib(kib: int) -> str:
    return f"{kib / 1024:,.0f}"


def report(results: dict[str, dict[str, Any]], entity_rows: int) -> None:
    print(
        f"\n{'run':<16}{'seconds':>9}{'cold s':>8}{'rows/s':>11}{'fixed s':>9}{'driver MiB':>12}"
        f"{'JVM MiB':>9}{'workers':>9}{'total MiB':>11}{'x time':>8}{'x mem':>7}"
    )
    for shape in ("frame", "parquet"):
        base = results[f"duckdb/{shape}"]
        base_mem = base["driver_kib"] + base["jvm_kib"] + base["workers_kib"]
        for engine in ("asof", "duckdb", "spark"):
            r = results[f"{engine}/{shape}"]
            total = r["driver_kib"] + r["jvm_kib"] + r["workers_kib"]
            print(
                f"{engine + '/' + shape:<16}{r['seconds']:>9.2f}{r['cold_s']:>8.2f}"
                f"{entity_rows / r['seconds']:>11,.0f}"
                f"{r['warm_s']:>9.2f}{mib(r['driver_kib']):>12}{mib(r['jvm_kib']):>9}"
                f"{mib(r['workers_kib']):>9}{mib(total):>11}"
                f"{r['seconds'] / base['seconds']:>8.2f}{total / base_mem:>7.2f}"
            )
    print("(x time, x mem: over DuckDB's Parity engine in the same shape; fixed s: a call with")
    print(f" {WARM_ROWS:,} entity rows on a {TINY_ROWS:,}-row view: cost before any data)")
    for engine in ("duckdb", "spark"):
        r = results[f"{engine}/frame"]
        print(
            f"{engine}: engine start {r['start_s']:.1f} s, first call {r['first_s']:.1f} s "
            "(once per process)"
        )


def crossover(results: dict[str, dict[str, Any]], size: str) -> None:
    """Model: a retrieval costs Spark a fixed `a` (its time on 1,000 entity rows against a
    1,000-row view) plus `v` that grows with the data; DuckDB costs `d`, all growing with it.
    With the data k times this size and N machines like this one (ideal scaling), Spark takes
    a + k*v/N and DuckDB, on one machine, k*d: Spark is faster once N > v/d and
    k > a / (d - v/N)."""
    print("\ncrossover (model in bench_spark.py crossover(); ideal scaling, same machines):")
    for shape in ("frame", "parquet"):
        d = results[f"duckdb/{shape}"]["seconds"]
        spark = results[f"spark/{shape}"]
        a = spark["warm_s"]
        v = max(spark["seconds"] - a, 1e-9)
        least = v / d
        cases = []
        for machines in (2, 4, 8, 16, 64):
            if machines > least:
                k = a / (d - v / machines)
                cases.append(f"{machines} machines: data > {max(k, 1):,.1f}x {size}")
        print(
            f"  {shape}: fixed {a:.1f} s, variable {v:.1f} s, DuckDB {d:.2f} s; Spark needs "
            f"> {least:.1f} machines like this one at any size; "
            + ("; ".join(cases) or "none of 2-64 machines suffice")
        )


def main(argv: list[str]) -> int:
    if argv[:1] == ["--worker"]:
        return worker(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(data.SIZES), default="small")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="2g")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args(argv)
    python = ROOT / ".venv" / "bin" / "python"
    folder = WORK / args.size
    subprocess.run(
        [str(python), str(BENCH_DIR / "retrieval_data.py"), str(folder), args.size], check=True
    )
    OUT.mkdir(parents=True, exist_ok=True)
    feature_path = folder / data.FEATURE_FILE
    spark = (
        f"  type: spark\n  master: '{args.master}'\n  conf:\n"
        f"    spark.driver.memory: '{args.driver_memory}'\n"
    )
    repos = {
        "duckdb": str(repo(OUT / "repo-duckdb", feature_path, "  type: duckdb\n")),
        "spark": str(repo(OUT / "repo-spark", feature_path, spark)),
    }
    config = {
        "entity_path": str(folder / data.ENTITY_FILE),
        "feature_path": str(feature_path),
        "features": data.FEATURE_NAMES,
        "ttl_days": data.TTL_DAYS,
        "repos": repos,
    }
    config_path = OUT / "config.json"
    config_path.write_text(json.dumps(config))
    load = os.getloadavg()
    print(f"size {args.size}: {data.SIZES[args.size]}; master {args.master}; load {load}")
    results = {}
    for run in RUNS:
        results[run] = measure(run, config_path, args.timeout)
        print(f"  {run}: {results[run]['seconds']:.2f} s", flush=True)
    report(results, data.SIZES[args.size]["entity_rows"])
    for shape in ("frame", "parquet"):
        duck, spark_out = results[f"duckdb/{shape}"]["out"], results[f"spark/{shape}"]["out"]
        print(f"check {shape}: Spark vs DuckDB: {same_rows(spark_out, duck)}; ", end="")
        asof = asof_agrees(results[f"asof/{shape}"]["out"], duck, data.FEATURE_NAMES)
        print(f"ASOF limit vs DuckDB: {asof}")
    crossover(results, args.size)
    print(f"load after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
