"""Registry benchmark of issue 2: `parity apply` at 500 feature views x 20 features, and lookups.

Targets: first apply under 5 s end to end, no-op re-apply under 2 s, cached lookup of a feature
view by name under 20 us. Every apply/plan figure is the wall clock of a subprocess running the
real `parity` CLI (median of --repeats runs); lookups are `timeit` in one process. Each figure is
shown next to its target, the practical limit measured in the same run, and (with --with-feast)
Feast's figure for the same repo. A miss is reported, not an error: the exit code is non-zero only
when something failed to run.

    .venv/bin/python benchmarks/bench_registry.py [--views 500] [--features 20]
        [--registry sqlite|postgres] [--with-feast [--feast-views N] [--feast-timeout 600]]

See benchmarks/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import registry_repo as gen

BENCH_DIR = Path(__file__).resolve().parent
WORK = BENCH_DIR / ".work"
FEAST_VENV = BENCH_DIR / ".feast-venv"
LOOKUP_SCRIPT = BENCH_DIR / "registry_lookup.py"
PYTHON = Path(sys.executable)
PARITY_CLI = PYTHON.parent / "parity"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
TARGET_COLD_S, TARGET_NOOP_S, TARGET_LOOKUP_US = 5.0, 2.0, 20.0


class BenchFailure(RuntimeError):
    """A step of the benchmark did not run as it must (a command failed, odd output)."""


# --- running commands ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One finished subprocess: wall seconds, exit code, peak RSS and its output."""

    seconds: float
    rc: int
    peak_rss_mib: float
    stdout: str
    stderr: str
    timed_out: bool = False


def _rss_mib(maxrss: int) -> float:
    return maxrss / (1024 * 1024) if sys.platform == "darwin" else maxrss / 1024


def run_timed(
    cmd: Sequence[str | Path], cwd: Path, timeout: float | None = None, env: dict[str, str] | None = None
) -> Run:
    """Run `cmd`, timing it from spawn to reap; os.wait4 gives this child's own peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, stdout=out, stderr=err)
        timer = threading.Timer(timeout, proc.kill) if timeout else None
        if timer:
            timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        if timer:
            timer.cancel()
        proc.returncode = rc = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        timed_out = bool(timeout) and rc < 0 and seconds >= (timeout or 0)
        text = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        return Run(seconds, rc, _rss_mib(usage.ru_maxrss), *text, timed_out=timed_out)


def checked(run: Run, what: str, expect: str | None = None, forbid: str | None = None) -> Run:
    """`run` if it exited 0 and printed `expect` (and not `forbid`); BenchFailure otherwise."""
    output = run.stdout + run.stderr
    if run.rc != 0 or (expect and expect not in output) or (forbid and forbid in output):
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise BenchFailure(f"{what} failed (exit {run.rc}); expected {expect!r}. Output:\n{tail}")
    return run


@dataclass
class Sample:
    """Repeated runs of one measurement."""

    runs: list[Run] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def peak_rss_mib(self) -> float:
        return max(r.peak_rss_mib for r in self.runs)

    @property
    def all_s(self) -> str:
        return ", ".join(f"{r.seconds:.3f}" for r in self.runs)


# --- Parity: the CLI measurements ---------------------------------------------------------------


@dataclass(frozen=True)
class ParityRepo:
    root: Path
    spec: gen.RepoSpec
    project: str
    postgres_url: str | None

    def cli(self, *args: str) -> list[str | Path]:
        return [PARITY_CLI, *args, "--repo", str(self.root)]

    def reset_registry(self) -> None:
        """A fresh registry: delete the SQLite file, or tear the project down in PostgreSQL."""
        if self.postgres_url is None:
            for suffix in ("", "-wal", "-shm"):
                (self.root / "data" / f"registry.db{suffix}").unlink(missing_ok=True)
            return
        run = run_timed(self.cli("teardown", "--yes"), self.root)
        if run.rc != 0 and "nothing to tear down" not in run.stderr:
            checked(run, "parity teardown")


def make_parity_repo(
    name: str, spec: gen.RepoSpec, postgres_url: str | None, project: str
) -> ParityRepo:
    repo = ParityRepo(WORK / name, spec, project, postgres_url)
    gen.write_repo(repo.root, spec, gen.PARITY, gen.parity_config(project, postgres_url))
    return repo


@dataclass
class ApplyFigures:
    cold: Sample = field(default_factory=Sample)
    noop: Sample = field(default_factory=Sample)
    update: Sample = field(default_factory=Sample)
    plan: Sample = field(default_factory=Sample)
    head: int = 0


def measure_cold(repo: ParityRepo, repeats: int, figures: ApplyFigures) -> None:
    for _ in range(repeats):
        repo.reset_registry()
        run = run_timed(repo.cli("apply", "-m", "bench cold"), repo.root)
        figures.cold.runs.append(checked(run, "first apply", "Applied: registry version 1."))
    figures.head = 1


def measure_noop(repo: ParityRepo, repeats: int, figures: ApplyFigures) -> None:
    for _ in range(repeats):
        run = run_timed(repo.cli("apply", "-m", "bench no-op"), repo.root)
        figures.noop.runs.append(checked(run, "no-op re-apply", "no changes", forbid="Applied"))


def measure_update(repo: ParityRepo, repeats: int, figures: ApplyFigures) -> None:
    view = repo.spec.view_names[-1]
    for index in range(repeats):
        gen.change_description(repo.root, view, f"Changed by the benchmark, round {index}.")
        run = run_timed(repo.cli("apply", "-m", "bench update"), repo.root)
        figures.head += 1
        expect = f"Applied: registry version {figures.head}."
        figures.update.runs.append(checked(checked(run, "one-update apply", expect), "", "1 to update"))


def measure_plan(repo: ParityRepo, repeats: int, figures: ApplyFigures) -> None:
    for _ in range(repeats):
        run = run_timed(repo.cli("plan"), repo.root)
        figures.plan.runs.append(checked(run, "parity plan", "no changes"))


def measure_parity_cli(repo: ParityRepo, repeats: int, full: bool = True) -> ApplyFigures:
    figures = ApplyFigures()
    steps: list[Callable[[ParityRepo, int, ApplyFigures], None]] = [measure_cold, measure_noop]
    if full:
        steps += [measure_update, measure_plan]
    for step in steps:
        print(f"  parity: {step.__name__.removeprefix('measure_')} x{repeats} ...", flush=True)
        step(repo, repeats, figures)
    return figures


def measure_lookup(python: Path, kind: str, root: Path, env: dict[str, str] | None = None) -> dict:
    run = run_timed([python, LOOKUP_SCRIPT, kind, str(root)], root, env=env)
    checked(run, f"{kind} cached lookup timing")
    return dict(json.loads(run.stdout.strip().splitlines()[-1]))


# --- practical limits ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Floors:
    """What any Python CLI storing this catalog must pay, measured in this run."""

    startup_s: float
    startup_rss_mib: float
    write_s: float
    read_s: float
    catalog_bytes: int

    @property
    def apply_s(self) -> float:
        return self.startup_s + self.write_s

    @property
    def noop_s(self) -> float:
        return self.startup_s + self.read_s


def startup_floor(repeats: int) -> Sample:
    sample = Sample()
    for _ in range(max(repeats, 5)):
        run = run_timed([PYTHON, "-c", "import parity.cli.main"], BENCH_DIR)
        sample.runs.append(checked(run, "python -c 'import parity.cli.main'"))
    return sample


def _sqlite_write(text: str, folder: Path) -> None:
    path = folder / "floor.db"
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE catalog (project TEXT, version INTEGER, body TEXT)")
        conn.execute("INSERT INTO catalog VALUES (?, ?, ?)", ("bench", 1, text))
    conn.close()


def _sqlite_read(folder: Path) -> str:
    conn = sqlite3.connect(folder / "floor.db")
    try:
        return str(conn.execute("SELECT body FROM catalog WHERE version = 1").fetchone()[0])
    finally:
        conn.close()


def _postgres_write(text: str, url: str) -> None:
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS parity_bench_floor (v INTEGER, body TEXT)")
        conn.execute("DELETE FROM parity_bench_floor")
        conn.execute("INSERT INTO parity_bench_floor VALUES (1, %s)", (text,))


def _postgres_read(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT body FROM parity_bench_floor WHERE v = 1").fetchone()
        conn.execute("DROP TABLE parity_bench_floor")
    return str(row[0]) if row else ""


def _median_time(function: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def io_floors(repo: ParityRepo, repeats: int) -> tuple[float, float, int]:
    """(to_json + one INSERT, one SELECT) seconds for this repo's catalog, and its JSON size."""
    from parity.repo.loader import load_repo

    catalog = load_repo(repo.root, repo.project).catalog
    url = repo.postgres_url
    with tempfile.TemporaryDirectory() as folder:

        def write() -> None:
            text = catalog.to_json()
            _postgres_write(text, url) if url else _sqlite_write(text, Path(folder))

        write_s = _median_time(write, repeats)
        read_s = _median_time(lambda: _postgres_read(url) if url else _sqlite_read(Path(folder)), 1)
    return write_s, read_s, len(catalog.to_json())


def measure_floors(repo: ParityRepo, repeats: int) -> Floors:
    print("  limits: interpreter + import, catalog JSON write/read ...", flush=True)
    startup = startup_floor(repeats)
    write_s, read_s, size = io_floors(repo, repeats)
    return Floors(startup.median_s, startup.peak_rss_mib, write_s, read_s, size)


