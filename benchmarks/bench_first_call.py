"""The first retrieval in a fresh process: its fixed cost (imports, registry) against the limit.

    .venv/bin/python benchmarks/bench_first_call.py [--repeat 7] [--no-feast]

Each measurement is a fresh interpreter started by this script; it is timed from the parent
(wall) and by the child's CPU time (user + system, from the parent's RUSAGE_CHILDREN), the
median over --repeat runs, interleaved. The processes:

- `python`: `python -c pass` (the interpreter alone).
- `limit`: `python -c "import duckdb, pyarrow"`: what any DuckDB retrieval must load.
- `limit+pandas`: the same plus pandas: building any entity table (even `pa.table(dict)`) or
  DataFrame loads pandas, so this is the limit every first retrieval is compared with.
- `asof-tiny`: `limit+pandas` plus the hand-written ASOF query of bench_retrieval.py for the same
  3 entity rows, `.df()`: the same answer at the practical limit.
- `parity-arrow`: `FeatureStore(repo)` and `get_historical_features(table, refs).to_arrow()`
  with a 3-row Arrow entity table (`import parity` included).
- `parity-pandas`: the same with a DataFrame and `.to_pandas()`.
- `feast-duckdb`: Feast's same call with its DuckDB offline store, `.to_df()` (Feast's venv).

Fixed cost = the process minus `limit+pandas` (also shown: minus `limit`). The target (issue
19): Parity's under 0.15 s. Also printed: the same tiny
call's first minus second call inside one process (what bench_retrieval's `parity` row pays over
`parity-warm`, with pandas and parity already imported).

Uses the small data and repos of bench_retrieval.py (generated and applied here if missing).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import bench_retrieval as bench
import retrieval_data as data
from retrieval_worker import asof_sql

TARGET_S = 0.15
ENTITY = "[1001, 1002, 1003], 'event_timestamp': [datetime(2024, 1, 20, tzinfo=UTC)] * 3"
REFS = [f"{bench.VIEW}:conv_rate", f"{bench.VIEW}:rating"]


def scripts(parity_repo: Path, feast_repo: Path) -> dict[str, tuple[Path, str]]:
    arrow_rows = f"{{'driver_id': {ENTITY}}}"
    feature_path = bench.WORK / "small" / data.FEATURE_FILE
    config = {"ttl_days": data.TTL_DAYS, "feature_path": str(feature_path)}
    asof = asof_sql(config | {"features": [r.split(":")[1] for r in REFS]}, "entity_df")
    head = "from datetime import UTC, datetime\n"
    parity = f"{head}from parity import FeatureStore\nstore = FeatureStore({str(parity_repo)!r})\n"
    return {
        "python": (bench.PARITY_PYTHON, "pass"),
        "limit": (bench.PARITY_PYTHON, "import duckdb, pyarrow"),
        "limit+pandas": (bench.PARITY_PYTHON, "import duckdb, pyarrow, pandas"),
        "asof-tiny": (
            bench.PARITY_PYTHON,
            f"{head}import duckdb, pandas as pd\n"
            f"entity_df = pd.DataFrame({arrow_rows})\n"
            f"assert len(duckdb.connect().sql({asof!r}).df()) == 3\n",
        ),
        "parity-arrow": (
            bench.PARITY_PYTHON,
            f"{parity}import pyarrow as pa\n"
            f"rows = store.get_historical_features(pa.table({arrow_rows}), {REFS!r}).to_arrow()\n"
            "assert rows.num_rows == 3\n",
        ),
        "parity-pandas": (
            bench.PARITY_PYTHON,
            f"{parity}import pandas as pd\n"
            f"frame = pd.DataFrame({arrow_rows})\n"
            f"assert len(store.get_historical_features(frame, {REFS!r}).to_pandas()) == 3\n",
        ),
        "feast-duckdb": (
            bench.FEAST_PYTHON,
            f"{head}import pandas as pd\nfrom feast import FeatureStore\n"
            f"store = FeatureStore(repo_path={str(feast_repo)!r})\n"
            f"frame = pd.DataFrame({arrow_rows})\n"
            "assert len(store.get_historical_features(entity_df=frame, "
            f"features={REFS!r}).to_df()) == 3\n",
        ),
    }


def run_once(python: Path, code: str, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one fresh process running `code`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"a measured process failed:\n{code}\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def in_process(parity_repo: Path) -> tuple[float, float]:
    """First minus second tiny call in one process (pandas and parity imported before)."""
    code = (
        "import time\nfrom datetime import UTC, datetime\nimport pandas as pd\n"
        "from parity import FeatureStore\n"
        f"store = FeatureStore({str(parity_repo)!r})\n"
        f"frame = pd.DataFrame({{'driver_id': {ENTITY}}})\n"
        "laps = []\nfor _ in range(2):\n"
        "    wall, cpu = time.perf_counter(), time.process_time()\n"
        f"    store.get_historical_features(frame, {REFS!r}).to_pandas()\n"
        "    laps.append((time.perf_counter() - wall, time.process_time() - cpu))\n"
        "print(laps[0][0] - laps[1][0], laps[0][1] - laps[1][1])\n"
    )
    done = subprocess.run(
        [bench.PARITY_PYTHON, "-c", code], capture_output=True, text=True, check=True
    )
    wall, cpu = done.stdout.split()
    return float(wall), float(cpu)


def prepare(feast: bool) -> tuple[Path, Path]:
    """The small data of bench_retrieval and its applied repos (created if missing)."""
    base = bench.WORK / "small"
    feature_path = base / data.FEATURE_FILE
    if not feature_path.exists():
        subprocess.run([bench.PARITY_PYTHON, bench.BENCH_DIR / "retrieval_data.py", base, "small"])
    parity_repo, feast_repo = base / "parity_repo", base / "feast_repo_duckdb"
    if not (parity_repo / "data" / "registry.db").exists():
        bench.parity_repo(parity_repo, feature_path)
        subprocess.run([bench.PARITY_CLI, "apply", "--repo", parity_repo], check=True)
    if feast and not (feast_repo / "data" / "registry.db").exists():
        bench.feast_repo(feast_repo, feature_path, "duckdb")
        feast_cli = bench.FEAST_VENV / "bin" / "feast"
        subprocess.run([feast_cli, "apply"], cwd=feast_repo, env=bench.feast_env(), check=True)
    return parity_repo, feast_repo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--no-feast", action="store_true")
    args = parser.parse_args(argv)
    bench.byte_compile_parity()  # untimed; the timed processes then read .pyc files
    feast = not args.no_feast and bench.FEAST_PYTHON.exists()
    print(f"bench_first_call: repeat {args.repeat}; load average {os.getloadavg()}", flush=True)
    parity_repo, feast_repo = prepare(feast)
    chosen = scripts(parity_repo, feast_repo)
    if not feast:
        chosen.pop("feast-duckdb")
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in chosen}
    for _ in range(args.repeat):  # interleaved, so load drifts hit every process alike
        for name, (python, code) in chosen.items():
            env = bench.feast_env() if name.startswith("feast") else dict(os.environ)
            runs[name].append(run_once(python, code, env))
    wall = {n: statistics.median(w for w, _ in r) for n, r in runs.items()}
    cpu = {n: statistics.median(c for _, c in r) for n, r in runs.items()}
    print("\nprocess        | wall s | CPU s | fixed: wall / CPU s | minus limit: wall / CPU s")
    print("---------------+--------+-------+---------------------+--------------------------")
    for name in chosen:
        fixed = bare = ""
        if name.startswith(("parity", "feast", "asof")):
            fixed = (
                f"{wall[name] - wall['limit+pandas']:.3f} / {cpu[name] - cpu['limit+pandas']:.3f}"
            )
            bare = f"{wall[name] - wall['limit']:.3f} / {cpu[name] - cpu['limit']:.3f}"
        print(f"{name:<14} | {wall[name]:6.3f} | {cpu[name]:5.3f} | {fixed:>19} | {bare}")
    first_wall, first_cpu = in_process(parity_repo)
    print(
        f"\nin one process, first minus second tiny call: {first_wall:.3f} s wall, "
        f"{first_cpu:.3f} s CPU"
    )
    for clock, values in (("wall", wall), ("CPU", cpu)):
        for name in ("parity-arrow", "parity-pandas"):
            fixed = values[name] - values["limit+pandas"]
            verdict = "PASS" if fixed < TARGET_S else "MISS"
            print(f"{verdict}  {name} fixed cost ({clock}) = {fixed:.3f} s < {TARGET_S} s")
    for clock, values in (("wall", wall), ("CPU", cpu)):
        over = values["parity-pandas"] - values["asof-tiny"]
        print(
            f"info  parity-pandas minus asof-tiny (the same 3-row answer by the limit's query, "
            f"{clock}) = {over:.3f} s"
        )
    verdict = "PASS" if first_wall < TARGET_S else "MISS"
    print(f"{verdict}  in-process first-call extra (wall) = {first_wall:.3f} s < {TARGET_S} s")
    if feast:
        ratio = (cpu["feast-duckdb"] - cpu["limit+pandas"]) / max(
            cpu["parity-pandas"] - cpu["limit+pandas"], 1e-3
        )
        print(f"info  Feast's fixed cost / Parity's (pandas, CPU) = {ratio:.1f}x")
    print(f"load average {os.getloadavg()}")
    print(json.dumps({"wall": wall, "cpu": cpu}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
