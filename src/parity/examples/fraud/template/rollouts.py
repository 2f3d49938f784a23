"""How a new fraud model reaches traffic: a shadow phase, then a sticky canary by account.

`parity rollout start fraud_rollout` starts it for the version behind `fraud@challenger`. The
gates are decided here, before any rollout starts (docs/rollout.md, "The fraud example", says
why these and not others).
"""

from datetime import timedelta

import numpy as np

from parity import FailurePolicy, Gate, Phase, Rollout, RoutingKey
from parity.deploy.bounds import wilson

BLOCK_AT = 0.5  # the score at or above which a payment is blocked (monitors.py's THRESHOLD)
MIN_PAIRS = 5_000  # shadow pairs needed before the decisions are compared
CONFIDENCE_Z = 1.645  # a one-sided 95 % bound: a share over the limit fails once it is significant
BLOCK_BUDGET = 0.05  # a retrain may block more than the champion, not over 1 payment in 20


def blocked_disagreement(evidence):
    """In shadow, candidate and champion score the same payments (paired by request id). The
    champion blocks m of them; blocking as many (its m highest scores), the candidate would let
    through this share of the champion's blocks. Fails above the limit. At the same block rate,
    a recalibrated retrain passes and a model blind to a fraud signal does not.
    Canary arms score different accounts, so there is nothing to pair: it passes there, the
    shadow phase having compared the decisions (latency and errors still gate every step)."""
    if evidence.phase != "shadow":
        return True, "paired in shadow only: canary arms score different accounts"
    pairs = _shadow_pairs(evidence)
    if len(pairs) < MIN_PAIRS:
        return None, f"{len(pairs):,} shadow pairs of the {MIN_PAIRS:,} needed"
    candidate, champ = np.array(pairs, dtype=float).T
    blocked = champ >= BLOCK_AT
    m = int(np.count_nonzero(blocked))
    if m == 0:
        return None, f"the champion blocks none of {len(pairs):,} payments: nothing to compare"
    cut = np.sort(candidate)[-m]  # the candidate's m-th highest score (ties all count)
    missed = int(np.count_nonzero(blocked & (candidate < cut)))
    share = missed / m
    told = (
        f"of the champion's {m} blocks in {len(pairs):,} payments, the candidate lets {missed} "
        "through when it blocks as many"
    )
    if share <= evidence.limit:
        return True, f"{share:.0%} <= {evidence.limit:.0%}: {told}"
    # Blocks are rare (a few per thousand payments), so a share over a few dozen blocks is noisy:
    # fail only when even its one-sided 95 % lower bound is over the limit, as the built-in
    # latency and error gates do; until then wait for more pairs.
    lower, _ = wilson(missed, m, CONFIDENCE_Z)
    if lower > evidence.limit:
        return False, f"{share:.0%} > {evidence.limit:.0%} (95 % bound {lower:.0%}): {told}"
    return None, f"{share:.0%} > {evidence.limit:.0%}, not significant yet: {told}"


def block_rate(evidence):
    """For a retrain fired by a label-confirmed regression (fraud_retrain_rollout). Such a candidate
    is meant to block what the champion misses, and the matured labels that fired it say the
    champion's decisions are wrong, so agreeing with them is not asked (blocked_disagreement would
    refuse exactly the fix). In shadow, on the same payments, its block rate must be at least half
    the champion's (a model that stopped blocking is broken) and at most the gate's limit (the
    review team's capacity). Canary arms score different accounts: it passes there."""
    if evidence.phase != "shadow":
        return True, "paired in shadow only: canary arms score different accounts"
    pairs = _shadow_pairs(evidence)
    if len(pairs) < MIN_PAIRS:
        return None, f"{len(pairs):,} shadow pairs of the {MIN_PAIRS:,} needed"
    candidate, champ = np.array(pairs, dtype=float).T
    own, theirs = float(np.mean(candidate >= BLOCK_AT)), float(np.mean(champ >= BLOCK_AT))
    verdict = theirs / 2 <= own <= evidence.limit
    return verdict, (
        f"the candidate blocks {own:.2%} of {len(pairs):,} payments, the champion {theirs:.2%}: "
        f"{'within' if verdict else 'outside'} [half the champion's, {evidence.limit:.0%}]"
    )


def _shadow_pairs(evidence):
    """(candidate score, champion score) of each payment both scored in shadow."""
    champion = _by_request(evidence.champion.request_ids, evidence.champion.scores)
    candidate = _by_request(evidence.candidate.request_ids, evidence.candidate.scores)
    return [(score, champion[key]) for key, score in candidate.items() if key in champion]


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
    shadow=Phase(weight=0, duration=timedelta(minutes=25), min_samples=MIN_PAIRS),
    steps=[
        # Few accounts answer at 1 %: it lasts longest and asks for the fewest rows.
        Phase(weight=1, duration=timedelta(minutes=10), min_samples=10),
        Phase(weight=5, duration=timedelta(minutes=5), min_samples=40),
        Phase(weight=25, duration=timedelta(minutes=2), min_samples=100),
        Phase(weight=50, duration=timedelta(minutes=2), min_samples=100),
        # At 100 % the champion answers nothing: the gates compare with its rows from before.
        Phase(weight=100, duration=timedelta(minutes=2), min_samples=100),
    ],
    routing_key=RoutingKey(name="account_id"),  # an account stays on one version
    gates=[
        Gate(metric="custom:blocked_disagreement", threshold=0.2, min_samples=10),
        # 9.0: p99 at most 10x the champion's. Wide on purpose: the example's simulation runs
        # both arms in one process on a shared machine, and at 1 % the candidate's p99 is the
        # slowest of a few dozen requests (docs/rollout.md, "The fraud example").
        Gate(metric="latency_p99", threshold=9.0, min_samples=10),
        Gate(metric="error_rate", threshold=0.01, min_samples=10),
    ],
    custom_gates=[blocked_disagreement],
    failure_policy=FailurePolicy(mode="cumulative", limit=1),
    interval=timedelta(minutes=1),
)


# A retrain fired by a label-confirmed regression (template/retraining.py) is meant to block what
# the champion misses, so "does it block the same payments at the same rate" would refuse exactly
# the fix; the evidence that it is better is the matured labels it was trained and evaluated on.
# Its shadow phase checks its block rate instead (docs/lifecycle.md, "The loop in the fraud
# demo"). The steps, routing and the other gates are fraud_rollout's.
fraud_retrain_rollout = Rollout(
    name="fraud_retrain_rollout",
    model="fraud",
    candidate="candidate",  # what a training job registers (training.py)
    shadow=fraud_rollout.shadow,
    steps=fraud_rollout.steps,
    routing_key=fraud_rollout.routing_key,
    # No latency gate here: the loop runs this rollout in the demo's in-process simulation, where
    # a shadow's predictions are timed with their wait in the shadow queue, so its p99 measures
    # the queue (a CI run measured 15x the champion's), not the model; fraud_rollout's widened
    # bound (9.0) only hides that. Declare one for a rollout served by a real model server.
    gates=[
        Gate(metric="custom:block_rate", threshold=BLOCK_BUDGET, min_samples=10),
        *[gate for gate in fraud_rollout.gates[1:] if gate.metric != "latency_p99"],
    ],
    custom_gates=[block_rate],
    failure_policy=fraud_rollout.failure_policy,
    interval=fraud_rollout.interval,
)
