"""The web UI's page data (issue 18): every JSON endpoint behind a page, timed on the fraud example
at 100,000 accounts, in process and over a real uvicorn server, against the 200 ms target.

    .venv/bin/python benchmarks/bench_ui.py [--accounts 100000] [--requests 100] [--rebuild]
        [--no-http] [--no-background]

The world (cached under benchmarks/.work/ui/<accounts>/, rebuilt with --rebuild; each stage's
time printed when built): the closed loop at --accounts is far too slow (scaffold 26 s, training
set 39 s, training 147 s, then over 4 minutes without reaching the first simulated week), so a
cheaper world that still fills every page: the UI tests' world (tests/ui/world.py: the fraud
example at 1,000 accounts, the closed loop's weekly drift runs, delayed-label performance,
alerts, retrain decisions, a retrain rolled out and promoted, a rollback), then the example's
data regenerated at --accounts up to the world's clock, the batch views materialized online, a
training set over the new data (about 3.7 million rows at 100,000 accounts) and its profiles.
Then, so their pages hold a result, a duplicate scan and a consistency replay run in the
background (their POSTs; not timed here: bench_ui_duplicates.py times the scan).

Every GET route of ui/routes.py under /ui/api, with its path filled from the world, is asked
--requests times (after one warm-up) through the ASGI app in process (starlette's TestClient)
and over HTTP from a uvicorn process (`--factory bench_ui:server_app`, one worker, keep-alive
client). A route that answers the framework's 404 is "not built". p50/p99 against 200 ms; the
practical limit is /ui/api/health measured the same way (the app and transport alone).
Exits 0 even when the target is missed; non-zero only when something failed to run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
WORK = BENCH_DIR / ".work" / "ui"
TARGET_MS = 200.0
API = "/ui/api"
BATCH_VIEWS = ("account_profile", "device_profile", "account_txn_stats")  # fraud_model_v1's


def log(text: str = "") -> None:
    print(text, flush=True)


def load_average() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- the world ---------------------------------------------------------------------------------


def world_at(accounts: int, rebuild: bool) -> tuple[Path, datetime]:
    """The repo folder of the world at `accounts` and the time its clock stands at."""
    folder = WORK / str(accounts)
    marker = folder / "world.json"
    if marker.exists() and not rebuild:
        found = json.loads(marker.read_text())
        shown = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in found["stages"].items())
        log(f"world: {folder / 'fraud_detection'} (built before: {shown})")
        return folder / "fraud_detection", datetime.fromisoformat(found["now"])
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    stages: dict[str, float] = {}
    now = build(folder / "fraud_detection", accounts, stages)
    marker.write_text(json.dumps({"stages": stages, "now": now.isoformat()}))
    log(f"world built: {sum(stages.values()):.0f} s; its clock stands at {now.isoformat()}")
    return folder / "fraud_detection", now


def build(repo: Path, accounts: int, stages: dict[str, float]) -> datetime:
    """The cheaper world of the module's docstring; `stages`: seconds per stage."""
    sys.path.insert(0, str(ROOT))
    import pandas as pd
    import pyarrow.parquet as pq
    from tests.ui.world import build_world

    from parity.examples.fraud import scaffold

    def stage(name: str, began: float) -> float:
        stages[name] = time.perf_counter() - began
        log(f"  {name}: {stages[name]:.1f} s")
        return time.perf_counter()

    log("building the world:")
    began = time.perf_counter()
    world = build_world(repo)
    now = world.clock.now()
    world.store.close()
    began = stage("closed loop at 1,000 accounts (tests/ui/world.py)", began)
    if accounts == 1000:
        return now
    scaffold.scaffold(repo, accounts=accounts, days=60, end=now, data_only=True)
    began = stage(f"data regenerated at {accounts:,} accounts", began)
    store = open_store(repo, now)
    store.materialize(now - timedelta(days=7), now, views=list(BATCH_VIEWS))
    began = stage("materialized online (7 days)", began)
    labels = pq.read_table(repo / "data" / "chargebacks.parquet").to_pandas()
    first = labels[labels["event_timestamp"] < pd.Timestamp(now) - timedelta(days=42)]
    entities = first[["transaction_id", "account_id", "device_id", "event_timestamp"]]
    entities = entities.assign(amount=first["amount"], is_fraud=first["is_fraud"])
    name = f"fraud_train_{accounts // 1000}k"
    path = repo / "training" / f"{name}.parquet"
    store.datasets.create(name, entities, "fraud_model_v1", path)
    began = stage(f"training set {name} ({len(entities):,} rows)", began)
    store.monitoring.profile_dataset(name, models=False)
    stage("its profiles", began)
    store.close()
    return now


def open_store(repo: Path, now: datetime) -> Any:
    from parity import FeatureStore

    return FeatureStore(repo, clock=lambda: now)


def server_app() -> Any:
    """uvicorn's factory: the UI over BENCH_UI_REPO on a clock standing at BENCH_UI_NOW."""
    from parity.ui.app import create_ui_app

    now = datetime.fromisoformat(os.environ["BENCH_UI_NOW"])
    return create_ui_app(open_store(Path(os.environ["BENCH_UI_REPO"]), now))


# --- the endpoints -----------------------------------------------------------------------------


def endpoints(store: Any) -> list[str]:
    """Every GET route of the UI's API with its path filled from the world (some twice: with and
    without the query a page sends)."""
    from parity.ui.routes import UI_ROUTES

    view = store.get_feature_view("account_txn_stats")
    _, version = store.registry.current()
    values = {
        "name": "account",
        "view": view.name,
        "feature": view.features[0].name,
        "service": "fraud_model_v1",
        "model": "fraud",
        "version": str(version),
    }
    paths = []
    for rule in UI_ROUTES:
        if rule.method != "GET" or not rule.path.startswith(API + "/"):
            continue
        if rule.path in (f"{API}/openapi.json",):
            continue
        path = rule.path
        if path == f"{API}/entities/{{name}}":
            path = path.replace("{name}", "account")
        elif path == f"{API}/views/{{name}}":
            path = path.replace("{name}", view.name)
        elif path == f"{API}/services/{{name}}":
            path = path.replace("{name}", "fraud_model_v1")
        for key, value in values.items():
            path = path.replace("{" + key + "}", value)
        paths.append(path)
    extra = [
        f"{API}/search?q=txn",
        f"{API}/lineage?node=view:{view.name}",
        f"{API}/rollouts?active=true",
        f"{API}/monitoring/fraud/drift?column=amount",
    ]
    return paths + extra


def background(client: Any, seconds: float) -> None:
    """Start a duplicate scan and a consistency replay and wait (up to `seconds` each) so their
    GETs answer a result."""
    for path in (f"{API}/duplicates", f"{API}/consistency/fraud_model_v1"):
        started = client.post(path, json={})
        if started.status_code == 404 and started.json()["error"]["code"] == "not_found":
            log(f"  {path}: not built")
            continue
        if started.status_code >= 400:
            log(f"  {path}: POST answered {started.status_code} {started.text[:200]}")
            continue
        begun = time.perf_counter()
        state = started.json().get("state")
        while state == "running" and time.perf_counter() - begun < seconds:
            time.sleep(0.5)
            state = client.get(path).json().get("state")
        log(f"  {path}: {state} after {time.perf_counter() - begun:.1f} s")


class Answer:
    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code, self.content = status_code, content

    def json(self) -> Any:
        return json.loads(self.content)


class Http:
    """One keep-alive HTTP/1.1 connection (the standard library's: no client library's own
    overhead in the numbers), with the get/post of a TestClient."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def request(self, method: str, path: str, body: Any = None) -> Answer:
        data = None if body is None else json.dumps(body).encode()
        headers = {} if data is None else {"content-type": "application/json"}
        self.connection.request(method, path, data, headers)
        response = self.connection.getresponse()
        return Answer(response.status, response.read())

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def post(self, path: str, json: Any = None) -> Answer:
        return self.request("POST", path, json)


# --- timing ------------------------------------------------------------------------------------


@dataclass
class Timed:
    status: int
    code: str | None
    bytes: int
    ms: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.ms)

    @property
    def p99(self) -> float:
        ordered = sorted(self.ms)
        return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]

    @property
    def built(self) -> bool:
        return not (self.status == 404 and self.code == "not_found")


def timed(get: Callable[[str], Any], path: str, requests: int) -> Timed:
    first = get(path)
    code = None
    if first.status_code >= 400:
        try:
            code = first.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = "?"
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        response = get(path)
        samples.append((time.perf_counter() - started) * 1000)
        if response.status_code != first.status_code:
            raise RuntimeError(f"{path}: {first.status_code} then {response.status_code}")
    return Timed(first.status_code, code, len(first.content), samples)


@contextmanager
def uvicorn_server(repo: Path, now: datetime) -> Iterator[int]:
    sys.path.insert(0, str(BENCH_DIR))
    from private_servers import free_port, wait_until

    port = free_port()
    env = {**os.environ, "BENCH_UI_REPO": str(repo), "BENCH_UI_NOW": now.isoformat()}
    command = [sys.executable, "-m", "uvicorn", "--factory", "bench_ui:server_app"]
    command += ["--app-dir", str(BENCH_DIR), "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(command, env=env)

    def up() -> bool:
        try:
            return Http(port).get(f"{API}/health").status_code == 200
        except OSError:
            return False

    try:
        wait_until(up, 60)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def measure_all(
    get: Callable[[str], Any], paths: list[str], requests: int, label: str
) -> dict[str, Timed]:
    found = {}
    for path in dict.fromkeys([f"{API}/health", *paths]):
        found[path] = timed(get, path, requests)
        shown = found[path]
        log(f"  {label} {path}: {shown.status} p50 {shown.p50:.1f} ms p99 {shown.p99:.1f} ms")
    return found


# --- the report --------------------------------------------------------------------------------


def report(local: dict[str, Timed], http: dict[str, Timed] | None) -> int:
    """Print the table; returns how many built endpoints missed the target."""
    head = f"{'endpoint':<52} {'status':>6} {'KiB':>7} {'p50 ms':>8} {'p99 ms':>8} {'p99/200':>7}"
    if http is not None:
        head += f" {'HTTP p50':>9} {'HTTP p99':>9} {'p99/200':>7}"
    log(head + "  verdict")
    log("-" * len(head) + "---------")
    missed = 0
    for path, one in local.items():
        if not one.built:
            log(f"{path:<52} {'':>6} {'':>7} {'not built':>8}")
            continue
        line = f"{path:<52} {one.status:>6} {one.bytes / 1024:7.1f} {one.p50:8.1f} {one.p99:8.1f}"
        line += f" {one.p99 / TARGET_MS:7.2f}"
        worst = one.p99
        if http is not None:
            other = http[path]
            line += f" {other.p50:9.1f} {other.p99:9.1f} {other.p99 / TARGET_MS:7.2f}"
            worst = max(worst, other.p99)
        met = worst < TARGET_MS
        missed += 0 if met else 1
        log(f"{line}  {'met' if met else 'MISSED'}")
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--no-http", action="store_true", help="in process only")
    parser.add_argument("--no-background", action="store_true", help="skip the scan/replay")
    args = parser.parse_args()
    log(f"bench_ui: {args.accounts:,} accounts, {args.requests} requests per endpoint")
    log(f"start: {load_average()} ({os.cpu_count()} CPUs)")
    repo, now = world_at(args.accounts, args.rebuild)
    from starlette.testclient import TestClient

    from parity.ui.app import create_ui_app

    store = open_store(repo, now)
    paths = endpoints(store)
    with TestClient(create_ui_app(store)) as client:
        if not args.no_background:
            log("background work, so its pages hold a result:")
            background(client, 300)
        log("in process (ASGI, TestClient):")
        local = measure_all(client.get, paths, args.requests, "asgi")
    http: dict[str, Timed] | None = None
    if not args.no_http:
        with uvicorn_server(repo, now) as port:
            remote = Http(port)
            if not args.no_background:
                log("background work in the server:")
                background(remote, 300)
            log(f"over HTTP (uvicorn on port {port}, one worker, one keep-alive connection):")
            http = measure_all(remote.get, paths, args.requests, "http")
            remote.connection.close()
    store.close()
    log()
    log(
        f"UI page data at {args.accounts:,} accounts, {args.requests} requests each; target p99 "
        f"< {TARGET_MS:.0f} ms (in process and over HTTP)"
    )
    missed = report(local, http)
    built = sum(1 for path, one in local.items() if one.built and path != f"{API}/health")
    limit = local[f"{API}/health"]
    practical = f"practical limit (/ui/api/health): in process p50 {limit.p50:.2f} ms"
    if http is not None:
        practical += f", over HTTP p50 {http[f'{API}/health'].p50:.2f} ms"
    log(practical)
    log(f"{built} endpoints built, {missed} over the target; end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
