"""Defects found by replaying training jobs as a user would (issue 15 QA): what a train function
returns that cannot be served (a model failing on its own sample input, a sample without
columns, the label's time as an input, importance naming no input, a builtin object as the
model), the reference profile a job's version got, and a looping runner across a database
outage. Each test failed before its fix."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from parity import FeatureStore, LabelSource, TrainingJob
from parity.cli.main import app
from parity.errors import InvalidDefinition, InvalidTime
from tests.jobs.support import LABEL_DELAY, NOW, cleanup, open_store, write_tiny_repo

# More train functions for the tiny repo (appended to its training.py, which defines `fit`,
# `TrainedModel` and the `job` helper).
EXTRA = """

def train_short_sample(frame, context):  # fitted on spend and amount, sampled on spend only
    model, inputs = fit(frame)
    return TrainedModel(model=model, sample_input=inputs[["spend"]].head(3))


def train_no_columns(frame, context):
    model, inputs = fit(frame)
    return TrainedModel(model=model, sample_input=inputs.iloc[:, :0].head(3))


def train_label_time(frame, context):
    from sklearn.linear_model import LinearRegression

    inputs = frame[["spend"]].assign(label_timestamp=frame["label_timestamp"].astype("int64"))
    model = LinearRegression().fit(inputs.astype("float64"), frame["target"])
    return TrainedModel(model=model, sample_input=inputs.astype("float64").head(3))


def train_misspelt_importance(frame, context):
    model, inputs = fit(frame)
    return TrainedModel(
        model=model, sample_input=inputs.head(3), importance={"spend": 0.5, "amnt": 0.5}
    )


def train_lambda(frame, context):
    return (lambda rows: rows), {}


def train_params_list(frame, context):
    model, inputs = fit(frame)
    return TrainedModel(model=model, sample_input=inputs.head(3), params=[("alpha", 1.0)])


def train_locked(frame, context):
    import threading

    model, inputs = fit(frame)
    model.lock = threading.Lock()  # cannot be pickled: TypeError, not PicklingError
    return TrainedModel(model=model, sample_input=inputs.head(3))


short_sample_job = job("short_sample_job", train_short_sample)
no_columns_job = job("no_columns_job", train_no_columns)
label_time_job = job("label_time_job", train_label_time)
misspelt_importance_job = job("misspelt_importance_job", train_misspelt_importance)
lambda_job = job("lambda_job", train_lambda)
params_list_job = job("params_list_job", train_params_list)
locked_job = job("locked_job", train_locked)
"""


def qa_repo(root: Path, project: str, registry: str = "") -> Path:
    write_tiny_repo(root, project, registry)
    with (root / "parity.yaml").open("a") as handle:  # the output profile loads the pickle
        handle.write("models:\n  trusted: true\n")
    with (root / "training.py").open("a") as handle:
        handle.write(textwrap.dedent(EXTRA))
    with FeatureStore(root) as store:
        store.apply(message="qa jobs")
    return root


@pytest.fixture
def repo(tmp_path: Path, project_name: str) -> Path:
    return qa_repo(tmp_path / "repo", project_name)


def run_once(root: Path, name: str) -> tuple[str, str, bool, list[str]]:
    """Submit and run job `name` at NOW: its status, error, whether a retry was queued, and
    the models registered."""
    with open_store(root) as store:
        store.jobs.submit(name)
        [done] = store.jobs.run_pending(now=lambda: NOW)
        retried = bool(store.jobs.list(status="queued"))
        return done.status, done.error or "", retried, store.models.models()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("short_sample_job", "or failed on its own sample input (ValueError"),
        ("no_columns_job", "gave a sample_input with no columns"),
        ("label_time_job", "takes the label's time 'label_timestamp'"),
        ("misspelt_importance_job", "gave importance['amnt'], which is not one of the model's"),
        ("lambda_job", "[unknown_flavor] cannot tell how to save a function"),
        ("params_list_job", "gave TrainedModel.params of type list: give a Mapping"),
        ("locked_job", "could not be saved, or failed on its own sample input (TypeError"),
    ],
)
def test_a_model_that_cannot_be_served_fails_unretried_and_registers_nothing(
    repo: Path, name: str, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)  # as `parity jobs run` is run, in the repo
    status, error, retried, models = run_once(repo, name)
    assert status == "failed"
    assert reason in error, error
    assert "defined in the repo" not in error  # a builtin is not a repo class
    assert not retried  # the same function would fail the same way
    assert models == []


def test_the_result_says_whether_the_reference_profile_was_stored(repo: Path) -> None:
    status, error, _, _ = run_once(repo, "ok_job")
    assert status == "succeeded", error
    with open_store(repo) as store:
        [done] = store.jobs.list(status="succeeded")
        expected = {s.subject: "ok" for s in store.monitoring.profiles(done.result["dataset"])}
    assert set(expected) == {"features", "model:m/1:outputs", "model:m/1:inputs"}
    assert done.result["reference_profile"] == expected
    # a model that fails on some rows of its training set (NaN amounts after the first rows,
    # which the sample input does not hold) gets no output profile: the result says so
    labels = repo / "data" / "labels.parquet"
    table = pq.read_table(labels).to_pandas()
    table.loc[table.index[10:], "amount"] = float("nan")
    table.to_parquet(labels)
    ran = CliRunner().invoke(app, ["jobs", "run", "ok_job", "--repo", str(repo)])
    output = ran.output
    assert ran.exit_code == 0, output
    assert "reference profile missing for model:m/2:outputs" in output
    with open_store(repo) as store:
        second = store.jobs.list(status="succeeded")[0]
    profile = second.result["reference_profile"]
    assert profile["features"] == "ok"
    assert "NaN" in profile["model:m/2:outputs"]
    assert "reference profile model:m/2:outputs" in second.logs


class Proxy:
    """A TCP proxy to PostgreSQL that can be cut (every connection closed) and restored: a
    database outage seen from the runner, with the real server untouched."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._sockets: list[socket.socket] = []
        self._server: socket.socket | None = None

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def cut(self) -> None:
        for sock in [self._server, *self._sockets]:
            if sock is not None:
                _close(sock)
        self._server, self._sockets = None, []

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
                upstream = socket.create_connection(self.target)
            except OSError:
                return
            self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@pytest.mark.postgres
def test_a_looping_runner_survives_a_database_outage(
    tmp_path: Path, project_name: str, postgres_url: str
) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.start()
    text = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    root = qa_repo(tmp_path / "repo", project_name, f"registry:\n  type: postgres\n  url: {text}\n")
    stop = threading.Event()
    crashed: list[BaseException] = []
    try:
        with open_store(root) as store:
            runner = store.jobs.runner(now=lambda: NOW)

            def loop() -> None:
                try:
                    runner.loop(until=stop.is_set)
                except BaseException as error:  # the defect: the loop ended on the outage
                    crashed.append(error)

            thread = threading.Thread(target=loop, daemon=True)
            thread.start()
            time.sleep(0.3)
            proxy.cut()  # the database is away for a few polls (poll_seconds is 0.05)
            time.sleep(0.5)
            proxy.start()
            with open_store(root) as other:
                queued = other.jobs.submit("ok_job")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and store.jobs.get(queued.id).active:
                time.sleep(0.05)
            stop.set()
            thread.join(30)
            assert crashed == []
            assert store.jobs.get(queued.id).status == "succeeded"
    finally:
        stop.set()
        if proxy._server is None:
            proxy.start()
        with FeatureStore(root) as store:
            cleanup(store)
        proxy.cut()


def test_ctrl_c_of_jobs_run_name_cancels_its_job(repo: Path) -> None:
    """Interrupted, `parity jobs run NAME` left its job running; stale a minute later, it was
    failed and retried by any runner: the fit the user stopped registered a version after all."""
    parity = Path(sys.executable).parent / "parity"
    command = [str(parity), "jobs", "run", "hang_job", "--repo", str(repo)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        with FeatureStore(repo) as store:
            deadline = time.monotonic() + 60
            while not store.jobs.list(status="running") and time.monotonic() < deadline:
                assert proc.poll() is None
                time.sleep(0.05)
            [running] = store.jobs.list(status="running")
            proc.send_signal(signal.SIGINT)
            output = proc.communicate(timeout=60)[0].decode()
            assert proc.returncode == 130, output
            assert f"Interrupted: job {running.id} cancelled" in output
            assert "Traceback" not in output
            assert store.jobs.get(running.id).status == "cancelled"
            assert store.jobs.active() == []  # nothing left to go stale and be retried
            assert store.models.models() == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize("bad", [NOW.replace(tzinfo=None), "2026-03-01", None])
def test_a_runner_clock_giving_no_aware_time_is_refused_and_runs_nothing(
    repo: Path, bad: object
) -> None:
    """`submit(now=naive)` was refused, but a runner's naive clock was read as UTC and a text
    one failed with AttributeError mid-claim."""
    with open_store(repo) as store:
        queued = store.jobs.submit("ok_job")
        with pytest.raises(InvalidTime, match="the jobs clock gave"):
            store.jobs.run_pending(now=lambda: bad)  # type: ignore[arg-type, return-value]
        assert store.jobs.get(queued.id).status == "queued"
        assert store.models.models() == []


def test_a_training_set_file_left_behind_fails_the_job_naming_the_file(repo: Path) -> None:
    """A registry recreated next to an old data/training_sets/ (job ids start at 1 again): the
    job failed blaming 'the label source's rows' for a file collision."""
    stale = repo / "data" / "training_sets" / "ok_job_1.parquet"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an older registry's training set")
    status, error, retried, models = run_once(repo, "ok_job")
    assert status == "failed" and not retried and models == []
    assert "training set 'ok_job_1' could not be built on feature service 'svc'" in error
    assert f"[dataset_exists] {stale} already exists" in error
    assert stale.read_bytes() == b"an older registry's training set"  # never overwritten


def test_a_time_column_of_numbers_fails_once_not_retried(repo: Path) -> None:
    """Epoch seconds where times are declared: the same values fail the same way, yet the
    failure was retried as if the file were still being written."""
    labels = repo / "data" / "labels.parquet"
    table = pq.read_table(labels).to_pandas()
    table["event_timestamp"] = table["event_timestamp"].astype("int64") // 10**9
    table.to_parquet(labels)
    status, error, retried, models = run_once(repo, "ok_job")
    assert status == "failed" and models == []
    assert error.startswith("[label_source_invalid] label source path 'data/labels.parquet'")
    assert "BIGINT -> TIMESTAMP WITH TIME ZONE" in error
    assert not retried


def _train(frame: object, context: object) -> None:
    return None


@pytest.mark.parametrize("field", ["label_delay", "lookback", "timeout", "retry_delay"])
def test_spans_beyond_a_century_are_refused_at_definition(field: str) -> None:
    """retry_delay=timedelta(days=3_000_000) made `now + delay` overflow inside the runner's
    failure transaction: the pass crashed, the job stayed running, and once stale every later
    sweep crashed on it, so the project's runner ran nothing again."""
    labels = LabelSource(
        path="data/labels.parquet", label="y", join_keys=("k",), timestamp_field="t"
    )
    fields: dict[str, Any] = {
        "name": "far",
        "model": "m",
        "feature_service": "svc",
        "labels": labels,
        "train": _train,
    }
    TrainingJob(**fields, **{field: timedelta(days=36_500)})  # a century is allowed
    with pytest.raises(InvalidDefinition, match=f"{field} must be at most 36500 days"):
        TrainingJob(**fields, **{field: timedelta(days=3_000_000)})


def test_the_result_records_the_label_window_that_rebuilds_the_training_set(repo: Path) -> None:
    """The label cutoff was only in a log line, which a chatty fit pushes out of the 64 KiB the
    logs keep: a version's training set could not be told apart from the label window."""
    status, error, _, _ = run_once(repo, "ok_job")
    assert status == "succeeded", error
    with open_store(repo) as store:
        [done] = store.jobs.list(status="succeeded")
        window = done.result["labels_as_of"]
        assert window == {
            "now": NOW.isoformat(),
            "cutoff": (NOW - LABEL_DELAY).isoformat(),
            "since": None,
        }
        # an independent rebuild from the raw labels with that window gives the same rows
        raw = pq.read_table(repo / "data" / "labels.parquet").to_pandas()
        cutoff, now = pd.Timestamp(window["cutoff"]), pd.Timestamp(window["now"])
        kept = raw[(raw.event_timestamp <= cutoff) & (raw.label_timestamp <= now)]
        built = pd.read_parquet(store.datasets.get(done.result["dataset"]).path)
        assert sorted(built.event_timestamp) == sorted(kept.event_timestamp)
        assert (built.label_timestamp <= now).all() and len(built) == len(kept) > 0


def test_sigterm_stops_a_looping_runner_taking_new_jobs(repo: Path) -> None:
    """SIGTERM was noticed only between passes, and a pass drains the queue: with more due jobs
    than slots, a stopped runner went on taking every one of them."""
    with open_store(repo) as store:
        ids = [store.jobs.submit("slow_job").id for _ in range(4)]
    env = {**os.environ, "PARITY_TEST_SLEEP": "2.0"}
    command = [str(Path(sys.executable).parent / "parity"), "jobs", "run", "--loop"]
    proc = subprocess.Popen(
        [*command, "--repo", str(repo)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        with FeatureStore(repo) as store:
            deadline = time.monotonic() + 60
            while len(store.jobs.list(status="running")) < 2 and time.monotonic() < deadline:
                assert proc.poll() is None
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            output = proc.communicate(timeout=60)[0].decode()
            assert proc.returncode == 0, output
            statuses = [store.jobs.get(job_id).status for job_id in ids]
        assert statuses == ["succeeded", "succeeded", "queued", "queued"], output
        for job_id in ids[:2]:  # the loop says what it ran (it printed nothing per job)
            assert f"Job {job_id} (slow_job): succeeded" in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
