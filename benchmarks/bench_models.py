"""Model serving (issue 6): Parity's model server against the in-process predict and against
MLServer, on the same scikit-learn models, the same machine and the same client, in one run.

    .venv/bin/python benchmarks/bench_models.py [--size small|full] [--duration S] [--clients N]
        [--rf-trees N] [--max-latency-ms MS] [--no-mlserver] [--auth-rounds N] [--no-auth]

Three parts: (1) server overhead: one sequential client, 1-row LogisticRegression requests, p50
against LoadedModel.predict's p50 on the same rows; (2) adaptive batching: a RandomForest served
twice by one server, batching on and off, under N concurrent 1-row clients; (3) the same
LogisticRegression served by `parity serve-models` and by MLServer (its own venv,
benchmarks/.mlserver-venv), one after the other, under the same load. The load comes from
models_load.py, a process of its own; MLServer's venv and repository from models_mlserver.py.
(4, issue 17) auth on against off: the LogisticRegression served from the repo and from a twin
with `auth.enabled`, called with a `models:predict:lr` token, both servers up at once, the same
load alternating between them for --auth-rounds rounds (auth_compare.py): the difference in the
server's CPU time per request, against the 20 µs target.

Prints one block per part, then one PASS/MISS line per target of the issue. Exits 0 even when a
target is missed; non-zero only when something failed to run. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import auth_compare  # noqa: E402
import models_mlserver as mls  # noqa: E402
import proc_cpu  # noqa: E402
from models_report import InProcess, LoadRun, Results, report  # noqa: E402
from online_http import Server, free_port  # noqa: E402

ROOT = BENCH_DIR.parent
PARITY_PYTHON = ROOT / ".venv" / "bin" / "python"
PARITY_CLI = ROOT / ".venv" / "bin" / "parity"
LOAD = BENCH_DIR / "models_load.py"
WORK = BENCH_DIR / ".work" / "models"

FEATURES = 8
ROWS = 256  # distinct request rows, sent in turn
SIZES: dict[str, dict[str, float]] = {
    # seconds: each concurrent load; sequential: part 1's load; warmup: before each load
    "small": {
        "seconds": 3.0,
        "sequential": 2.0,
        "warmup": 1.0,
        "calls": 1_000,
        "rf_calls": 40,
        "auth_rounds": 2,
    },
    "full": {
        "seconds": 10.0,
        "sequential": 5.0,
        "warmup": 2.0,
        "calls": 10_000,
        "rf_calls": 200,
        "auth_rounds": 3,
    },
}
MAX_WARMUP_S = 60.0  # the warm-up also waits for every connection's first answer, this long


class BenchFailure(Exception):
    """Something the benchmark needs failed to run."""


def log(text: str) -> None:
    print(text, flush=True)


def load_average() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- models and in-process timings --------------------------------------------------------------


@dataclass
class Models:
    lr: Any
    rf: Any
    rows: Any  # ROWS x FEATURES float64, the rows every request and in-process call uses
    lr_labels: Any
    rf_labels: Any


def train(trees: int) -> Models:
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(6)
    x = rng.normal(size=(5_000 + ROWS, FEATURES))
    y = ((x[:, 0] + x[:, 1] * x[:, 2] - 0.5 * x[:, 3]) > 0).astype(np.int64)
    train_x, train_y, rows = x[:5_000], y[:5_000], x[5_000:]
    lr = LogisticRegression(max_iter=1_000).fit(train_x, train_y)
    rf = RandomForestClassifier(n_estimators=trees, max_depth=8, n_jobs=1, random_state=6)
    rf.fit(train_x, train_y)
    return Models(lr, rf, rows, lr.predict(rows), rf.predict(rows))


def time_calls(call: Callable[[int], Any], calls: int, warmup: int) -> list[float]:
    """Milliseconds of each call(i), i cycling over the rows, after `warmup` untimed calls."""
    for index in range(warmup):
        call(index % ROWS)
    out = []
    for index in range(calls):
        started = time.perf_counter_ns()
        call(index % ROWS)
        out.append((time.perf_counter_ns() - started) / 1e6)
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def time_in_process(loaded: dict[str, Any], models: Models, size: dict[str, float]) -> InProcess:
    rows = models.rows
    calls, rf_calls = int(size["calls"]), int(size["rf_calls"])
    lr, rf = loaded["lr"], loaded["rf_on"]
    lr_ms = time_calls(lambda i: lr.predict(rows[i : i + 1]), calls, calls // 10)
    native = time_calls(lambda i: models.lr.predict(rows[i : i + 1]), calls, calls // 10)
    rf_1 = time_calls(lambda i: rf.predict(rows[i : i + 1]), rf_calls, 5)
    rf_64 = time_calls(lambda i: rf.predict(rows[(i % 4) * 64 : (i % 4) * 64 + 64]), rf_calls, 5)
    rf_native = time_calls(lambda i: models.rf.predict(rows[i : i + 1]), rf_calls, 5)
    return InProcess(
        pct(lr_ms, 0.5),
        pct(lr_ms, 0.99),
        pct(native, 0.5),
        pct(rf_1, 0.5),
        pct(rf_64, 0.5),
        pct(rf_native, 0.5),
    )


# --- the Parity repo ----------------------------------------------------------------------------


def write_repo(root: Path, max_latency_ms: float) -> None:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / "parity.yaml").write_text(
        "project: bench_models\n"
        "models:\n"
        "  trusted: true\n"
        "  serving:\n"
        "    prediction_log: null\n"
        "    batching: {max_batch_size: 64, max_latency_ms: 5}\n"
        "    models:\n"
        f"      rf_on: {{max_batch_size: 64, max_latency_ms: {max_latency_ms:g}}}\n"
        "      rf_off: {max_batch_size: 1}\n"
        "      lr_off: {max_batch_size: 1}\n"
    )


def register(root: Path, models: Models) -> dict[str, Any]:
    """Registers lr, lr_off (the LogisticRegression), rf_on, rf_off (the forest); returns each
    name's LoadedModel, loaded back from the registry as the server will."""
    from parity import FeatureStore

    store = FeatureStore(root)
    try:
        sample = models.rows[:5]
        loaded = {}
        lr, rf = models.lr, models.rf
        for name, model in (("lr", lr), ("lr_off", lr), ("rf_on", rf), ("rf_off", rf)):
            version = store.models.register_model(
                name, model, flavor="sklearn", sample_input=sample
            )
            loaded[name] = store.models.load(version)
        return loaded
    finally:
        store.close()


# --- servers and the client ---------------------------------------------------------------------


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def http_post(
    url: str, body: str, timeout: float = 30.0, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    request = urllib.request.Request(
        url,
        data=body.encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


@contextlib.contextmanager
def serving(
    name: str,
    command: list[str | Path],
    port: int,
    ready: list[str],
    logfile: Path,
    env: dict[str, str] | None = None,
    timeout: float = 180.0,
) -> Iterator[Server]:
    """A server in its own session, up once every path in `ready` answers 200; stopped after."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "wb") as out:
        process = subprocess.Popen(
            [str(c) for c in command],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    server = Server(name, port, process, logfile)
    try:
        deadline = time.monotonic() + timeout
        waiting = list(ready)
        while waiting:
            if process.poll() is not None:
                raise BenchFailure(f"{name} exited ({process.returncode}):\n{server.tail()}")
            if time.monotonic() > deadline:
                raise BenchFailure(f"{name}: {waiting[0]} not 200 after {timeout:.0f} s")
            with contextlib.suppress(OSError):
                if http_get(server.url + waiting[0], timeout=2)[0] == 200:
                    waiting.pop(0)
                    continue
            time.sleep(0.2)
        yield server
    finally:
        server.stop()


def infer_body(row: Any) -> str:
    data = [float(v) for v in row]
    tensor = {"name": "input", "shape": [1, len(data)], "datatype": "FP64", "data": data}
    return json.dumps({"inputs": [tensor]}, separators=(",", ":"))


def check_answers(
    server: Server, model: str, models: Models, expected: Any, headers: dict[str, str] | None = None
) -> None:
    """Before any load: 8 rows answer 200 with the in-process prediction."""
    for index in range(8):
        path = f"/v2/models/{model}/infer"
        status, text = http_post(server.url + path, infer_body(models.rows[index]), headers=headers)
        if status != 200:
            raise BenchFailure(f"{server.name}: POST {path} answered {status}: {text[:1000]}")
        outputs = json.loads(text).get("outputs") or [{}]
        got = outputs[0].get("data")
        if got != [int(expected[index])]:
            raise BenchFailure(
                f"{server.name} {model}: row {index} predicted {got}, in-process "
                f"{[int(expected[index])]}: {text[:300]}"
            )


def drive(
    server: Server,
    model: str,
    models: Models,
    args: argparse.Namespace,
    label: str,
    clients: int | None = None,
    seconds: float | None = None,
    headers: dict[str, str] | None = None,
) -> LoadRun:
    """One run of models_load.py (a process of its own) against `model`'s infer route: warm-up on
    the same connections, then the timed phase; mean batch rows from /metrics when Parity."""
    clients = clients or args.clients
    seconds = seconds or args.duration
    print(f"  {label}: {clients} client(s), {seconds:g} s ...", end=" ", flush=True)
    results = WORK / "results"
    results.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^a-z0-9_]+", "-", label.lower())
    config_path, result_path = results / f"{stem}.json", results / f"{stem}-result.json"
    result_path.unlink(missing_ok=True)
    config = {
        "host": "127.0.0.1",
        "port": server.port,
        "path": f"/v2/models/{model}/infer",
        "bodies": [infer_body(row) for row in models.rows],
        "clients": clients,
        "seconds": seconds,
        "warmup": args.warmup,
        "max_warmup": MAX_WARMUP_S,
        "metrics_path": "/metrics" if label.startswith("parity") and not headers else None,
        "headers": headers or {},
    }
    config_path.write_text(json.dumps(config))
    command = [str(PARITY_PYTHON), str(LOAD), str(config_path), str(result_path)]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=MAX_WARMUP_S + seconds + 180,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchFailure(f"the load generator did not finish against {label}") from None
    if done.returncode != 0 or not result_path.exists():
        raise BenchFailure(f"the load generator failed against {label}:\n{done.stderr[-2000:]}")
    out = json.loads(result_path.read_text())
    run = LoadRun(
        label,
        clients,
        out["rps"],
        out["p50_ms"],
        out["p99_ms"],
        out["max_ms"],
        out["ok"],
        out["errors"],
        out["error_samples"],
        out["ramp_s"],
        out["silent_at_start"],
        answered=out.get("answered", 0),
    )
    before, after = (
        batch_rows(out["metrics_before"], model),
        batch_rows(out["metrics_after"], model),
    )
    if before is not None and after is not None and after[1] > before[1]:
        run.batch_rows = (after[0] - before[0]) / (after[1] - before[1])
    log(run.line())
    for sample in run.samples:
        log(f"      error: {sample}")
    return run


def batch_rows(text: str | None, model: str) -> tuple[float, float] | None:
    """(sum, count) of parity_model_batch_rows for `model` in a /metrics page, or None."""
    if not text:
        return None
    found: dict[str, float] = {}
    for part in ("sum", "count"):
        pattern = rf'^parity_model_batch_rows_{part}\{{[^}}]*model="{model}"[^}}]*\}} (\S+)$'
        match = re.search(pattern, text, re.MULTILINE)
        if match is None:
            return None
        found[part] = float(match.group(1))
    return found["sum"], found["count"]


# --- the parts ----------------------------------------------------------------------------------


def parity_parts(
    args: argparse.Namespace, models: Models, repo: Path, inproc: InProcess
) -> Results:
    port = free_port()
    command: list[str | Path] = [PARITY_CLI, "serve-models", "--repo", repo, "--port", str(port)]
    for name in ("lr", "lr_off", "rf_on", "rf_off"):
        command += ["--model", name]
    results = Results(inproc)
    with serving(
        "parity", command, port, ["/v2/health/ready"], WORK / "logs" / "parity-serve.log"
    ) as server:
        for model, labels in (("lr", models.lr_labels), ("lr_off", models.lr_labels)):
            check_answers(server, model, models, labels)
        for model in ("rf_on", "rf_off"):
            check_answers(server, model, models, models.rf_labels)
        log(f"1. server overhead: 1 sequential keep-alive client; {load_average()}")
        for model in ("lr", "lr_off"):
            label = f"parity {model} sequential"
            results.sequential[model] = drive(
                server, model, models, args, label, 1, args.sequential
            )
        log(f"2. adaptive batching: {args.clients} clients; {load_average()}")
        for model in ("rf_off", "rf_on"):
            results.batching[model] = drive(server, model, models, args, f"parity {model}")
        log(f"3. against MLServer: {args.clients} clients, lr; {load_average()}")
        for model in ("lr", "lr_off"):
            results.versus[f"parity {model}"] = drive(
                server, model, models, args, f"parity {model}"
            )
    return results


def auth_part(
    args: argparse.Namespace, models: Models, repo: Path
) -> list[auth_compare.Comparison]:
    """Part 4: `lr` with auth off and on (see the module docstring)."""
    twin = auth_compare.auth_twin(repo, WORK / "repo-auth")
    token = auth_compare.create_token(twin, "models:predict:lr")
    bearer = {"Authorization": f"Bearer {token}"}
    ports = {"off": free_port(), "on": free_port()}
    roots = {"off": repo, "on": twin}
    base: list[str | Path] = [PARITY_CLI, "serve-models", "--repo"]
    commands = {
        mode: [*base, roots[mode], "--model", "lr", "--port", str(ports[mode])] for mode in ports
    }
    shapes = [("lr, 1 sequential client", 1, args.sequential), ("lr", args.clients, args.duration)]
    comparisons = [auth_compare.Comparison(f"{label}, {n} client(s)") for label, n, _ in shapes]
    log(
        f"4. auth on against off: {args.auth_rounds} round(s) per mode, a models:predict:lr "
        f"token; {load_average()}"
    )
    with contextlib.ExitStack() as stack:
        servers = {
            mode: stack.enter_context(
                serving(
                    f"parity auth {mode}",
                    commands[mode],
                    ports[mode],
                    ["/v2/health/ready"],
                    WORK / "logs" / f"parity-serve-auth-{mode}.log",
                )
            )
            for mode in ports
        }
        heads = {"off": None, "on": bearer}
        for mode, server in servers.items():
            check_answers(server, "lr", models, models.lr_labels, heads[mode])
        for mode in auth_compare.modes(args.auth_rounds):
            server = servers[mode]
            for comparison, (label, clients, seconds) in zip(comparisons, shapes, strict=True):
                before = proc_cpu.tree_cpu(server.process.pid)
                run = drive(
                    server,
                    "lr",
                    models,
                    args,
                    f"auth {mode} {label}",
                    clients,
                    seconds,
                    heads[mode],
                )
                cpu = proc_cpu.tree_cpu(server.process.pid) - before
                errors = sum(run.errors.values())
                # the CPU window holds the warm-up too: per answer, warm-up included
                phase = auth_compare.Phase(run.answered, cpu, run.rps, run.p50, run.p99, errors)
                comparison.add(mode, phase)
    return comparisons


def mlserver_part(args: argparse.Namespace, models: Models, results: Results) -> list[str]:
    """MLServer's configurations under the same load; failures to run it are returned as text."""
    import joblib
    import sklearn

    try:
        results.mlserver_version = mls.ensure_mlserver(sklearn.__version__, WORK / "logs")
    except mls.MLServerUnavailable as error:
        results.mlserver_note = f"MLServer not measured: {error}"
        log("  " + results.mlserver_note)
        return [results.mlserver_note]
    model_file = WORK / "mlserver" / "lr.joblib"
    model_file.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(models.lr, model_file)
    failures = []
    for config in mls.CONFIGS:
        log(f"  {config.label}: {config.note}")
        ports = {"http": free_port(), "grpc": free_port(), "metrics": free_port()}
        stem = config.label.replace(" ", "-")
        root = mls.write_repository(WORK / "mlserver" / stem, config, "lr", model_file, ports)
        try:
            with serving(
                config.label,
                mls.command(root),
                ports["http"],
                ["/v2/health/ready", "/v2/models/lr/ready"],
                WORK / "logs" / f"{stem}.log",
                env=mls.environment(),
            ) as server:
                check_answers(server, "lr", models, models.lr_labels)
                results.versus[config.label] = drive(server, "lr", models, args, config.label)
        except BenchFailure as error:
            failures.append(f"{config.label}: {error}")
            results.mlserver_note += f"{config.label} failed to run (see the log); "
            log(f"  {config.label} FAILED: {error}")
    return failures


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=tuple(SIZES), default="full")
    parser.add_argument("--duration", type=float, help="seconds of each concurrent load")
    parser.add_argument("--clients", type=int, default=64, help="concurrent connections")
    parser.add_argument("--rf-trees", type=int, default=50, help="trees of the random forest")
    parser.add_argument(
        "--max-latency-ms", type=float, default=5.0, help="rf_on's max_latency_ms (batching on)"
    )
    parser.add_argument("--no-mlserver", action="store_true", help="skip MLServer")
    parser.add_argument("--no-auth", action="store_true", help="skip auth on against off")
    parser.add_argument("--auth-rounds", type=int, help="rounds of auth off and on (part 4)")
    args = parser.parse_args(argv)
    size = SIZES[args.size]
    if args.duration is None:
        args.duration = size["seconds"]
    args.sequential = min(size["sequential"], args.duration)
    args.warmup = size["warmup"]
    if args.auth_rounds is None:
        args.auth_rounds = int(size["auth_rounds"])
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    log(
        f"bench_models: size {args.size}; {args.duration:g} s per load, {args.clients} clients; "
        f"{os.cpu_count()} CPUs shared by the server under test and the client "
        f"(models_load.py, one process, raw HTTP/1.1 keep-alive on uvloop); {load_average()}"
    )
    failures: list[str] = []
    lines: list[str] = []
    auth: list[auth_compare.Comparison] = []
    try:
        models = train(args.rf_trees)
        repo = WORK / "repo"
        write_repo(repo, args.max_latency_ms)
        loaded = register(repo, models)
        log("in-process predict timings ...")
        inproc = time_in_process(loaded, models, SIZES[args.size])
        results = parity_parts(args, models, repo, inproc)
        auth = [] if args.no_auth else auth_part(args, models, repo)
        if args.no_mlserver:
            results.mlserver_note = "skipped (--no-mlserver)"
        else:
            failures += mlserver_part(args, models, results)
        lines = report(results, args)
        if auth:
            lines += ["", "auth on against off (part 4, issue 17)"]
            for comparison in auth:
                lines += comparison.lines()
            lines += ["", "target (issue 17):", *("  " + c.target() for c in auth)]
    except BenchFailure as error:
        failures.append(str(error))
    for line in lines:
        print(line)
    print(f"\ntotal {time.perf_counter() - started:.0f} s; {load_average()}")
    if failures:
        print("\nFAILED TO RUN:\n" + "\n".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
