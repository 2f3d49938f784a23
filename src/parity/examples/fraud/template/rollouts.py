"""How a new fraud model reaches traffic: a shadow phase, then a sticky canary by account.

`parity rollout start fraud_rollout` starts it for the version behind `fraud@challenger`. The
gates are decided here, before any rollout starts (docs/rollout.md, "The fraud example", says
why these and not others).
"""

from datetime import timedelta

import numpy as np

from parity import FailurePolicy, Gate, Phase, Rollout, RoutingKey

BLOCK_AT = 0.5  # the score at or above which a payment is blocked (monitors.py's THRESHOLD)
MIN_PAIRS = 1_500  # shadow pairs needed before the decisions are compared


def blocked_disagreement(evidence):
    """In shadow, candidate and champion score the same payments (paired by request id): of the
    payments either would block, the share only one of them blocks. Fails above the limit.
    Canary arms score different accounts, so there is nothing to pair: it passes there, the
    shadow phase having compared the decisions (latency and errors still gate every step)."""
    if evidence.phase != "shadow":
        return True, "paired in shadow only: canary arms score different accounts"
    champion = _by_request(evidence.champion.request_ids, evidence.champion.scores)
    pairs = [
        (score, champion[key])
        for key, score in _by_request(evidence.candidate.request_ids, evidence.candidate.scores)
        .items()
        if key in champion
    ]
    if len(pairs) < MIN_PAIRS:
        return None, f"{len(pairs):,} shadow pairs of the {MIN_PAIRS:,} needed"
    candidate, champ = np.array(pairs, dtype=float).T
    blocked_c, blocked_h = candidate >= BLOCK_AT, champ >= BLOCK_AT
    either = int(np.count_nonzero(blocked_c | blocked_h))
    differ = int(np.count_nonzero(blocked_c != blocked_h))
    share = differ / either if either else 0.0
    verdict = share <= evidence.limit
    return verdict, (
        f"{differ} of {either} payments blocked by either model are blocked by only one "
        f"({share:.0%} {'<=' if verdict else '>'} {evidence.limit:.0%}); candidate blocks "
        f"{int(blocked_c.sum())}, champion {int(blocked_h.sum())}, of {len(pairs):,} pairs"
    )


def _by_request(request_ids, scores):
    """{(request id, row within it): score}, NaN scores left out."""
    seen = {}
    found = {}
    for request_id, score in zip(request_ids, scores, strict=True):
        row = seen.get(request_id, 0)
        seen[request_id] = row + 1
        if np.isfinite(score):
            found[(request_id, row)] = float(score)
    return found


fraud_rollout = Rollout(
    name="fraud_rollout",
    model="fraud",
    candidate="challenger",  # whichever version `fraud@challenger` names when it starts
    shadow=Phase(weight=0, duration=timedelta(minutes=10), min_samples=MIN_PAIRS),
    steps=[
        # Few accounts answer at 1 %: it lasts longest and asks for the fewest rows.
        Phase(weight=1, duration=timedelta(minutes=10), min_samples=10),
        Phase(weight=5, duration=timedelta(minutes=5), min_samples=40),
        Phase(weight=25, duration=timedelta(minutes=2), min_samples=100),
        Phase(weight=50, duration=timedelta(minutes=2), min_samples=100),
        # No 100 % step: there the champion answers nothing, so a gate comparing the two arms
        # in one window would wait forever. Passing 50 % promotes: the move to 100 %.
    ],
    routing_key=RoutingKey(name="account_id"),  # an account stays on one version
    gates=[
        Gate(metric="custom:blocked_disagreement", threshold=0.25, min_samples=10),
        # 3.0: p99 at most 4x the champion's. Wide on purpose: the example's simulation runs
        # both arms in one process on a shared machine, and at 1 % the candidate's p99 is the
        # slowest of a few dozen requests (docs/rollout.md, "The fraud example").
        Gate(metric="latency_p99", threshold=3.0, min_samples=10),
        Gate(metric="error_rate", threshold=0.01, min_samples=10),
    ],
    custom_gates=[blocked_disagreement],
    failure_policy=FailurePolicy(mode="cumulative", limit=1),
    interval=timedelta(minutes=1),
)
