"""`check_gates` label and custom gates over a real log: matured labels only (window and
`as_of`), the Monitor's metric function bound from the repo, custom gate functions bound from
the repo by name and code hash, a raising one failing."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from parity import FeatureStore, Gate, Rollout
from parity.repo.loader import load_repo
from tests.conftest import DRIVER_REPO, write_repo
from tests.deploy.test_gates_log import T0, rollout, row, state_of, write_log

RNG = np.random.default_rng(7)
MONITOR = '''
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
    label_delay=timedelta(hours=2),
    metrics=[caught_amount],
)
'''
DELAY = timedelta(hours=2)
NOW = T0 + timedelta(hours=3)  # predictions before T0 + 1 h have matured


def labelled_repo(root: Path) -> tuple[Path, dict[str, Any]]:
    """A shadow phase over 40 matured requests (both arms scored each one), 10 that have not
    matured, and labels: 35 known by NOW, 5 of the matured ones only after NOW."""
    repo = write_repo(root, {**DRIVER_REPO, "monitors.py": MONITOR})
    matured, young = 40, 10
    ids = [f"txn-{i}" for i in range(matured + young)]
    at = [T0 + timedelta(minutes=i) for i in range(matured)]
    at += [T0 + timedelta(minutes=70 + i) for i in range(young)]
    y = RNG.random(matured + young) < 0.4
    y[:2], y[2:4] = True, False  # both classes among the known
    champion = np.clip(y * 0.4 + RNG.random(y.size) * 0.6, 0, 1)
    candidate = RNG.random(y.size)
    candidate[matured:] = y[matured:]  # perfect on the young rows: must not count
    amount = RNG.uniform(5, 500, y.size)
    rows = [row(at[i], 1, "champion", score=champion[i], request_id=ids[i]) for i in range(50)]
    rows += [row(at[i], 2, "shadow", score=candidate[i], request_id=ids[i]) for i in range(50)]
    # explicit version requests (role null) of both versions, labelled, inverted scores: ignored
    rows += [
        row(at[i], v, None, score=1.0 - y[i], request_id=ids[i]) for i in range(9) for v in (1, 2)
    ]
    write_log(repo / "data" / "prediction_log", rows, "a")
    known = NOW - timedelta(minutes=5)
    late = [35, 36, 37, 38, 39]  # labelled only after NOW
    when = [NOW + timedelta(minutes=1) if i in late else known for i in range(y.size)]
    labels = pa.table(
        {
            "request_id": ids,
            "is_fraud": y.tolist(),
            "amount": amount.tolist(),
            "label_timestamp": pa.array(when, pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(labels, repo / "data" / "labels.parquet")
    used = np.arange(35)  # matured and known by NOW
    return repo, {
        "y": y[used],
        "champion": champion[used],
        "candidate": candidate[used],
        "amount": amount[used],
    }


def caught(y: Any, scores: Any, amount: Any) -> float:
    return float(amount[y & (scores >= 0.5)].sum() / amount[y].sum())


def test_label_gates_judge_matured_labels_known_by_now(tmp_path: Path) -> None:
    repo, data = labelled_repo(tmp_path / "repo")
    gates = (
        Gate(metric="label:auc", min_samples=30),
        Gate(metric="label:caught_amount", min_samples=30, threshold=0.5),
    )
    with FeatureStore(repo) as store:
        store.apply()
        outcome = check(store, rollout(*gates), step=0, step_started=T0)
    auc, dollars = outcome.results
    y = data["y"]
    assert auc.samples == {"candidate": 35, "champion": 35}
    assert auc.candidate == pytest.approx(roc_auc_score(y, data["candidate"]), rel=1e-12)
    assert auc.champion == pytest.approx(roc_auc_score(y, data["champion"]), rel=1e-12)
    expected = "fail" if auc.candidate < auc.champion * 0.95 else "pass"
    assert auc.verdict == expected == "fail"  # a random candidate vs an informative champion
    assert dollars.candidate == pytest.approx(caught(y, data["candidate"], data["amount"]))
    assert dollars.champion == pytest.approx(caught(y, data["champion"], data["amount"]))
    bound = dollars.champion * 0.5
    assert dollars.verdict == ("fail" if dollars.candidate < bound else "pass")
    assert outcome.samples == {"candidate": 50, "champion": 50}  # the step window: all rows


def check(store: FeatureStore, definition: Rollout, **changes: Any) -> Any:
    from parity.deploy.evidence import check_gates

    return check_gates(store, state_of(definition, **changes), NOW)


def test_before_any_label_matured_the_gate_is_inconclusive(tmp_path: Path) -> None:
    repo, _ = labelled_repo(tmp_path / "repo")
    with FeatureStore(repo) as store:
        store.apply()
        from parity.deploy.evidence import check_gates

        state = state_of(rollout(Gate(metric="label:auc", min_samples=1)), step=0)
        (early,) = check_gates(store, state, T0 + DELAY).results
        assert early.verdict == "inconclusive"
        assert "no matured labels yet" in early.reason and "2:00:00" in early.reason
        few = Gate(metric="label:auc", min_samples=36)
        (short,) = check(store, rollout(few), step=0).results
        assert short.verdict == "inconclusive" and "candidate 35" in short.reason


def test_label_gate_without_a_monitor_or_with_an_unknown_metric(tmp_path: Path) -> None:
    repo, _ = labelled_repo(tmp_path / "repo")
    with FeatureStore(repo) as store:
        (none,) = check(store, rollout(Gate(metric="label:auc")), step=0).results
        assert none.verdict == "inconclusive" and "no Monitor watches model 'fraud'" in none.reason
        store.apply()
        (unknown,) = check(store, rollout(Gate(metric="label:nope")), step=0).results
        assert unknown.verdict == "inconclusive"
        assert "neither built in" in unknown.reason and "fraud_monitor" in unknown.reason


CUSTOM = """
from parity import Gate, Phase, Rollout


def mean_latency(evidence):
    ratio = evidence.candidate.latency_ms.mean() / evidence.champion.latency_ms.mean()
    return ratio <= 1 + evidence.limit, f"mean latency ratio {ratio:.2f}"


def broken(evidence):
    raise RuntimeError("no such column")


fraud_rollout = Rollout(
    name="fraud_rollout",
    model="fraud",
    candidate=2,
    steps=[Phase(weight=5)],
    gates=[
        Gate(metric="custom:mean_latency", threshold=0.5, min_samples=2),
        Gate(metric="custom:broken", min_samples=2),
    ],
    custom_gates=[mean_latency, broken],
)
"""


def custom_repo(root: Path) -> tuple[Path, Rollout]:
    repo = write_repo(root, {**DRIVER_REPO, "rollouts.py": CUSTOM})
    inside = T0 + timedelta(minutes=40)
    rows = [row(inside, 1, "champion", latency=10.0) for _ in range(3)]
    rows += [row(inside, 2, "canary", latency=14.0) for _ in range(2)]
    write_log(repo / "data" / "prediction_log", rows, "a")
    loaded = load_repo(repo, "demo").catalog.rollouts["fraud_rollout"]
    stored = Rollout.model_validate(loaded.model_dump())  # as read back from the database
    assert stored.gate_functions == {}
    return repo, stored


def test_custom_gates_are_bound_from_the_repo_and_a_raising_one_fails(tmp_path: Path) -> None:
    repo, definition = custom_repo(tmp_path / "repo")
    with FeatureStore(repo) as store:
        outcome = check(store, definition, step=0)
    latency, broken = outcome.results
    assert (latency.verdict, latency.reason, latency.limit) == (
        "pass",
        "mean latency ratio 1.40",
        0.5,
    )
    assert latency.samples == {"candidate": 2, "champion": 3}
    assert broken.verdict == "fail"
    assert broken.reason == "gate function broken raised RuntimeError: no such column"


def test_a_gate_function_changed_or_removed_since_start_is_not_run(tmp_path: Path) -> None:
    repo, definition = custom_repo(tmp_path / "repo")
    text = (repo / "rollouts.py").read_text()
    (repo / "rollouts.py").write_text(text.replace('"no such column"', '"other"'))
    with FeatureStore(repo) as store:
        latency, broken = check(store, definition, step=0).results
        assert latency.verdict == "pass"
        assert broken.verdict == "inconclusive" and "differs from the one" in broken.reason
    (repo / "rollouts.py").write_text(textwrap.dedent("x = 1\n"))
    with FeatureStore(repo) as store:
        latency, broken = check(store, definition, step=0).results
        assert latency.verdict == broken.verdict == "inconclusive"
        assert "'mean_latency' is not in the repo" in latency.reason


TEMPLATE = Path(__file__).parents[2] / "src/parity/examples/fraud/template/monitors.py"


def test_the_fraud_templates_dollar_weighted_recall_gates_a_canary(tmp_path: Path) -> None:
    """The template's Monitor (chargebacks by request id 'txn-<id>', 30 days' label delay) and its
    metric function, bound from the repo: canary rows of each arm scored on their own requests."""
    repo = write_repo(tmp_path / "repo", {**DRIVER_REPO, "monitors.py": TEMPLATE.read_text()})
    n = 60
    amount = RNG.uniform(10, 900, n)
    fraud = np.arange(n) % 3 == 0
    scores = np.where(fraud, 0.8, 0.2)
    scores[:12] = 0.3  # the champion misses the first fraud rows (ids 0, 3, 6, 9)
    rows = []
    for i in range(n):
        arm = (1, "champion") if i % 2 == 0 else (2, "canary")
        score = float(scores[i]) if arm[0] == 1 else float(np.where(fraud[i], 0.9, 0.1))
        rows.append(row(T0 + timedelta(minutes=i), *arm, score=score, request_id=f"txn-{i}"))
    write_log(repo / "data" / "prediction_log", rows, "a")
    chargebacks = pa.table(
        {
            "transaction_id": list(range(n)),
            "is_fraud": fraud.tolist(),
            "amount": amount.tolist(),
            "label_timestamp": pa.array([T0 + timedelta(days=3)] * n, pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(chargebacks, repo / "data" / "chargebacks.parquet")
    gate = Gate(metric="label:dollar_weighted_recall", min_samples=20)
    with FeatureStore(repo) as store:
        store.apply()
        from parity.deploy.evidence import check_gates

        state = state_of(rollout(gate), step=1, step_started=T0)
        (young,) = check_gates(store, state, T0 + timedelta(days=29)).results
        assert young.verdict == "inconclusive" and "no matured labels" in young.reason
        (result,) = check_gates(store, state, T0 + timedelta(days=31)).results
    even = np.arange(0, n, 2)
    champ_caught = amount[even][fraud[even] & (scores[even] >= 0.5)].sum()
    assert result.champion == pytest.approx(champ_caught / amount[even][fraud[even]].sum())
    assert result.candidate == 1.0  # the candidate scored every fraud 0.9
    assert result.verdict == "pass" and result.samples == {"candidate": 30, "champion": 30}
