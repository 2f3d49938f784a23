"""The label gate's one-pass join of both arms (`monitoring.labels.join_arms`) against the
per-arm `labels.join` it replaced, and `check_gates`' label values against scikit-learn on a
frame joined by hand with pandas: a log with both arms (shadow and canary rows), rows of other
roles, versions and models, errors and unreadable scores, tied times, labels arriving at
different times (some after now, some relabelled), and predictions not yet matured."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from parity import FeatureStore, Gate, LabelSource
from parity.deploy.evidence import check_gates
from parity.monitoring import labels
from parity.monitoring.performance import Window
from tests.conftest import DRIVER_REPO, write_repo
from tests.deploy.test_gates_log import T0, rollout, row, state_of, write_log

DELAY = timedelta(hours=1)
NOW = T0 + timedelta(hours=4)  # predictions before T0 + 3 h have matured
MATURED = NOW - DELAY
THRESHOLD = 0.4  # the Monitor's decision_threshold
MONITOR = f'''
from datetime import timedelta

import numpy as np

from parity import LabelSource, Monitor


def caught_amount(labels, scores, rows):
    """Share of the fraud amount scored at or above 0.5."""
    amount = np.asarray(rows.column("amount").to_numpy(), dtype=float)
    fraud = amount[labels].sum()
    return float(amount[labels & (scores >= 0.5)].sum() / fraud) if fraud else None


fraud_monitor = Monitor(
    name="fraud_monitor",
    model="fraud",
    labels=LabelSource(
        path="data/labels.parquet",
        label="is_fraud",
        join_keys=("request_id",),
        label_timestamp_field="label_timestamp",
    ),
    label_delay=timedelta(hours=1),
    decision_threshold={THRESHOLD},
    metrics=[caught_amount],
)
'''


def predictions(rng: np.random.Generator) -> list[dict[str, Any]]:
    """500 requests from T0 - 20 min to T0 + 3 h 30 min (times from a coarse grid, so some tie),
    request ids whose text order is not their time order; each answered by the champion and by
    the candidate (shadow, or canary for every third), plus rows no arm holds."""
    n = 500
    grid = T0 - timedelta(minutes=20) + np.arange(230) * timedelta(minutes=1)
    at = sorted(grid[rng.integers(0, grid.size, n)])
    ids = [f"r-{i}" for i in rng.permutation(n)]
    truth = rng.random(n) < 0.35
    rows = []
    for i in range(n):
        champion = float(np.clip(truth[i] * 0.35 + rng.random() * 0.65, 0, 1))
        candidate = float(rng.random())
        role = "canary" if i % 3 == 0 else "shadow"
        rows.append(row(at[i], 1, "champion", score=champion, request_id=ids[i]))
        rows.append(row(at[i], 2, role, score=candidate, request_id=ids[i]))
        if i % 7 == 0:  # explicit version requests (role null), another shadow, another model
            rows.append(row(at[i], 2, None, score=float(truth[i]), request_id=ids[i]))
            rows.append(row(at[i], 3, "shadow", score=float(truth[i]), request_id=ids[i]))
            rows.append(row(at[i], 1, "champion", score=0.0, request_id=ids[i], model="other"))
    for i in range(0, n, 23):  # the candidate failed, or logged what is not a number
        rows.append(row(at[i], 2, "canary", status="error", prediction="null", request_id=ids[i]))
    for i, text in ((101, "NaN"), (152, '"high"'), (203, "Infinity"), (254, "null")):
        rows.append(row(at[i], 2, "shadow", prediction=text, request_id=ids[i]))
        rows.append(row(at[i], 1, "champion", prediction=text, request_id=ids[i]))
    return rows


def label_table(rng: np.random.Generator, ids: list[str]) -> pa.Table:
    """A label for most requests, known at different times (some only after NOW); some keys
    relabelled (the later label known by NOW wins), some labels null (not known yet)."""
    keys, values, known, amounts = [], [], [], []
    for i, key in enumerate(ids):
        if i % 11 == 0:
            continue  # never labelled
        keys.append(key)
        values.append(bool(rng.random() < 0.4) if i % 13 else None)
        known.append(T0 + timedelta(minutes=int(rng.integers(0, 300))))
        amounts.append(float(rng.uniform(5, 900)))
        if i % 6 == 0:  # relabelled later, known by NOW or not
            keys.append(key)
            values.append(not values[-1] if values[-1] is not None else True)
            known.append(known[-1] + timedelta(minutes=int(rng.integers(1, 120))))
            amounts.append(amounts[-1])
    return pa.table(
        {
            "request_id": keys,
            "is_fraud": pa.array(values, pa.bool_()),
            "amount": amounts,
            "label_timestamp": pa.array(known, pa.timestamp("us", tz="UTC")),
        }
    )


def labelled_repo(root: Path, seed: int) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    repo = write_repo(root, {**DRIVER_REPO, "monitors.py": MONITOR})
    rows = predictions(rng)
    rng.shuffle(rows)  # two files, neither in time order
    write_log(repo / "data" / "prediction_log", rows[:400], "a")
    write_log(repo / "data" / "prediction_log", rows[400:], "b")
    ids = sorted({r["request_id"] for r in rows})
    table = label_table(rng, ids)
    pq.write_table(table, repo / "data" / "labels.parquet")
    return repo, pd.DataFrame(rows), table.to_pandas()


def number(text: Any) -> float:
    """The logged prediction as a finite number, else NaN (independently of DuckDB)."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return math.nan
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if is_number and math.isfinite(value) else math.nan


def joined_by_hand(log: pd.DataFrame, known: pd.DataFrame, arm: str) -> pd.DataFrame:
    """One arm's matured predictions joined to the latest label known at NOW, oldest first."""
    if arm == "candidate":
        mine = (log.version == 2) & log.role.isin(["shadow", "canary"])
    else:
        mine = (log.version == 1) & (log.role == "champion")
    at = pd.to_datetime(log.event_timestamp, utc=True)
    chosen = log[
        mine & (log.model == "fraud") & (log.status == "ok") & (at >= T0) & (at < MATURED)
    ].copy()
    chosen["score"] = chosen.prediction.map(number)
    labels = known[known.is_fraud.notna() & (known.label_timestamp <= NOW)]
    latest = labels.sort_values(["label_timestamp", "is_fraud"]).groupby("request_id").tail(1)
    merged = chosen.merge(latest, on="request_id", how="inner")
    return merged.sort_values(["event_timestamp", "request_id"], kind="stable")


GATES = (
    Gate(metric="label:auc", min_samples=50),
    Gate(metric="label:average_precision", min_samples=50),
    Gate(metric="label:precision", min_samples=50),
    Gate(metric="label:recall", min_samples=50),
    Gate(metric="label:brier", min_samples=50),
    Gate(metric="label:precision_at_k", min_samples=50, k=40),
)


def by_hand(metric: str, y: np.ndarray[Any, Any], s: np.ndarray[Any, Any]) -> float:
    if metric == "auc":
        return float(roc_auc_score(y, s))
    if metric == "average_precision":
        return float(average_precision_score(y, s))
    if metric == "precision":
        return float(precision_score(y, s >= THRESHOLD))
    if metric == "recall":
        return float(recall_score(y, s >= THRESHOLD))
    if metric == "brier":
        return float(brier_score_loss(y, s))
    top = np.argsort(-s, kind="stable")[:40]  # the scores are distinct: no ties at the cut
    return float(y[top].mean())


@pytest.mark.parametrize("seed", [3, 11])
def test_label_gate_values_equal_sklearn_on_a_hand_joined_frame(tmp_path: Path, seed: int) -> None:
    repo, log, known = labelled_repo(tmp_path / "repo", seed)
    function = Gate(metric="label:caught_amount", min_samples=50, threshold=0.5)
    with FeatureStore(repo) as store:
        store.apply()
        slim = check_gates(store, state_of(rollout(*GATES), step=0), NOW).results
        full = check_gates(store, state_of(rollout(*GATES, function), step=0), NOW).results
    assert [r.candidate for r in slim] == [r.candidate for r in full[:-1]]  # same rows either way
    assert [r.champion for r in slim] == [r.champion for r in full[:-1]]
    arms = {arm: joined_by_hand(log, known, arm) for arm in ("candidate", "champion")}
    finite = {arm: frame[np.isfinite(frame.score)] for arm, frame in arms.items()}
    dropped = {arm: int((~np.isfinite(frame.score)).sum()) for arm, frame in arms.items()}
    assert min(dropped.values()) > 0 and min(len(f) for f in finite.values()) > 200
    for gate, result in zip(GATES, slim, strict=True):
        metric = gate.argument or ""
        assert result.samples == {arm: len(frame) for arm, frame in finite.items()}
        for arm, frame in finite.items():
            y, s = frame.is_fraud.to_numpy(dtype=bool), frame.score.to_numpy(dtype=float)
            assert getattr(result, arm) == pytest.approx(by_hand(metric, y, s), rel=1e-12), (
                metric,
                arm,
            )
        assert f"candidate {dropped['candidate']}, champion {dropped['champion']}" in (
            result.reason
        )
    dollars = full[-1]
    for arm, frame in finite.items():
        y, s, amount = (frame[c].to_numpy() for c in ("is_fraud", "score", "amount"))
        y = y.astype(bool)
        expected = amount[y & (s >= 0.5)].sum() / amount[y].sum()
        assert getattr(dollars, arm) == pytest.approx(expected, rel=1e-12)


def entity_source(root: Path, rng: np.random.Generator, times: list[Any]) -> LabelSource:
    """Labels by account and event time (the entity join), no label time: the latest wins by
    label value. Accounts 0-4; some (account, time) pairs labelled twice."""
    picked = [times[i] for i in rng.integers(0, len(times), 120)]
    accounts = rng.integers(0, 5, 120)
    table = pa.table(
        {
            "account_id": accounts.tolist(),
            "event_time": pa.array(picked, pa.timestamp("us", tz="UTC")),
            "label": rng.integers(0, 2, 120).tolist(),
        }
    )
    path = root / "accounts.parquet"
    pq.write_table(table, path)
    return LabelSource(
        path=str(path), label="label", join_keys=("account_id",), timestamp_field="event_time"
    )


def log_with_outputs(folder: Path, rng: np.random.Generator, in_order: bool) -> list[Any]:
    """Version 1 logs a bare number, version 2 an object with outputs 'p' and 'q'; accounts 0-4;
    many rows share a time; the file in time order (as one writer logs) or not."""
    times = [T0 + timedelta(minutes=int(m)) for m in rng.integers(0, 60, 40)]
    ids = [f"k{i}" for i in rng.permutation(300)]  # text order unlike time order
    rows = []
    for i in range(300):
        at, account = times[i % len(times)], int(rng.integers(0, 5))
        one = row(at, 1, "champion", score=float(rng.random()), request_id=ids[i])
        two = row(
            at,
            2,
            "shadow" if i % 2 else "canary",
            prediction=json.dumps({"p": float(rng.random()), "q": 0.5}) if i % 9 else '{"p":"x"}',
            request_id=ids[i],
        )
        for logged in (one, two):
            logged["entities"] = json.dumps({"account_id": account})
            rows.append(logged)
    rows.append(row(times[0], 2, None, score=0.9, request_id="k1"))
    if in_order:
        rows.sort(key=lambda logged: logged["event_timestamp"])
    write_log(folder, rows, "a")
    return times


@pytest.mark.parametrize("in_order", [False, True])
@pytest.mark.parametrize("keyed_by", ["request_id", "entity"])
def test_one_pass_join_equals_the_join_of_each_arm(
    tmp_path: Path, keyed_by: str, in_order: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counts, labelled rows and their order (time, then request id) equal `labels.join` run per
    arm, with the label source's columns and without them; rows sharing a time ordered by
    request id in Python (a few) or by Arrow (many); the hash table built on the labels, or (more
    labels than the log holds rows) where DuckDB puts it."""
    if in_order:
        monkeypatch.setattr(labels, "TIES_IN_PYTHON", 0)
    rng = np.random.default_rng(5)
    folder = tmp_path / "log"
    times = log_with_outputs(folder, rng, in_order)
    if keyed_by == "entity":
        source = entity_source(tmp_path, rng, times)
    else:
        ids = [f"k{i}" for i in range(300)]
        ids += [f"z{i}" for i in range(2_000 if in_order else 0)]  # more labels than log rows
        table = label_table(rng, ids).drop_columns(["amount"])
        pq.write_table(table, tmp_path / "labels.parquet")
        source = LabelSource(
            path=str(tmp_path / "labels.parquet"),
            label="is_fraud",
            join_keys=("request_id",),
            label_timestamp_field="label_timestamp",
        )
    scopes = (
        labels.LogScope(folder, "fraud", 2, "p", roles=("shadow", "canary")),
        labels.LogScope(folder, "fraud", 1, None, roles=("champion",)),
    )
    window = Window(T0 + timedelta(minutes=5), T0 + timedelta(minutes=50))
    as_of = T0 + timedelta(hours=3)
    connection = labels.connect(tmp_path)
    try:
        sql = labels.source_sql(source, tmp_path)
        each = [labels.join(connection, s, source, sql, [window], as_of) for s in scopes]
        both = labels.join_arms(connection, scopes, source, sql, window, as_of)
        slim = labels.join_arms(connection, scopes, source, sql, window, as_of, columns=False)
        setting = connection.sql("SELECT current_setting('disabled_optimizers')").fetchall()
    finally:
        connection.close()
    assert setting == [("",)]  # the connection is left as it was
    assert all(arm.rows.num_rows > 20 for arm in each)
    assert sum(arm.dropped_scores[0] for arm in each) > 0
    for old, new, narrow in zip(each, both, slim, strict=True):
        for joined in (new, narrow):
            assert joined.predictions == old.predictions
            assert joined.labelled == old.labelled
            assert joined.dropped_scores == old.dropped_scores
            assert (joined.label_rows, joined.log_files) == (old.label_rows, old.log_files)
        assert new.rows.equals(old.rows)
        assert narrow.rows.equals(old.rows.select(["__window", "__label", "__score"]))


def test_one_pass_join_of_an_empty_log_folder(tmp_path: Path) -> None:
    pq.write_table(pa.table({"request_id": ["a"], "is_fraud": [True]}), tmp_path / "labels.parquet")
    source = LabelSource(path="labels.parquet", label="is_fraud", join_keys=("request_id",))
    scopes = [labels.LogScope(tmp_path / "none", "fraud", v) for v in (2, 1)]
    connection = labels.connect(tmp_path)
    try:
        sql = labels.source_sql(source, tmp_path)
        window = Window(T0, T0 + timedelta(hours=1))
        found = labels.join_arms(connection, scopes, source, sql, window, NOW, columns=False)
        with pytest.raises(ValueError, match="one log folder and one model"):
            labels.join_arms(
                connection, [scopes[0], labels.LogScope(tmp_path, "x", 1)], source, sql, window, NOW
            )
    finally:
        connection.close()
    assert [(j.predictions, j.labelled, j.rows.num_rows, j.label_rows) for j in found] == [
        ([0], [0], 0, 1),
        ([0], [0], 0, 1),
    ]
