"""Online serving (issue 4): materialization, in-process get_online_features and the HTTP feature
server, Parity against Feast on the same data, the same machine and the same Redis, in one run.

    .venv/bin/python benchmarks/bench_online.py [--size small|full] [--no-feast] [--repeat N]
        [--wrk-seconds S] [--parity-workers N] [--feast-offline duckdb|file]
        [--http-stores redis[,sqlite]] [--materialize-repeat N] [--feast-materialize-repeat N]
        [--auth-rounds N] [--no-auth]

Data comes from online_data.py (cached under benchmarks/.work/online/<size>/), repos from
online_repos.py, in-process latencies from online_reads.py, HTTP load from wrk (online_http.py),
the Feast-client check from online_feast_client.py, tables and verdicts from online_report.py.
Every timing-sensitive step runs alone. Issue 17: `parity serve` with auth off and on (a twin
repo with `auth.enabled` and a `features:read` token, auth_compare.py), both up at once, the same
wrk load alternating between them for --auth-rounds rounds: the difference in the server's CPU
time per request, against the 20 µs target.
Redis keys are under project names unique to the benchmark and are deleted at the end.

Prints one table per part, then one PASS/MISS line per target of the issue. Exits 0 even when a
target is missed; non-zero only when something failed to run. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import auth_compare  # noqa: E402
import bench_registry  # noqa: E402
import bench_retrieval  # noqa: E402
import online_data as data  # noqa: E402
import online_http as http  # noqa: E402
import online_repos as repos  # noqa: E402
import proc_cpu  # noqa: E402
from bench_retrieval import (  # noqa: E402
    FEAST_PYTHON,
    FEAST_VENV,
    GIB,
    PARITY_CLI,
    PARITY_PYTHON,
    checked,
    feast_env,
    run_watched,
)
from online_report import (  # noqa: E402
    HTTP_SHAPES,
    ISSUE_FEAST,
    ONE_CONNECTION,
    READ_SHAPES,
    STORES,
    ClientCheck,
    HttpFigures,
    Latency,
    Materialized,
    client_report,
    compare,
    http_report,
    materialization_report,
    pct,
    reads_report,
)

WORK = BENCH_DIR / ".work" / "online"
EXCHANGE_FILE = WORK / "feast_client_exchange.json"
FEAST_CLI = FEAST_VENV / "bin" / "feast"
MEMORY_LIMIT = 16 * GIB

SIZE_DEFAULTS: dict[str, dict[str, Any]] = {
    "small": {
        "repeat": 1,
        "wrk_seconds": 5.0,
        "calls": {"1x10": (1_000, 100), "100x50": (200, 20)},
        "materialize_repeat": 3,
        "feast_materialize_repeat": 1,
        "auth_rounds": 2,
    },
    "full": {
        "repeat": 3,
        "wrk_seconds": 10.0,
        "calls": {"1x10": (2_000, 200), "100x50": (500, 50)},
        "materialize_repeat": 3,
        "feast_materialize_repeat": 1,
        "auth_rounds": 3,
    },
}
# Feast's servers: its defaults (1 worker, access log, workers recycled every ~1,000 requests,
# registry reloaded every 60 s), --workers 2 alone, and tuned (no recycling, no access log).
TUNED = ["--workers", "2", "--no-access-log", "--max-requests", "0", "--registry_ttl_sec", "3600"]
FEAST_SERVERS: tuple[tuple[str, list[str], str], ...] = (
    ("feast default", [], "feast serve defaults: 1 worker, access log on"),
    ("feast workers2", ["--workers", "2"], "--workers 2"),
    ("feast tuned", TUNED, " ".join(TUNED)),
)
# Feast's HTTP client is run against these servers (the second one is the control).
CLIENT_CHECKED = ("parity redis", "feast default redis")


class BenchFailure(Exception):
    """Something the benchmark needs failed to run."""


FAILURES = (
    BenchFailure,
    bench_retrieval.BenchFailure,
    bench_registry.BenchFailure,
    http.ServerError,
)


def log(text: str) -> None:
    print(text, flush=True)


def finish(started: float, failures: list[str]) -> int:
    """The last lines of a benchmark's report; its exit status (1 if something failed to run)."""
    print(f"\ntotal {time.perf_counter() - started:.0f} s; {load_average()}")
    if failures:
        print("\nFAILED TO RUN:\n" + "\n".join(failures), file=sys.stderr)
        return 1
    return 0


def load_average() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- set-up -------------------------------------------------------------------------------------


@dataclass
class Setup:
    size: str
    drivers: int
    rows: int
    base: Path
    parity: dict[str, Path] = field(default_factory=dict)  # store -> repo
    feast: dict[str, Path] = field(default_factory=dict)
    parity_project: str = ""
    feast_project: str = ""
    feast_version: str = ""
    start: str = ""
    end: str = ""

    @property
    def ids(self) -> tuple[int, int]:
        return (data.FIRST_DRIVER_ID, self.drivers)


def ensure_feast_redis() -> str:
    """benchmarks/.feast-venv with feast[duckdb] (bench_retrieval's helper) plus the redis extra
    at the same Feast version; returns Feast's version."""
    version = bench_retrieval.ensure_feast(MEMORY_LIMIT)
    logs = WORK / "logs"
    probe: list[str | Path] = [FEAST_PYTHON, "-c", "import redis, feast"]
    if run_watched(probe, logs / "feast-redis.log", limit_bytes=MEMORY_LIMIT, timeout=300).ok:
        return version
    log(f"  feast: adding the redis extra to benchmarks/.feast-venv (feast {version}) ...")
    bench_retrieval.install_feast_extra("redis", version, logs / "pip-redis.log", MEMORY_LIMIT)
    checked(
        run_watched(probe, logs / "feast-redis.log", limit_bytes=MEMORY_LIMIT, timeout=300),
        "import redis in benchmarks/.feast-venv",
    )
    return version


def redis_client() -> Any:
    import redis

    client = redis.Redis.from_url(repos.REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as error:
        raise BenchFailure(f"Redis at {repos.REDIS_URL} does not answer: {error}") from None
    return client


def redis_patterns(setup: Setup) -> dict[str, bytes]:
    """The benchmark's Redis keys: Parity's are prefixed by project, Feast's end with it."""
    return {
        "parity": f"parity:v1:{setup.parity_project}:*".encode(),
        "feast": f"*{setup.feast_project}".encode(),
    }


def delete_keys(pattern: bytes) -> int:
    client = redis_client()
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=5_000):
        batch.append(key)
        if len(batch) >= 5_000:
            deleted += int(client.unlink(*batch))
            batch = []
    if batch:
        deleted += int(client.unlink(*batch))
    client.close()
    return deleted


def empty_sqlite(path: Path) -> None:
    """Delete every row of every table of a SQLite file (the schema stays)."""
    if not path.exists():
        return
    with contextlib.closing(sqlite3.connect(path)) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            conn.execute(f'DELETE FROM "{table}"')
        conn.commit()


def clear_online(setup: Setup, system: str, store: str) -> None:
    if store == "redis":
        delete_keys(redis_patterns(setup)[system])
    elif system == "parity":
        empty_sqlite(setup.parity[store] / "data" / "online.db")
    else:
        empty_sqlite(setup.feast[store] / "data" / "online_store.db")


def prepare(args: argparse.Namespace) -> Setup:
    spec = data.SIZES[args.size]
    base = WORK / args.size
    setup = Setup(
        args.size,
        spec["drivers"],
        spec["rows"],
        base,
        parity_project=f"bench_online_{args.size}",
        feast_project=f"bench_online_feast_{args.size}",
        start=(data.WINDOW_START.replace(tzinfo=None) - timedelta(days=1)).isoformat(),
        end=(data.WINDOW_END.replace(tzinfo=None) + timedelta(days=1)).isoformat(),
    )
    log(f"data: {setup.rows:,} rows over {setup.drivers:,} drivers ...")
    gen = checked(
        run_watched(
            [PARITY_PYTHON, BENCH_DIR / "online_data.py", base / "data", args.size],
            base / "logs" / "data.log",
            limit_bytes=MEMORY_LIMIT,
            timeout=1800,
        ),
        "generating the data",
    )
    log("  " + gen.log.read_text().strip().splitlines()[-1])
    for pattern in redis_patterns(setup).values():
        delete_keys(pattern)  # left over from an interrupted run
    for store in STORES:
        root = base / f"parity_{store}"
        repos.parity_repo(root, setup.parity_project, store, base / "data")
        cli(
            [PARITY_CLI, "apply", "--repo", root],
            base / "logs" / f"parity-apply-{store}.log",
            f"parity apply ({store})",
        )
        setup.parity[store] = root
    if not args.no_feast:
        for store in STORES:
            root = base / f"feast_{store}"
            repos.feast_repo(
                root, setup.feast_project, store, base / "data", offline=args.feast_offline
            )
            log(f"  feast apply ({store}) ...")
            cli(
                [FEAST_CLI, "apply"],
                base / "logs" / f"feast-apply-{store}.log",
                "feast apply",
                root,
            )
            setup.feast[store] = root
    return setup


def cli(command: list[str | Path], logfile: Path, what: str, cwd: Path | None = None) -> None:
    checked(
        run_watched(
            command,
            logfile,
            limit_bytes=MEMORY_LIMIT,
            timeout=1800,
            cwd=cwd,
            env=feast_env(),
        ),
        what,
    )


# --- materialization ----------------------------------------------------------------------------


def materialize_command(
    setup: Setup, system: str, store: str, views: list[str]
) -> tuple[list[str | Path], Path, dict[str, str] | None]:
    if system == "parity":
        command: list[str | Path] = [PARITY_CLI, "materialize", setup.start, setup.end]
        command += ["--repo", setup.parity[store], "--views", ",".join(views)]
        return command, setup.parity[store], None
    command = [FEAST_CLI, "materialize", setup.start, setup.end]
    for view in views:
        command += ["-v", view]
    return command, setup.feast[store], feast_env()


def materialize(
    setup: Setup, system: str, store: str, views: list[str], attempt: str
) -> bench_registry.Run:
    command, cwd, env = materialize_command(setup, system, store, views)
    print(
        f"  {system} materialize {','.join(views)} into {store} {attempt} ...", end=" ", flush=True
    )
    run = bench_registry.run_timed(command, cwd, 3_600, env)
    if run.rc != 0 or run.timed_out:
        output = "\n".join((run.stdout + run.stderr).strip().splitlines()[-15:])
        raise BenchFailure(f"{system} materialize into {store} failed (exit {run.rc}):\n{output}")
    log(f"{run.seconds:.2f} s (CPU {run.cpu_s:.2f} s), peak RSS {run.peak_rss_mib / 1024:.2f} GB")
    return run


def limit_run(setup: Setup, store: str, attempt: str) -> bench_registry.Run:
    """One run of materialize_limit.py (the floor) into `store`, emptied first."""
    stats = setup.base / "data" / data.STATS_FILE
    if store == "redis":
        delete_keys(f"{setup.parity_project}_limit:*".encode())
        where = [repos.REDIS_URL, f"{setup.parity_project}_limit:"]
    else:
        (setup.base / "limit.db").unlink(missing_ok=True)
        where = [str(setup.base / "limit.db")]
    command = [PARITY_PYTHON, BENCH_DIR / "materialize_limit.py", stats, store, *where]
    print(f"  limit (floor) into {store} {attempt} ...", end=" ", flush=True)
    run = bench_registry.run_timed(command, setup.base, 600)
    if run.rc != 0 or run.timed_out:
        raise BenchFailure(f"materialize_limit.py into {store} failed:\n{run.stderr[-2000:]}")
    log(f"{run.seconds:.2f} s (CPU {run.cpu_s:.2f} s), peak RSS {run.peak_rss_mib / 1024:.2f} GB")
    if store == "redis":
        delete_keys(f"{setup.parity_project}_limit:*".encode())
    return run


def measure_materialization(
    setup: Setup, args: argparse.Namespace
) -> dict[tuple[str, str], Materialized]:
    log(
        f"materialization: {data.STATS_VIEW} ({setup.drivers:,} entities over {setup.rows:,} "
        f"rows); {load_average()}"
    )
    bench_retrieval.byte_compile_parity()
    systems = [("parity", args.materialize_repeat)]
    if not args.no_feast:
        systems.append(("feast", args.feast_materialize_repeat))
    results: dict[tuple[str, str], Materialized] = {}
    for store in STORES:
        for system, repeat in systems:
            if "materialize" not in args.parts:
                materialize(setup, system, store, [data.STATS_VIEW], "(untimed: --parts)")
                materialize(setup, system, store, list(data.EXTRA_VIEWS), "(for the reads)")
                continue
            entry = results.setdefault((system, store), Materialized())
            for index in range(repeat):
                clear_online(setup, system, store)
                run = materialize(setup, system, store, [data.STATS_VIEW], f"{index + 1}/{repeat}")
                entry.seconds.append(run.seconds)
                entry.cpu.append(run.cpu_s)
                entry.rss_gib.append(run.peak_rss_mib / 1024)
            materialize(setup, system, store, list(data.EXTRA_VIEWS), "(for the reads)")
        if "materialize" in args.parts:  # the floor, in the same run (materialize_limit.py)
            entry = results.setdefault(("limit", store), Materialized())
            for index in range(args.materialize_repeat):
                run = limit_run(setup, store, f"{index + 1}/{args.materialize_repeat}")
                entry.seconds.append(run.seconds)
                entry.cpu.append(run.cpu_s)
                entry.rss_gib.append(run.peak_rss_mib / 1024)
    return results


# --- in-process reads ---------------------------------------------------------------------------


def read_worker(
    setup: Setup,
    system: str,
    store: str,
    calls: dict[str, tuple[int, int]],
    run_id: str,
    dump: dict[str, Any] | None = None,
) -> dict[str, Any]:
    results = setup.base / "results"
    results.mkdir(parents=True, exist_ok=True)
    config_path = results / f"reads-{system}-{store}-{run_id}.json"
    result_path = results / f"reads-{system}-{store}-{run_id}-result.json"
    result_path.unlink(missing_ok=True)
    repo = setup.parity[store] if system == "parity" else setup.feast[store]
    shapes = [
        {
            "name": name,
            "refs": refs,
            "entities": entities,
            "calls": calls[name][0],
            "warmup": calls[name][1],
        }
        for name, (refs, entities) in READ_SHAPES.items()
    ]
    config = {"system": system, "repo": str(repo), "ids": list(setup.ids), "seed": 7}
    config |= {"shapes": shapes, "dump": dump}
    config_path.write_text(json.dumps(config))
    python = PARITY_PYTHON if system == "parity" else FEAST_PYTHON
    run = run_watched(
        [python, BENCH_DIR / "online_reads.py", config_path, result_path],
        results / f"reads-{system}-{store}-{run_id}.log",
        limit_bytes=MEMORY_LIMIT,
        timeout=1800,
        env=feast_env(),
    )
    checked(run, f"{system} in-process reads ({store})")
    return dict(json.loads(result_path.read_text()))


def measure_reads(
    setup: Setup, args: argparse.Namespace, dump_ids: list[int]
) -> tuple[dict[tuple[str, str, str], Latency], dict[str, Any]]:
    calls = SIZE_DEFAULTS[setup.size]["calls"]
    what = ", ".join(f"{name} {n:,} calls after {w:,}" for name, (n, w) in calls.items())
    log(f"in-process get_online_features ({what}; {args.repeat} run(s) each); {load_average()}")
    systems = ["parity"] if args.no_feast else ["parity", "feast"]
    table: dict[tuple[str, str, str], Latency] = {}
    dumps: dict[str, Any] = {}
    for index in range(args.repeat):
        for store in STORES:
            for system in systems:
                dump = {"ids": dump_ids, "refs": repos.REFS_50} if index == 0 else None
                print(f"  {system} {store} run {index + 1}/{args.repeat} ...", end=" ", flush=True)
                out = read_worker(setup, system, store, calls, str(index), dump)
                if dump:
                    dumps[f"{system}-{store}"] = out["dump"]
                shown = []
                for shape, figures in out["shapes"].items():
                    us = figures["us"]
                    entry = table.setdefault((system, store, shape), Latency())
                    entry.p50_ms.append(pct(us, 0.50) / 1e3)
                    entry.p99_ms.append(pct(us, 0.99) / 1e3)
                    entry.calls += len(us)
                    entry.missing += figures["missing"]
                    shown.append(
                        f"{shape} p50 {pct(us, 0.5) / 1e3:.3f} ms p99 {pct(us, 0.99) / 1e3:.3f} ms"
                    )
                log("; ".join(shown))
    return table, dumps


# --- HTTP ---------------------------------------------------------------------------------------


@dataclass
class ServerSpec:
    label: str
    system: str
    store: str
    program: list[str | Path]  # the command line without --port
    cwd: Path | None = None
    env: dict[str, str] | None = None
    note: str = ""

    def command(self, port: int) -> list[str | Path]:
        return [*self.program, "--port", str(port)]


def parity_serve_supports_workers() -> bool:
    done = subprocess.run(
        [str(PARITY_CLI), "serve", "--help"],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ, COLUMNS="200"),
    )
    return "--workers" in done.stdout


def server_specs(setup: Setup, args: argparse.Namespace) -> list[ServerSpec]:
    workers = parity_serve_supports_workers()
    specs = []
    for store in args.http_stores:
        extra = ["--workers", str(args.parity_workers)] if workers else []
        note = (
            f"--workers {args.parity_workers}"
            if workers
            else "1 process: this parity serve has no --workers option yet"
        )
        root = setup.parity[store]
        specs.append(
            ServerSpec(
                f"parity {store}",
                "parity",
                store,
                [PARITY_CLI, "serve", "--repo", root, *extra],
                note=note,
            )
        )
        if args.no_feast:
            continue
        for label, flags, feast_note in FEAST_SERVERS:
            specs.append(
                ServerSpec(
                    f"{label} {store}",
                    "feast",
                    store,
                    [FEAST_CLI, "serve", *flags],
                    cwd=setup.feast[store],
                    env=feast_env(),
                    note=feast_note,
                )
            )
    return specs


@contextlib.contextmanager
def serving(spec: ServerSpec, setup: Setup) -> Iterator[http.Server]:
    port = http.free_port()
    name = spec.label.replace(" ", "-")
    server = http.start_server(
        spec.label,
        spec.command(port),
        port,
        setup.base / "logs" / f"server-{name}.log",
        cwd=spec.cwd,
        env=spec.env,
    )
    try:
        yield server
    finally:
        server.stop()


def check_answer(
    server: http.Server,
    setup: Setup,
    refs: list[str],
    entities: int,
    headers: dict[str, str] | None = None,
) -> None:
    """One request before the load: 200, and one result column per entity key and feature."""
    ids = [setup.ids[0] + i for i in range(entities)]
    body = {"features": refs, "entities": {"driver_id": ids}}
    status, text = http.post(server.url, body, headers=headers)
    if status != 200:
        raise http.ServerError(f"{server.name} answered {status}: {text[:2000]}")
    results = json.loads(text).get("results", [])
    if len(results) != len(refs) + 1 or any(len(r["values"]) != entities for r in results):
        raise http.ServerError(f"{server.name}: unexpected response shape: {text[:500]}")


def load_server(
    spec: ServerSpec, server: http.Server, setup: Setup, args: argparse.Namespace
) -> dict[str, HttpFigures]:
    scripts: dict[str, Path] = {}
    for shape, (refs, entities) in HTTP_SHAPES.items():
        check_answer(server, setup, refs, entities)
        count = 1_000 if entities == 1 else 200
        payloads = http.bodies(refs, entities, setup.ids, count, seed=11)
        scripts[shape] = http.lua_script(setup.base / "results" / f"wrk-{shape}.lua", payloads)
        http.run_wrk(server.url, scripts[shape], seconds=2)  # warm-up, not counted
    figures: dict[str, HttpFigures] = {shape: HttpFigures() for shape in HTTP_SHAPES}
    # Issue 19: the 1x50 shape at 1 connection too (latency alone), for Parity and Feast tuned.
    alone = spec.system == "parity" or spec.label.startswith("feast tuned")
    if alone:
        figures[ONE_CONNECTION] = HttpFigures()
    for index in range(args.repeat):
        runs = [(shape, script, 8) for shape, script in scripts.items()]
        runs += [(ONE_CONNECTION, scripts["1x50"], 1)] if alone else []
        for shape, script, connections in runs:
            print(f"  {spec.label} {shape} run {index + 1}/{args.repeat} ...", end=" ", flush=True)
            run = http.run_wrk(
                server.url,
                script,
                seconds=args.wrk_seconds,
                threads=min(2, connections),
                connections=connections,
            )
            figures[shape].add(run)
            log(
                f"{run.rps:,.0f} req/s, p50 {run.latency_ms['50']:.2f} ms, "
                f"p99 {run.latency_ms['99']:.2f} ms"
                + (f", {run.errors} errors" if run.errors else "")
            )
    return figures


# --- auth on against off (issue 17) -------------------------------------------------------------


def measure_auth(
    setup: Setup, args: argparse.Namespace
) -> tuple[list[auth_compare.Comparison], list[str]]:
    """`parity serve` on the first of --http-stores, auth off and on, the same wrk load."""
    store = args.http_stores[0]
    twin = auth_compare.auth_twin(setup.parity[store], setup.base / f"parity_{store}_auth")
    bearer = {"Authorization": f"Bearer {auth_compare.create_token(twin, 'features:read')}"}
    heads: dict[str, dict[str, str] | None] = {"off": None, "on": bearer}
    roots = {"off": setup.parity[store], "on": twin}
    extra = ["--workers", str(args.parity_workers)] if parity_serve_supports_workers() else []
    log(
        f"auth on against off: parity serve ({store}, {' '.join(extra) or '1 process'}), "
        f"{args.auth_rounds} round(s) per mode, a features:read token; {load_average()}"
    )
    comparisons = {shape: auth_compare.Comparison(f"{store} {shape}") for shape in HTTP_SHAPES}
    try:
        with contextlib.ExitStack() as stack:
            servers = {
                mode: stack.enter_context(
                    serving(
                        ServerSpec(
                            f"parity auth {mode}",
                            "parity",
                            store,
                            [PARITY_CLI, "serve", "--repo", roots[mode], *extra],
                        ),
                        setup,
                    )
                )
                for mode in roots
            }
            scripts = auth_scripts(setup, servers, heads)
            for mode in auth_compare.modes(args.auth_rounds):
                for shape, comparison in comparisons.items():
                    comparison.add(mode, auth_phase(servers[mode], scripts[mode][shape], args))
    except http.ServerError as error:
        return [], [f"auth on against off: {error}"]
    return list(comparisons.values()), []


def auth_scripts(
    setup: Setup, servers: dict[str, http.Server], heads: dict[str, dict[str, str] | None]
) -> dict[str, dict[str, Path]]:
    """Each mode's wrk script per shape (the same bodies), after a check and a warm-up."""
    scripts: dict[str, dict[str, Path]] = {mode: {} for mode in servers}
    for shape, (refs, entities) in HTTP_SHAPES.items():
        payloads = http.bodies(refs, entities, setup.ids, 1_000 if entities == 1 else 200, seed=11)
        for mode, server in servers.items():
            check_answer(server, setup, refs, entities, heads[mode])
            path = setup.base / "results" / f"wrk-auth-{mode}-{shape}.lua"
            scripts[mode][shape] = http.lua_script(path, payloads, heads[mode])
            http.run_wrk(server.url, scripts[mode][shape], seconds=2)  # warm-up, not counted
    return scripts


def auth_phase(server: http.Server, script: Path, args: argparse.Namespace) -> auth_compare.Phase:
    print(f"  {server.name} {script.stem} ...", end=" ", flush=True)
    before = proc_cpu.tree_cpu(server.process.pid)
    run = http.run_wrk(server.url, script, seconds=args.wrk_seconds)
    cpu = proc_cpu.tree_cpu(server.process.pid) - before
    phase = auth_compare.Phase(
        run.requests, cpu, run.rps, run.latency_ms["50"], run.latency_ms["99"], run.errors
    )
    log(f"{run.rps:,.0f} req/s, p50 {phase.p50_ms:.2f} ms, {phase.cpu_us:.1f} µs CPU/request")
    return phase


# --- Feast's HTTP client against Parity's server ------------------------------------------------


def feast_client(
    setup: Setup, server: http.Server, expected: dict[str, list[Any]], ids: list[int], label: str
) -> ClientCheck:
    results = setup.base / "results"
    proxy = http.free_port()
    root = setup.base / f"feast_client_{label}"
    repos.feast_repo(
        root,
        setup.feast_project,
        "remote",
        setup.base / "data",
        registry=setup.feast["redis"] / "data" / "registry.db",
        server=f"http://127.0.0.1:{proxy}",
    )
    config_path, result_path = (
        results / f"client-{label}.json",
        results / f"client-{label}-out.json",
    )
    result_path.unlink(missing_ok=True)
    config = {"repo": str(root), "proxy_port": proxy, "target": server.url}
    config_path.write_text(json.dumps(config | {"refs": repos.REFS_50, "ids": ids}))
    checked(
        run_watched(
            [FEAST_PYTHON, BENCH_DIR / "online_feast_client.py", config_path, result_path],
            results / f"client-{label}.log",
            limit_bytes=MEMORY_LIMIT,
            timeout=300,
            env=feast_env(),
        ),
        f"the Feast client against {server.name}",
    )
    out = json.loads(result_path.read_text())
    check = ClientCheck(server.name, exchange=out)
    if out["error"]:
        last = out["exchanges"][-1] if out["exchanges"] else {}
        check.detail = (
            f"Feast's client raised; the server answered HTTP {last.get('status')} "
            f"{json.dumps(last.get('response'))}"
            if last
            else f"Feast's client raised before any request: {out['error'].strip()}"
        )
        return check
    difference = compare(expected, out["values"])
    check.passed = not difference
    check.detail = difference or (
        f"{len(ids)} entities x {len(repos.REFS_50)} features equal to parity's in-process values"
    )
    return check


# --- the whole HTTP part ------------------------------------------------------------------------


def measure_http(
    setup: Setup,
    args: argparse.Namespace,
    expected: dict[str, list[Any]] | None,
    dump_ids: list[int],
) -> tuple[dict[tuple[str, str], HttpFigures], list[ServerSpec], list[ClientCheck], list[str]]:
    log(
        f"HTTP: wrk -t2 -c8 -d{args.wrk_seconds:g}s --latency, {args.repeat} run(s) per shape; "
        + load_average()
    )
    figures: dict[tuple[str, str], HttpFigures] = {}
    checks: list[ClientCheck] = []
    failures: list[str] = []
    specs = server_specs(setup, args)
    for spec in specs:
        log(f"  {spec.label}: {spec.note}")
        try:
            with serving(spec, setup) as server:
                for shape, entry in load_server(spec, server, setup, args).items():
                    figures[(spec.label, shape)] = entry
                if expected is not None and not args.no_feast and spec.label in CLIENT_CHECKED:
                    log(f"  feast client against {spec.label} ...")
                    checks.append(feast_client(setup, server, expected, dump_ids, spec.system))
        except http.ServerError as error:
            failures.append(f"{spec.label}: {error}")
            log(f"  {spec.label} FAILED: {error}")
    return figures, specs, checks, failures


# --- the report ---------------------------------------------------------------------------------


def save_exchange(checks: list[ClientCheck], feast_version: str) -> None:
    if not checks:
        return
    WORK.mkdir(parents=True, exist_ok=True)
    record = {
        "feast_version": feast_version,
        "note": "What Feast's RemoteOnlineStore sent and what the server answered, through a "
        "recording proxy (online_feast_client.py).",
        "checks": [
            {
                "server": c.target,
                "passed": c.passed,
                "detail": c.detail,
                "client_error": c.exchange.get("error", ""),
                "exchanges": c.exchange.get("exchanges", []),
            }
            for c in checks
        ],
    }
    EXCHANGE_FILE.write_text(json.dumps(record, indent=1))


# --- main ---------------------------------------------------------------------------------------


PARTS = ("materialize", "reads", "http", "auth")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=tuple(data.SIZES), default="full")
    parser.add_argument("--no-feast", action="store_true", help="skip Feast")
    parser.add_argument("--repeat", type=int, help="runs of each read and wrk measurement")
    parser.add_argument("--wrk-seconds", type=float, help="seconds of each wrk run")
    parser.add_argument(
        "--parity-workers", type=int, default=2, help="parity serve --workers (when it has it)"
    )
    parser.add_argument("--feast-offline", choices=("duckdb", "file"), default="duckdb")
    parser.add_argument(
        "--http-stores", default="redis", help="online stores behind the servers: redis,sqlite"
    )
    parser.add_argument("--materialize-repeat", type=int, help="parity materializations per store")
    parser.add_argument("--auth-rounds", type=int, help="rounds of auth off and on (issue 17)")
    parser.add_argument("--no-auth", action="store_true", help="skip auth on against off")
    parser.add_argument(
        "--feast-materialize-repeat", type=int, help="feast materializations per store"
    )
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help="a subset of " + ",".join(PARTS) + " (without materialize, it is run once untimed)",
    )
    args = parser.parse_args(argv)
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if set(args.parts) - set(PARTS):
        parser.error("--parts takes " + ",".join(PARTS))
    for name, value in SIZE_DEFAULTS[args.size].items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    args.http_stores = [s.strip() for s in args.http_stores.split(",") if s.strip()]
    if set(args.http_stores) - set(STORES):
        parser.error("--http-stores takes redis and/or sqlite")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    log(
        f"bench_online: size {args.size}; repeat {args.repeat}; {os.cpu_count()} CPUs; "
        + load_average()
    )
    failures: list[str] = []
    report: list[str] = []
    setup: Setup | None = None
    try:
        if http.wrk_path() is None:
            raise BenchFailure("wrk is not installed: apt-get install wrk")
        redis_client().close()
        feast_version = "" if args.no_feast else ensure_feast_redis()
        if feast_version:
            log(f"  feast {feast_version} in {FEAST_VENV} (offline store {args.feast_offline})")
        setup = prepare(args)
        setup.feast_version = feast_version
        materialized = measure_materialization(setup, args)
        dump_ids = [setup.ids[0] + i * (setup.drivers // 7) for i in range(6)] + [setup.ids[0] - 1]
        latencies, dumps = (
            measure_reads(setup, args, dump_ids) if "reads" in args.parts else ({}, {})
        )
        expected = dumps.get("parity-redis")
        figures, specs, checks, http_failures = (
            measure_http(setup, args, expected, dump_ids)
            if "http" in args.parts
            else ({}, [], [], [])
        )
        failures += http_failures
        save_exchange(checks, feast_version)
        auth, auth_failures = (
            ([], []) if args.no_auth or "auth" not in args.parts else measure_auth(setup, args)
        )
        failures += auth_failures

        text, lines = materialization_report(setup.drivers, setup.rows, materialized)
        report += [
            "",
            f"materialization of {data.STATS_VIEW}: {setup.drivers:,} entities over "
            f"{setup.rows:,} rows (median of the runs)",
            text,
        ]
        targets = lines
        text, lines = reads_report(latencies, args.no_feast)
        report += [
            "",
            "in-process get_online_features, ms (median over runs of each run's percentile)",
            text,
        ]
        targets += lines
        servers = [(spec.label, spec.system, spec.store) for spec in specs]
        text, lines = http_report(figures, servers, args.no_feast)
        report += [
            "",
            f"HTTP POST /get-online-features, wrk -t2 -c8 -d{args.wrk_seconds:g}s "
            "(median over runs)",
            text,
        ]
        targets += lines
        if "http" in args.parts:
            targets += client_report(checks, args.no_feast)
        else:
            targets.append("info  Feast's HTTP client check runs with the http part: not run")
        if expected is not None:
            others = ["parity-sqlite"] + ([] if args.no_feast else ["feast-sqlite", "feast-redis"])
            for other in others:
                same = compare(expected, dumps.get(other))
                targets.append(
                    f"info  in-process values, {other} vs parity-redis, "
                    f"{len(dump_ids)} entities x 50 features: "
                    + ("equal" if not same else f"DIFFER: {same}")
                )
        if checks:
            targets.append(f"info  exchange saved to {EXCHANGE_FILE.relative_to(BENCH_DIR.parent)}")
        report += ["", "targets (issue 4):", *("  " + line for line in targets)]
        if auth:
            report += ["", f"auth on against off, wrk -t2 -c8 -d{args.wrk_seconds:g}s (issue 17)"]
            for comparison in auth:
                report += comparison.lines()
            report += ["", "target (issue 17):", *("  " + c.target() for c in auth)]
        report += ["", f"the issue's Feast figures: {ISSUE_FEAST}"]
    except FAILURES as error:
        failures.append(str(error))
    finally:
        if setup is not None:
            with contextlib.suppress(*FAILURES, OSError):
                deleted = sum(delete_keys(p) for p in redis_patterns(setup).values())
                report.append(f"cleanup: deleted {deleted:,} Redis keys of the benchmark")
    for line in report:
        print(line)
    return finish(started, failures)


if __name__ == "__main__":
    sys.exit(main())
