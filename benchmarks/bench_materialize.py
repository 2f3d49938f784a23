"""Materializing the fraud example (issue 12, item 20): seconds, online.db size, entities and tiles.

    .venv/bin/python benchmarks/bench_materialize.py [--accounts 10000] [--days 60]

Scaffolds `parity init` (data ending at the start of the run's minute, UTC) under
benchmarks/.work/materialize/, applies it, then times the real CLI
`parity materialize <end - 90 days> <now>` (the README's interval form, covering all the data),
and measures the online store it wrote: the file's size (with its WAL), and per view the entities
(distinct keys) and tiles (rows of parity_tiles, less each entity's pending record). Prints
ratios against the targets: 10x faster
and 4x smaller than before (`--before-seconds`, `--before-mb`; by default the issue's figures for
10,000 accounts: 215 s and 877 MB; `--before-cpu` adds a CPU-time ratio, which a loaded machine
distorts less than wall time). Exits 0 even when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
WORK = BENCH_DIR / ".work" / "materialize"
PARITY = str(Path(sys.executable).parent / "parity")
MB = 1_000_000


def run(*args: str, cwd: Path) -> str:
    done = subprocess.run([PARITY, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"parity {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def online_size(repo: Path) -> int:
    data = repo / "data"
    return sum(p.stat().st_size for p in data.glob("online.db*"))


def counts(repo: Path) -> dict[str, tuple[int, int]]:
    """Per view: (entities, tiles) in the SQLite online store."""
    with sqlite3.connect(repo / "data" / "online.db") as db:
        found: dict[str, tuple[int, int]] = {}
        for view, entities in db.execute("SELECT view, COUNT(*) FROM parity_online GROUP BY view"):
            found[view] = (entities, 0)
        for view, entities, tiles in db.execute(
            "SELECT view, COUNT(DISTINCT entity_key), COUNT(*) FILTER (WHERE name != 'pending') "
            "FROM parity_tiles GROUP BY view"
        ):
            found[view] = (entities, tiles)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--before-seconds", type=float, default=215.0, help="Wall seconds.")
    parser.add_argument("--before-mb", type=float, default=877.0)
    parser.add_argument(
        "--before-cpu", type=float, default=None, help="CPU seconds before (robust under load)."
    )
    parser.add_argument("--work", type=Path, default=WORK, help="Folder to (re)create.")
    args = parser.parse_args()
    work: Path = args.work
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    end = f"{now:%Y-%m-%dT%H:%M:%SZ}"
    start = f"{now - timedelta(days=90):%Y-%m-%dT%H:%M:%SZ}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    repo = work / "fraud"
    begun = time.perf_counter()
    run("init", str(repo), "--accounts", str(args.accounts), "--days", str(args.days),
        "--end", end, cwd=work)  # fmt: skip
    run("apply", cwd=repo)
    print(f"init + apply: {time.perf_counter() - begun:.1f} s ({args.accounts:,} accounts)")
    begun, cpu = time.perf_counter(), children_cpu()
    output = run("materialize", start, end, cwd=repo)
    seconds, cpu = time.perf_counter() - begun, children_cpu() - cpu
    size = online_size(repo)
    print(output.rstrip())
    print(f"materialize {start} {end}")
    print(f"  seconds      {seconds:8.1f} wall, {cpu:.1f} CPU (user + system; load {load()})")
    print(f"  online.db    {size / MB:8.1f} MB")
    for view, (entities, tiles) in sorted(counts(repo).items()):
        print(f"  {view:<20} {entities:>9,} entities {tiles:>11,} tiles")
    speed = args.before_seconds / seconds
    if args.before_cpu:
        less = args.before_cpu / cpu
        print(
            f"CPU      {less:.1f}x less than {args.before_cpu:.1f} s (target 10x: "
            f"{'PASS' if less >= 10 else 'MISS'})"
        )
    smaller = args.before_mb / (size / MB)
    print(
        f"speed-up {speed:.1f}x against {args.before_seconds:.0f} s (target 10x: "
        f"{'PASS' if speed >= 10 else 'MISS'})"
    )
    print(
        f"size     {smaller:.1f}x smaller than {args.before_mb:.0f} MB (target 4x: "
        f"{'PASS' if smaller >= 4 else 'MISS'})"
    )


if __name__ == "__main__":
    main()
