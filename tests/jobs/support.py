"""A tiny repo for the job tests: one account feature view, labels with a label time, and training
jobs whose functions train a small linear model, raise, return nothing, take an unknown input,
or sleep (for the cap, timeout, cancel and SIGKILL tests). On SQLite or PostgreSQL."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from parity import FeatureStore
from parity.jobs.store import JobStore, jobs_table

NOW = datetime(2026, 3, 1, tzinfo=UTC)  # the simulated "now" of the tests
DAYS = 20  # label rows: one per account per day over the 20 days before NOW
ACCOUNTS = 6
LABEL_DELAY = timedelta(days=5)

REPO = {
    "entities.py": """
        from parity import Entity
        account = Entity(name="account", join_keys=["account_id"])
    """,
    "views.py": """
        from datetime import timedelta
        from entities import account
        from parity import FeatureService, FeatureView, Field, FileSource, Float64

        account_stats = FeatureView(
            name="account_stats",
            entities=[account],
            schema=[Field(name="spend", dtype=Float64)],
            source=FileSource(path="data/account_stats.parquet"),
            ttl=timedelta(days=30),
        )
        svc = FeatureService(name="svc", features=[account_stats[["spend"]]])
    """,
    "training.py": """
        import os
        import time
        from datetime import timedelta

        from parity import LabelSource, TrainedModel, TrainingJob

        LABELS = LabelSource(
            path="data/labels.parquet",
            label="target",
            join_keys=("account_id",),
            timestamp_field="event_timestamp",
            label_timestamp_field="label_timestamp",
        )


        def fit(frame):
            from sklearn.linear_model import LinearRegression

            inputs = frame[["spend", "amount"]].astype("float64").fillna(0.0)
            return LinearRegression().fit(inputs, frame["target"]), inputs


        def train_ok(frame, context):
            model, inputs = fit(frame)
            print(f"printed: {len(frame)} rows for {context.dataset}")
            context.log.info("fitted on %d rows up to %s", len(frame), context.cutoff)
            return TrainedModel(
                model=model,
                metrics={"rows": float(len(frame))},
                params={"kind": "linear"},
                importance={"spend": 0.7, "amount": 0.3},
                sample_input=inputs.head(3),
            )


        def train_raises(frame, context):
            raise RuntimeError("the fit diverged")


        def train_none(frame, context):
            return None


        def train_unknown_input(frame, context):
            model, inputs = fit(frame)
            return TrainedModel(model=model, sample_input=inputs.rename(columns={"spend": "zzz"}))


        def train_slow(frame, context):
            started = time.time()
            print(f"slow job {context.job_id} sleeping")
            time.sleep(float(os.environ.get("PARITY_TEST_SLEEP", "1.0")))
            model, inputs = fit(frame)
            return TrainedModel(
                model=model,
                metrics={"started": started, "ended": time.time()},
                sample_input=inputs.head(2),
            )


        def train_hang(frame, context):
            print("hanging", flush=True)
            deadline = time.time() + 120
            while time.time() < deadline and not context.cancelled():
                time.sleep(0.02)
            return fit(frame)[0], {}


        class Mean:
            def __init__(self, value):
                self.value = value

            def predict(self, frame):
                return [self.value] * len(frame)


        def train_local_class(frame, context):
            return Mean(0.5), {}


        def train_bad_importance(frame, context):
            model, inputs = fit(frame)
            return TrainedModel(model=model, importance={"spend": float("nan")})


        def train_flaky(frame, context):
            if context.attempt == 1:  # the first attempt hangs (its runner will be killed)
                return train_hang(frame, context)
            return train_ok(frame, context)


        def job(name, train, **options):
            fields = dict(
                name=name,
                model="m",
                feature_service="svc",
                labels=LABELS,
                label_delay=timedelta(days=5),
                train=train,
                retry_delay=timedelta(hours=1),
            )
            fields.update(options)
            return TrainingJob(**fields)


        ok_job = job("ok_job", train_ok)
        raises_job = job("raises_job", train_raises)
        none_job = job("none_job", train_none)
        unknown_input_job = job("unknown_input_job", train_unknown_input)
        slow_job = job("slow_job", train_slow)
        hang_job = job("hang_job", train_hang)
        hang_once_job = job("hang_once_job", train_hang, max_attempts=1)
        timeout_job = job("timeout_job", train_hang, timeout=timedelta(seconds=0.5))
        flaky_job = job("flaky_job", train_flaky, retry_delay=timedelta(0))
        local_class_job = job("local_class_job", train_local_class)
        bad_importance_job = job("bad_importance_job", train_bad_importance)
        wrong_keys_job = job(
            "wrong_keys_job",
            train_ok,
            labels=LabelSource(
                query=(
                    "SELECT account_id AS acct, event_timestamp, amount, target, label_timestamp "
                    "FROM 'data/labels.parquet'"
                ),
                label="target",
                join_keys=("acct",),
                timestamp_field="event_timestamp",
            ),
        )
        missing_column_job = job(
            "missing_column_job",
            train_ok,
            labels=LabelSource(
                path="data/labels.parquet",
                label="target",
                join_keys=("account_id",),
                timestamp_field="event_timestamp",
                label_timestamp_field="known_at",
            ),
        )
    """,
}
JOBS_CONFIG = (
    "jobs:\n  max_concurrent: 2\n  heartbeat_seconds: 0.1\n"
    "  stale_after_seconds: 1.0\n  poll_seconds: 0.05\n"
)


def label_rows() -> dict[str, list[object]]:
    """One row per account per day; the label is known 2 days after the event, except the last
    account's rows of the final 3 days before the cutoff, known only after NOW."""
    accounts: list[object] = []
    times: list[object] = []
    amounts: list[object] = []
    targets: list[object] = []
    known: list[object] = []
    for day in range(DAYS):
        for account in range(1, ACCOUNTS + 1):
            at = NOW - timedelta(days=DAYS - day, hours=account)
            accounts.append(account)
            times.append(at)
            amounts.append(float(10 * account + day))
            targets.append(float((account + day) % 2))
            late = account == ACCOUNTS and NOW - LABEL_DELAY - timedelta(days=3) < at
            known.append(NOW + timedelta(days=1) if late else at + timedelta(days=2))
    return {
        "account_id": accounts,
        "event_timestamp": times,
        "amount": amounts,
        "target": targets,
        "label_timestamp": known,
    }


def write_tiny_repo(root: Path, project: str, registry: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "parity.yaml").write_text(f"project: {project}\n{registry}{JOBS_CONFIG}")
    for name, text in REPO.items():
        (root / name).write_text(textwrap.dedent(text).lstrip())
    data = root / "data"
    data.mkdir(exist_ok=True)
    stats_times = [NOW - timedelta(days=d) for d in range(DAYS + 2, 0, -1)]
    pq.write_table(
        pa.table(
            {
                "account_id": [a for _ in stats_times for a in range(1, ACCOUNTS + 1)],
                "event_timestamp": pa.array(
                    [t for t in stats_times for _ in range(ACCOUNTS)], pa.timestamp("us", "UTC")
                ),
                "spend": [
                    float(a * 3 + i) for i, _ in enumerate(stats_times) for a in range(ACCOUNTS)
                ],
            }
        ),
        data / "account_stats.parquet",
    )
    rows = label_rows()
    table = pa.table(
        {
            "account_id": pa.array(rows["account_id"], pa.int64()),
            "event_timestamp": pa.array(rows["event_timestamp"], pa.timestamp("us", "UTC")),
            "amount": pa.array(rows["amount"], pa.float64()),
            "target": pa.array(rows["target"], pa.float64()),
            "label_timestamp": pa.array(rows["label_timestamp"], pa.timestamp("us", "UTC")),
        }
    )
    pq.write_table(table, data / "labels.parquet")
    return root


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def tiny_repo(
    tmp_path: Path, backend: str, project_name: str, request: pytest.FixtureRequest
) -> Iterator[Path]:
    registry = ""
    if backend == "postgres":
        url = request.getfixturevalue("postgres_url")
        registry = f"registry:\n  type: postgres\n  url: {url}\n"
    root = write_tiny_repo(tmp_path / "repo", project_name, registry)
    with FeatureStore(root) as store:
        store.apply(message="jobs test")
    yield root
    with FeatureStore(root) as store:
        cleanup(store)


def cleanup(store: FeatureStore) -> None:
    """Leave a shared PostgreSQL database as it was (this project's job rows)."""
    engine: sa.Engine = store.registry.store.engine  # type: ignore[attr-defined]
    JobStore(engine, store.project)
    with engine.begin() as conn:
        conn.execute(jobs_table.delete().where(jobs_table.c.project == store.project))


def open_store(root: Path, now: datetime = NOW) -> FeatureStore:
    return FeatureStore(root, clock=lambda: now)
