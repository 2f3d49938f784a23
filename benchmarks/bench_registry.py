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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import registry_repo as gen

BENCH_DIR = Path(__file__).resolve().parent
WORK = BENCH_DIR / ".work"
FEAST_VENV = BENCH_DIR / ".feast-venv"
LOOKUP_SCRIPT = BENCH_DIR / "registry_lookup.py"
MEASURED_RUN = BENCH_DIR / "measured_run.py"
PHASES_SCRIPT = BENCH_DIR / "apply_phases.py"
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
    cpu_s: float
    peak_rss_mib: float
    stdout: str
    stderr: str
    timed_out: bool = False


def run_timed(
    cmd: Sequence[str | Path],
    cwd: Path,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> Run:
    """Run `cmd` through measured_run.py: wall time from spawn to reap, the child's own peak RSS,
    SIGKILL after `timeout` seconds."""
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "result.json"
        launcher = [PYTHON, "-S", MEASURED_RUN, result, timeout or 0, *cmd]
        done = subprocess.run(
            [str(c) for c in launcher], cwd=cwd, env=env, capture_output=True, check=False
        )
        if done.returncode != 0 or not result.exists():
            raise BenchFailure(f"could not run {cmd}: {done.stderr.decode(errors='replace')}")
        figures = json.loads(result.read_text())
    return Run(
        seconds=figures["seconds"],
        rc=figures["rc"],
        cpu_s=figures["cpu_s"],
        peak_rss_mib=figures["maxrss_kib"] / 1024,
        stdout=done.stdout.decode(errors="replace"),
        stderr=done.stderr.decode(errors="replace"),
        timed_out=figures["timed_out"],
    )


def checked(run: Run, what: str, *expect: str, forbid: str | None = None) -> Run:
    """`run` if it exited 0 and printed every `expect` (and not `forbid`); else BenchFailure."""
    output = run.stdout + run.stderr
    lower = output.lower()
    missing = [text for text in expect if text.lower() not in lower]
    if run.rc != 0 or missing or (forbid is not None and forbid.lower() in lower):
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise BenchFailure(f"{what} failed (exit {run.rc}; expected {expect}). Output:\n{tail}")
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
        return ", ".join(f"{r.seconds:.3f} (cpu {r.cpu_s:.3f})" for r in self.runs)


# --- Parity: the CLI measurements ---------------------------------------------------------------


@dataclass
class ParityRepo:
    """A generated Parity repo and how to drive the CLI on it."""

    root: Path
    spec: gen.RepoSpec
    project: str
    postgres_url: str | None
    applied: bool = False

    def cli(self, *args: str) -> list[str | Path]:
        return [PARITY_CLI, *args, "--repo", str(self.root)]

    def reset_registry(self) -> None:
        """A fresh registry: delete the SQLite file, or tear the project down in PostgreSQL."""
        if self.postgres_url is None:
            for suffix in ("", "-wal", "-shm"):
                (self.root / "data" / f"registry.db{suffix}").unlink(missing_ok=True)
        elif self.applied:
            checked(run_timed(self.cli("teardown", "--yes"), self.root), "parity teardown")
        self.applied = False


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
        repo.applied = True
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
        figures.update.runs.append(checked(run, "one-update apply", expect, "1 to update"))


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


def measure_lookup(
    python: Path, kind: str, root: Path, env: dict[str, str] | None = None, timeout: float = 0
) -> dict[str, Any]:
    run = run_timed([python, LOOKUP_SCRIPT, kind, str(root)], root, timeout, env)
    checked(run, f"{kind} cached lookup timing" + (" (time limit)" if run.timed_out else ""))
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


def _write_catalog(text: str, target: str) -> None:
    """One INSERT of the catalog JSON into a fresh table (`target`: SQLite file or PG URL)."""
    if target.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(target) as conn:
            conn.execute("DROP TABLE IF EXISTS parity_bench_floor")
            conn.execute("CREATE TABLE parity_bench_floor (version INTEGER, body TEXT)")
            conn.execute("INSERT INTO parity_bench_floor VALUES (1, %s)", (text,))
        return
    Path(target).unlink(missing_ok=True)
    with sqlite3.connect(target) as conn:
        conn.execute("CREATE TABLE parity_bench_floor (version INTEGER, body TEXT)")
        conn.execute("INSERT INTO parity_bench_floor VALUES (1, ?)", (text,))
    conn.close()


def _read_catalog(target: str, drop: bool = False) -> str:
    query = "SELECT body FROM parity_bench_floor WHERE version = 1"
    if target.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(target) as conn:
            row = conn.execute(query).fetchone()
            if drop:
                conn.execute("DROP TABLE parity_bench_floor")
        return str(row[0]) if row else ""
    conn = sqlite3.connect(target)
    try:
        return str(conn.execute(query).fetchone()[0])
    finally:
        conn.close()


def _median_time(function: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def io_floors(repo: ParityRepo, repeats: int) -> tuple[float, float, int]:
    """Median seconds of (to_json + one INSERT) and of one SELECT of this repo's catalog JSON, in
    the registry's kind of database, and the JSON's size."""
    from parity.repo.loader import load_repo

    catalog = load_repo(repo.root, repo.project).catalog
    with tempfile.TemporaryDirectory() as folder:
        target = repo.postgres_url or str(Path(folder) / "floor.db")
        write_s = _median_time(lambda: _write_catalog(catalog.to_json(), target), repeats)
        read_s = _median_time(lambda: _read_catalog(target), repeats)
        _read_catalog(target, drop=True)
    return write_s, read_s, len(catalog.to_json())


def measure_floors(repo: ParityRepo, repeats: int) -> Floors:
    print("  limits: interpreter + import, catalog JSON write/read ...", flush=True)
    startup = startup_floor(repeats)
    write_s, read_s, size = io_floors(repo, repeats)
    return Floors(startup.median_s, startup.peak_rss_mib, write_s, read_s, size)


# --- where the time goes ------------------------------------------------------------------------


def breakdown(repo: ParityRepo) -> list[tuple[str, float]]:
    """Phases of one cold apply and one no-op, timed in a fresh process (apply_phases.py)."""
    run = run_timed([PYTHON, PHASES_SCRIPT, repo.root, repo.project], repo.root)
    checked(run, "apply phase breakdown")
    return [(str(label), float(s)) for label, s in json.loads(run.stdout.splitlines()[-1])]


# --- Feast, the peer ----------------------------------------------------------------------------


@dataclass
class FeastFigures:
    views: int
    registry_type: str
    timeout: float
    version: str = ""
    cold: Run | None = None
    noop: Run | None = None
    lookup: dict[str, Any] | None = None
    failure: str = ""


def feast_env() -> dict[str, str]:
    return dict(os.environ, FEAST_USAGE="False", PYTHONWARNINGS="ignore")


def ensure_feast() -> str:
    """Create benchmarks/.feast-venv with feast unless it is there; return feast's version."""
    if not (FEAST_VENV / "bin" / "feast").exists():
        print("  feast: creating benchmarks/.feast-venv, pip install feast ...", flush=True)
        base = shutil.which("python3") or sys.executable
        for cmd in (
            [base, "-m", "venv", FEAST_VENV],
            [FEAST_VENV / "bin" / "pip", "install", "-q", "feast"],
        ):
            checked(run_timed(cmd, BENCH_DIR), " ".join(str(c) for c in cmd))
    run = run_timed([FEAST_VENV / "bin" / "pip", "show", "feast"], BENCH_DIR)
    lines = checked(run, "pip show feast").stdout.splitlines()
    return next((line.split()[-1] for line in lines if line.startswith("Version:")), "?")


def feast_step(figures: FeastFigures, root: Path, what: str, expect: str) -> Run | None:
    """Run `feast apply` under the time limit; None (and a failure note) if it did not finish."""
    print(f"  feast: {what} (limit {figures.timeout:.0f} s) ...", flush=True)
    run = run_timed([FEAST_VENV / "bin" / "feast", "apply"], root, figures.timeout, feast_env())
    if run.timed_out:
        return run
    try:
        return checked(run, f"feast {what}", expect)
    except BenchFailure as error:
        figures.failure = str(error)
        return None


def measure_feast(spec: gen.RepoSpec, registry_type: str, timeout: float) -> FeastFigures:
    figures = FeastFigures(spec.views, registry_type, timeout, version=ensure_feast())
    root = WORK / "feast"
    gen.write_repo(root, spec, gen.FEAST, gen.feast_config("bench", root, registry_type))
    figures.cold = feast_step(figures, root, "first apply", "Created sqlite table")
    if figures.cold is None or figures.cold.timed_out:
        return figures
    figures.noop = feast_step(figures, root, "no-op re-apply", "No changes to registry")
    if figures.noop is None:
        return figures
    print("  feast: cached lookup ...", flush=True)
    try:
        python = FEAST_VENV / "bin" / "python"
        figures.lookup = measure_lookup(python, "feast", root, feast_env(), timeout)
    except BenchFailure as error:
        figures.failure = str(error)
    return figures


# --- the report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of the table; `feast` and `feast_ratio` are ready-made cells."""

    label: str
    unit: str
    parity: float | None
    target: float | None = None
    limit: float | None = None
    feast: str = "not run"
    feast_ratio: str = "-"
    verdict: bool = False


COLUMNS = (
    ("measurement", 42),
    ("parity", 10),
    ("target", 8),
    ("parity/target", 13),
    ("practical limit", 15),
    ("parity/limit", 12),
    ("feast", 20),
    ("feast/parity", 13),
)


def quantity(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    if unit == "us":
        return f"{value:.3f} us" if value < 10 else f"{value:,.1f} us"
    return f"{value:.0f} {unit}"


def ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or not denominator:
        return "-"
    value = numerator / denominator
    return f"{value:.2f}x" if value < 100 else f"{value:,.0f}x"


def row_cells(row: Row) -> list[str]:
    return [
        row.label,
        quantity(row.parity, row.unit),
        quantity(row.target, row.unit),
        ratio(row.parity, row.target),
        quantity(row.limit, row.unit),
        ratio(row.parity, row.limit),
        row.feast,
        row.feast_ratio,
    ]


def table(rows: list[Row]) -> str:
    def line(cells: list[str]) -> str:
        pairs = zip(cells, COLUMNS, strict=True)
        return " | ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, (_, w)) in enumerate(pairs)
        )

    header = line([name for name, _ in COLUMNS])
    return "\n".join([header, "-" * len(header), *(line(row_cells(r)) for r in rows)])


def feast_apply_cells(
    run: Run | None, feast: FeastFigures | None, parity_s: float, views: int
) -> dict[str, str]:
    """Feast cells of an apply row; per-view ratio when Feast ran at another size."""
    if feast is None:
        return {}
    if run is None:
        return {"feast": "failed" if feast.failure else "not run"}
    seconds = feast.timeout if run.timed_out else run.seconds
    shown = f"over {feast.timeout:.0f} s" if run.timed_out else quantity(run.seconds, "s")
    more = ">" if run.timed_out else ""
    if feast.views == views:
        return {"feast": shown, "feast_ratio": more + ratio(seconds, parity_s)}
    per_view = ratio(seconds / feast.views, parity_s / views)
    return {"feast": f"{shown} @{feast.views} views", "feast_ratio": f"{more}{per_view}/view"}


def feast_lookup_cells(
    feast: FeastFigures | None, key: str, parity_us: float, views: int
) -> dict[str, str]:
    if feast is None:
        return {}
    if feast.lookup is None:
        return {"feast": "failed" if feast.failure else "not run"}
    value = float(feast.lookup["lookup"][key])
    size = "" if feast.views == views else f" @{feast.views} views"
    return {"feast": quantity(value, "us") + size, "feast_ratio": ratio(value, parity_us)}


def feast_rss_cells(feast: FeastFigures | None, parity_mib: float) -> dict[str, str]:
    if feast is None or feast.cold is None or feast.cold.timed_out:
        return {} if feast is None else {"feast": "not run"}
    return {
        "feast": quantity(feast.cold.peak_rss_mib, "MiB"),
        "feast_ratio": ratio(feast.cold.peak_rss_mib, parity_mib),
    }


@dataclass
class Results:
    """Everything one run measured."""

    spec: gen.RepoSpec
    registry: str
    parity: ApplyFigures
    floors: Floors
    lookup: dict[str, Any]
    phases: list[tuple[str, float]]
    load: tuple[float, float] = (0.0, 0.0)
    feast: FeastFigures | None = None
    peer: Peer | None = None


@dataclass(frozen=True)
class Peer:
    """Parity measured at Feast's (smaller) size, for a same-size comparison."""

    views: int
    figures: ApplyFigures
    lookup: dict[str, Any]


def main_rows(r: Results) -> list[Row]:
    p, f, views = r.parity, r.feast, r.spec.views
    lookup, limit = r.lookup["lookup"], r.lookup["dict"]
    size = f"{views} views x {r.spec.features} features"
    return [
        Row(
            f"first apply, {size}",
            "s",
            p.cold.median_s,
            TARGET_COLD_S,
            r.floors.apply_s,
            verdict=True,
            **feast_apply_cells(f.cold if f else None, f, p.cold.median_s, views),
        ),
        Row(
            "no-op re-apply",
            "s",
            p.noop.median_s,
            TARGET_NOOP_S,
            r.floors.noop_s,
            verdict=True,
            **feast_apply_cells(f.noop if f else None, f, p.noop.median_s, views),
        ),
        Row(
            "apply, one view's description changed", "s", p.update.median_s, None, r.floors.apply_s
        ),
        Row("plan, no changes", "s", p.plan.median_s, None, r.floors.noop_s),
        Row(
            "peak RSS of the first apply",
            "MiB",
            p.cold.peak_rss_mib,
            None,
            r.floors.startup_rss_mib,
            **feast_rss_cells(f, p.cold.peak_rss_mib),
        ),
        Row(
            "cached lookup by name, median",
            "us",
            lookup["median_us"],
            TARGET_LOOKUP_US,
            limit["median_us"],
            verdict=True,
            **feast_lookup_cells(f, "median_us", lookup["median_us"], views),
        ),
        Row(
            "cached lookup by name, min of 7",
            "us",
            lookup["min_us"],
            TARGET_LOOKUP_US,
            limit["min_us"],
            **feast_lookup_cells(f, "min_us", lookup["min_us"], views),
        ),
    ]


def peer_rows(r: Results) -> list[Row]:
    """Parity at Feast's size, Feast's figures unscaled (only when --feast-views differs)."""
    if r.peer is None or r.feast is None:
        return []
    p, f, n = r.peer.figures, r.feast, r.peer.views
    median = r.peer.lookup["lookup"]["median_us"]
    return [
        Row(
            f"first apply @{n} views (Feast's size)",
            "s",
            p.cold.median_s,
            **feast_apply_cells(f.cold, f, p.cold.median_s, n),
        ),
        Row(
            f"no-op re-apply @{n} views",
            "s",
            p.noop.median_s,
            **feast_apply_cells(f.noop, f, p.noop.median_s, n),
        ),
        Row(
            f"cached lookup, median @{n} views",
            "us",
            median,
            **feast_lookup_cells(f, "median_us", median, n),
        ),
    ]


def verdicts(rows: list[Row]) -> list[str]:
    lines = []
    for row in (r for r in rows if r.verdict and r.parity is not None and r.target):
        word = "PASS" if row.parity < row.target else "MISS"
        shown, target = quantity(row.parity, row.unit), quantity(row.target, row.unit)
        lines.append(
            f"{word}  {row.label}: {shown} (target < {target}, {ratio(row.parity, row.target)})"
        )
    return lines


def details(r: Results) -> list[str]:
    p, fl = r.parity, r.floors
    lines = [
        "Runs, wall seconds each (median shown above), and the process's user+sys CPU seconds:",
        *(
            f"  {name}: {s.all_s}"
            for name, s in (
                ("first apply", p.cold),
                ("no-op re-apply", p.noop),
                ("one-update apply", p.update),
                ("plan", p.plan),
            )
        ),
        "Practical limits (same run):",
        f"  interpreter start + import parity.cli.main: {fl.startup_s:.3f} s median of 5, "
        f"peak RSS {fl.startup_rss_mib:.0f} MiB",
        f"  catalog JSON ({fl.catalog_bytes / 1024:.0f} KiB): Catalog.to_json() + one INSERT "
        f"into a fresh {r.registry} table {fl.write_s:.3f} s; one SELECT of it {fl.read_s:.4f} s",
        f"  apply limit = start + write = {fl.apply_s:.3f} s; no-op/plan limit = start + read = "
        f"{fl.noop_s:.3f} s; lookup limit = dict[name] timed the same way",
        f"  parity lookups: {r.lookup['views']} views, shuffled; registry reloads while timing: "
        f"{r.lookup['reloads'] - 1}",
        *phase_lines(r),
        f"Machine load average (1 min) at start / end: {r.load[0]:.2f} / {r.load[1]:.2f}",
    ]
    return lines + feast_details(r.feast)


def phase_lines(r: Results) -> list[str]:
    cold = sum(seconds for label, seconds in r.phases if not label.startswith("no-op"))
    return [
        "Where the time goes (one fresh process, phase by phase, throw-away SQLite registry):",
        *(f"  {label:<48} {seconds:.3f} s" for label, seconds in r.phases),
        f"  sum of the cold-apply phases: {cold:.3f} s (compare the CLI's first apply with the "
        f"{r.registry} registry: {r.parity.cold.median_s:.3f} s)",
    ]


def feast_details(f: FeastFigures | None) -> list[str]:
    if f is None:
        return ["Feast: not run (pass --with-feast)."]
    lines = [
        f"Feast {f.version} ({f.registry_type} registry on SQLite, local provider, SQLite online "
        f"store), {f.views} views, limit {f.timeout:.0f} s per apply; its apply also creates one "
        "online-store table per view."
    ]
    for name, run in (("first apply", f.cold), ("no-op re-apply", f.noop)):
        if run is not None:
            state = f"over {f.timeout:.0f} s (stopped)" if run.timed_out else f"{run.seconds:.2f} s"
            lines.append(f"  feast {name}: {state}, peak RSS {run.peak_rss_mib:.0f} MiB")
    if f.failure:
        lines.append(f"  FAILED: {f.failure}")
    return lines


def report(r: Results) -> str:
    rows = main_rows(r) + peer_rows(r)
    lines = [table(rows)]
    if r.feast is not None and r.feast.views != r.spec.views:
        lines.append(
            f"Feast ran at {r.feast.views} views (--feast-views): in the first rows its apply "
            "ratio is per view; the last rows compare both at that size."
        )
    return "\n".join([*lines, "", *details(r), "", *verdicts(rows)])


# --- the run ------------------------------------------------------------------------------------


def project_name(postgres_url: str | None, suffix: str = "") -> str:
    if postgres_url is None:
        return "bench"
    return f"bench_{os.getpid()}_{int(time.time())}{suffix}"


def measure_peer(
    spec: gen.RepoSpec, url: str | None, repeats: int, repos: list[ParityRepo]
) -> Peer:
    repo = make_parity_repo("registry_peer", spec, url, project_name(url, "_peer"))
    repos.append(repo)
    print(f"  parity at Feast's size, {spec.views} views:", flush=True)
    figures = measure_parity_cli(repo, repeats, full=False)
    return Peer(spec.views, figures, measure_lookup(PYTHON, "parity", repo.root))


def measure_all(args: argparse.Namespace, repos: list[ParityRepo]) -> Results:
    spec = gen.RepoSpec(args.views, args.features)
    load = os.getloadavg()[0]
    url = args.postgres_url if args.registry == "postgres" else None
    repo = make_parity_repo("registry", spec, url, project_name(url))
    repos.append(repo)
    figures = measure_parity_cli(repo, args.repeats)
    floors = measure_floors(repo, args.repeats)
    print("  parity: phase breakdown, cached lookup ...", flush=True)
    phases = breakdown(repo)
    lookup = measure_lookup(PYTHON, "parity", repo.root)
    results = Results(spec, args.registry, figures, floors, lookup, phases, (load, 0.0))
    if args.with_feast:
        feast_spec = gen.RepoSpec(args.feast_views or args.views, args.features)
        if feast_spec.views != spec.views:
            results.peer = measure_peer(feast_spec, url, args.repeats, repos)
        results.feast = measure_feast(feast_spec, args.feast_registry, args.feast_timeout)
    results.load = (load, os.getloadavg()[0])
    return results


def teardown(repos: list[ParityRepo]) -> None:
    """Remove the run's projects from PostgreSQL (SQLite registries go with the folder)."""
    for repo in repos:
        if repo.postgres_url is not None and repo.applied:
            checked(run_timed(repo.cli("teardown", "--yes"), repo.root), "parity teardown")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--views", type=int, default=500, help="feature views in the generated repo")
    add("--features", type=int, default=20, help="features per view")
    add("--repeats", type=int, default=3, help="runs per CLI measurement (median shown)")
    add("--registry", choices=("sqlite", "postgres"), default="sqlite")
    add("--postgres-url", default=DEFAULT_PG_URL, help="with --registry postgres")
    add(
        "--with-feast", action="store_true", help="also run Feast (installs benchmarks/.feast-venv)"
    )
    add("--feast-views", type=int, default=None, help="run Feast at this many views instead")
    add("--feast-timeout", type=float, default=600.0, help="seconds allowed per feast apply")
    add("--feast-registry", choices=("sql", "file"), default="sql", help="Feast registry type")
    args = parser.parse_args(argv)
    if min(args.views, args.features, args.repeats, args.feast_views or 1) < 1:
        parser.error("--views, --features, --repeats and --feast-views must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"Parity registry benchmark: {args.views} views x {args.features} features, "
        f"{args.registry} registry, {args.repeats} runs each, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    repos: list[ParityRepo] = []
    try:
        results = measure_all(args, repos)
    except BenchFailure as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    finally:
        cleanup(repos)
    print()
    print(report(results))
    return 1 if results.feast is not None and results.feast.failure else 0


def cleanup(repos: list[ParityRepo]) -> None:
    try:
        teardown(repos)
    except BenchFailure as error:
        print(f"FAILED to clean up (remove the project by hand): {error}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
