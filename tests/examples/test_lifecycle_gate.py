"""The retrain's rollout in the fraud template (`fraud_retrain_rollout`): its shadow gate
`block_rate`, worked by hand, and its declaration (fraud_rollout's steps, routing and other gates,
the training job's candidate alias)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from parity.examples.fraud import scaffold

TEMPLATE = Path(scaffold.__file__).parent / "template" / "rollouts.py"


@pytest.fixture(scope="module")
def gates() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fraud_template_rollouts_retrain", TEMPLATE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Arm:
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
        0.05,
        Arm(ids[::-1].copy(), np.array(candidate[::-1])),  # log order differs: paired by id
        Arm(ids, np.array(champion)),
    )


def test_a_retrain_blocking_more_within_the_budget_passes(gates: ModuleType) -> None:
    n = gates.MIN_PAIRS  # 5,000
    # The champion blocks 20 payments (0.4 %); the retrain blocks 200 (4 %), none of the
    # champion's among them: it is not asked to agree with a champion known to be wrong.
    champion = [0.9] * 20 + [0.1] * (n - 20)
    candidate = [0.1] * 20 + [0.8] * 200 + [0.0] * (n - 220)
    verdict, reason = gates.block_rate(paired(champion, candidate))
    assert verdict is True
    assert reason == (
        f"the candidate blocks 4.00% of {n:,} payments, the champion 0.40%: within "
        "[half the champion's, 5%]"
    )


def test_a_retrain_over_the_budget_or_under_half_the_champion_fails(gates: ModuleType) -> None:
    n = gates.MIN_PAIRS
    champion = [0.9] * 20 + [0.1] * (n - 20)
    over = [0.6] * 251 + [0.0] * (n - 251)  # 5.02 % > 5 %
    verdict, reason = gates.block_rate(paired(champion, over))
    assert verdict is False and "blocks 5.02%" in reason and "outside" in reason
    at_budget = [0.6] * 250 + [0.0] * (n - 250)  # exactly 5 %: still within
    assert gates.block_rate(paired(champion, at_budget))[0] is True
    under = [0.6] * 9 + [0.0] * (n - 9)  # 9 < 20 / 2: it stopped blocking
    verdict, reason = gates.block_rate(paired(champion, under))
    assert verdict is False and "blocks 0.18%" in reason
    assert gates.block_rate(paired(champion, [0.6] * 10 + [0.0] * (n - 10)))[0] is True


def test_the_gate_waits_for_pairs_skips_nan_and_passes_canary_steps(gates: ModuleType) -> None:
    n = gates.MIN_PAIRS
    champion = [0.9] * 20 + [0.1] * (n - 20)
    candidate = [0.9] * 20 + [0.1] * (n - 21) + [float("nan")]
    verdict, reason = gates.block_rate(paired(champion, candidate))
    assert verdict is None and f"{n - 1:,} shadow pairs of the {n:,} needed" in reason
    verdict, reason = gates.block_rate(paired([0.9], [0.1], phase="canary"))
    assert verdict is True and "shadow only" in reason


def test_the_retrain_rollout_is_fraud_rollouts_steps_with_the_block_rate_gate(
    gates: ModuleType,
) -> None:
    retrain, usual = gates.fraud_retrain_rollout, gates.fraud_rollout
    assert retrain.candidate == "candidate"  # the alias fraud_training registers
    assert (retrain.shadow, retrain.steps, retrain.routing_key) == (
        usual.shadow,
        usual.steps,
        usual.routing_key,
    )
    # no latency gate: in the in-process simulation a shadow's latency is its queue's wait
    assert [g.metric for g in retrain.gates] == ["custom:block_rate", "error_rate"]
    assert retrain.gates[0].threshold == gates.BLOCK_BUDGET == 0.05
    assert [ref.name for ref in retrain.custom_gates] == ["block_rate"]
