"""The fraud example's rollout parts: the candidates (one trained without the device features),
the declared `fraud_rollout` (applied by plan/apply, its paired decision gate), and the
simulated traffic and clock the rollout driver runs on."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parity import FeatureStore, Rollout
from parity.examples.fraud import model, scaffold
from parity.examples.fraud.rollout_sim import PaymentPool, SimClock, payment_pool, sim_start

TEMPLATE = Path(scaffold.__file__).parent / "template" / "rollouts.py"
END = datetime(2026, 3, 1, tzinfo=UTC)


def template_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fraud_template_rollouts", TEMPLATE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scaffolded example (300 accounts, 30 days), applied, with a training set."""
    root = tmp_path_factory.mktemp("fraud") / "fraud_detection"
    scaffold.scaffold(root, accounts=300, days=30, end=END)
    with FeatureStore(root) as store:
        store.apply(message="first")
        labels = pq.read_table(root / "data" / "chargebacks.parquet").to_pandas()
        entities = labels[["transaction_id", "account_id", "device_id", "event_timestamp"]]
        entities = entities.assign(amount=labels["amount"], is_fraud=labels["is_fraud"])
        store.datasets.create("train", entities, "fraud_model_v1", root / "train.parquet")
    return root


# --- the candidates ---------------------------------------------------------------------------


def test_a_candidate_without_the_device_features_takes_only_the_other_inputs(repo: Path) -> None:
    with FeatureStore(repo) as store:
        full = model.train_and_register(store, "train", alias="champion")
        bad = model.train_and_register(
            store, "train", alias="challenger", drop=model.DEVICE_FEATURES
        )
        assert (full.version, bad.version) == (1, 2)
        assert bad.training_dataset == "train" and bad.feature_service == "fraud_model_v1"
        assert bad.tags["without"] == "device_risk_score,is_emulator"
        assert "without" not in full.tags
        loaded = store.models.load(bad)
    names = [spec.name for spec in loaded.signature.inputs]
    expected = [f for f in model.FEATURES if f not in model.DEVICE_FEATURES] + ["amount"]
    assert names == expected
    # It scores a frame that has no device columns at all.
    frame = pq.read_table(repo / "train.parquet").to_pandas().head(20)
    scores = np.asarray(loaded.predict(frame[expected].astype("float64")))
    assert scores.shape == (20,) and ((scores >= 0) & (scores <= 1)).all()


def test_dropping_a_feature_the_model_does_not_have_is_refused(repo: Path) -> None:
    with FeatureStore(repo) as store, pytest.raises(ValueError, match="drop=\\['country'\\]"):
        model.train_and_register(store, "train", alias=None, drop=("country",))


def test_the_training_script_registers_the_candidate_without_device_features(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model.main(
        ["--repo", str(repo), "--dataset", "train", "--alias", "nodev", "--without", "device"]
    )
    out = capsys.readouterr().out
    assert "as fraud@nodev" in out and "inputs: without device_risk_score, is_emulator" in out
    with pytest.raises(SystemExit):
        model.main(["--repo", str(repo), "--dataset", "train", "--without", "account"])


# --- the declared rollout -----------------------------------------------------------------------


def test_the_template_rollout_is_applied_by_plan_and_apply(repo: Path) -> None:
    with FeatureStore(repo) as store:
        applied = store.registry.catalog.rollouts["fraud_rollout"]
        assert not store.plan().changes  # applied with the rest: nothing left to do
    assert isinstance(applied, Rollout)
    assert applied.model == "fraud" and applied.candidate == "challenger"
    assert applied.shadow is not None and applied.shadow.weight == 0
    assert [step.weight for step in applied.steps] == [1, 5, 25, 50, 100]
    assert applied.routing_key is not None and applied.routing_key.name == "account_id"
    families = sorted(gate.family for gate in applied.gates)
    assert families == ["custom", "error_rate", "latency_p99"]
    assert [ref.name for ref in applied.custom_gates] == ["blocked_disagreement"]


@dataclass(frozen=True)
class Arm:  # the fields of the gates' per-arm evidence the template's gate reads
    request_ids: np.ndarray[Any, Any]
    scores: np.ndarray[Any, Any]


@dataclass(frozen=True)
class Evidence:
    phase: str
    limit: float
    candidate: Arm
    champion: Arm


def paired(champion: list[float], candidate: list[float], phase: str = "shadow") -> Evidence:
    ids = np.array([f"r{i}" for i in range(len(champion))], dtype=object)
    return Evidence(
        phase,
        0.2,
        Arm(ids[::-1].copy(), np.array(candidate[::-1])),  # log order differs: paired by id
        Arm(ids, np.array(champion)),
    )


def test_the_decision_gate_compares_blocks_at_the_champions_block_rate() -> None:
    gate = template_module()
    n = gate.MIN_PAIRS
    # The champion blocks 10 payments. The candidate scores on another scale (a recalibrated
    # retrain: it blocks nothing at 0.5) but ranks 8 of those 10 among its own top 10.
    champion = [0.9] * 10 + [0.1] * (n - 10)
    candidate = [0.4] * 8 + [0.01, 0.02] + [0.3, 0.35] + [0.001] * (n - 12)
    verdict, reason = gate.blocked_disagreement(paired(champion, candidate))
    assert verdict is True  # 2 of 10 = 20 %: at the limit still passes
    assert reason == (
        f"20% <= 20%: of the champion's 10 blocks in {n:,} payments, the candidate lets 2 "
        "through when it blocks as many"
    )
    # A payment the champion passes enters the candidate's top 10 and one of its blocks drops
    # out: 3 of the champion's 10 now fall below the candidate's 10 highest scores.
    candidate[12], candidate[7] = 0.5, 0.005
    verdict, reason = gate.blocked_disagreement(paired(champion, candidate))
    # 3 of 10 is over the limit, but 10 blocks cannot tell 30 % from 20 %: it waits for more
    assert verdict is None and reason.startswith("30% > 20%, not significant yet: of the champ")
    assert "the candidate lets 3 through" in reason
    # Its top 10 keeps only 3 of the champion's blocks: 7 of 10 let through, significant.
    candidate = [0.4] * 3 + [0.001] * 7 + [0.6] * 7 + [0.001] * (n - 17)
    verdict, reason = gate.blocked_disagreement(paired(champion, candidate))
    z, share, m = 1.645, 0.7, 10  # Wilson's lower bound by hand: about 0.44
    centre = (share + z * z / (2 * m)) / (1 + z * z / m)
    half = z / (1 + z * z / m) * (share * (1 - share) / m + z * z / (4 * m * m)) ** 0.5
    assert verdict is False
    assert reason.startswith(f"70% > 20% (95 % bound {centre - half:.0%}): of the champion's 10")


def test_ties_at_the_candidates_cut_count_as_blocked() -> None:
    gate = template_module()
    n = gate.MIN_PAIRS
    champion = [0.9] * 4 + [0.1] * (n - 4)
    candidate = [0.7] * 2 + [0.2] * 2 + [0.2] * 3 + [0.0] * (n - 7)  # 5 tie at the 4th score
    verdict, reason = gate.blocked_disagreement(paired(champion, candidate))
    assert verdict is True and reason.startswith("0% <= 20%") and "lets 0 through" in reason


def test_the_decision_gate_waits_for_enough_pairs_and_skips_nan_and_unpaired_rows() -> None:
    gate = template_module()
    n = gate.MIN_PAIRS
    champion = [0.9] + [0.1] * (n - 1)
    candidate = [0.9] + [0.1] * (n - 2) + [float("nan")]
    verdict, reason = gate.blocked_disagreement(paired(champion, candidate))
    assert verdict is None and f"{n - 1:,} shadow pairs of the {n:,} needed" in reason
    evidence = paired(champion, [0.9] + [0.1] * (n - 1))
    unpaired = Evidence(
        "shadow",
        0.2,
        Arm(np.array([f"x{i}" for i in range(n)], dtype=object), evidence.candidate.scores),
        evidence.champion,
    )
    assert gate.blocked_disagreement(unpaired)[0] is None
    assert gate.blocked_disagreement(evidence)[0] is True
    # Nothing blocked by the champion: no evidence either way, so it holds.
    verdict, reason = gate.blocked_disagreement(paired([0.1] * n, [0.9] * n))
    assert verdict is None and "blocks none" in reason


def test_the_decision_gate_passes_canary_steps_where_nothing_pairs() -> None:
    gate = template_module()
    verdict, reason = gate.blocked_disagreement(paired([0.9], [0.1], phase="canary"))
    assert verdict is True and "shadow only" in reason


# --- simulated traffic and time -------------------------------------------------------------------


def test_payments_come_from_the_last_week_of_recorded_ones(tmp_path: Path) -> None:
    at = [END - timedelta(days=d) for d in (10, 8, 6, 1, 0)]
    table = pa.table(
        {
            "account_id": [1, 2, 3, 4, 5],
            "device_id": [11, 12, 13, 14, 15],
            "event_timestamp": pa.array(at, pa.timestamp("us", tz="UTC")),
            "amount": [1.0, 2.0, 3.0, 4.5, 5.0],
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    pool = payment_pool(tmp_path / "t.parquet")
    assert list(pool.account_id) == [3, 4, 5] and len(pool) == 3
    drawn = pool.draw(np.random.default_rng(1), 600)
    assert len(drawn) == 600
    assert {(p["account_id"], p["device_id"], p["amount"]) for p in drawn} == {
        (3, 13, 3.0),
        (4, 14, 4.5),
        (5, 15, 5.0),
    }
    assert all(type(p["account_id"]) is int and type(p["amount"]) is float for p in drawn)
    again = pool.draw(np.random.default_rng(1), 600)
    assert drawn == again  # seeded: the same traffic every run
    assert pool.draw(np.random.default_rng(1), 0) == []
    with pytest.raises(ValueError, match="count"):
        pool.draw(np.random.default_rng(1), -1)
    with pytest.raises(ValueError, match="days"):
        payment_pool(tmp_path / "t.parquet", days=0)
    pq.write_table(table.slice(0, 0), tmp_path / "empty.parquet")
    with pytest.raises(ValueError, match="no payments"):
        payment_pool(tmp_path / "empty.parquet")


def test_the_pool_of_the_example_holds_every_recent_payment(repo: Path) -> None:
    pool = payment_pool(repo / "data" / "transactions.parquet")
    payments = pq.read_table(repo / "data" / "transactions.parquet").to_pandas()
    recent = payments["event_timestamp"] > payments["event_timestamp"].max() - timedelta(days=7)
    assert len(pool) == int(recent.sum()) > 0
    assert isinstance(pool, PaymentPool)


def test_the_simulated_clock_moves_only_forward() -> None:
    start = datetime(2026, 3, 1, 12, 0, 30, 5, tzinfo=UTC)
    assert sim_start(start) == datetime(2026, 3, 1, 12, 1, tzinfo=UTC)
    clock = SimClock(sim_start(start))
    clock.set(datetime(2026, 3, 1, 12, 2, tzinfo=UTC))
    assert clock.now() == datetime(2026, 3, 1, 12, 2, tzinfo=UTC)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.set(datetime(2026, 3, 1, 12, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="timezone"):
        SimClock(datetime(2026, 3, 1))
