"""Integration QA of the closed loop (issue 15): defects found running it as a user does."""

from datetime import UTC, datetime, timedelta

from parity.definitions.retrain import RetrainPolicy
from parity.deploy.retrain_decide import Context, Observation, TriggerState, decide, with_request

T0 = datetime(2026, 6, 1, tzinfo=UTC)
NONE = Observation(None, None)


def _policy() -> RetrainPolicy:
    return RetrainPolicy(
        name="p", model="fraud", job="fraud_training", sustain=1, cooldown=timedelta(days=1)
    )


def test_a_request_held_by_the_models_active_job_says_it_stays_owed_and_does() -> None:
    """`parity triggers request` while the model's retrain runs printed 'manual request folded
    into it', yet the request stayed pending and fired a second retrain once the job ended: the
    reason now says it is kept owed, as the state shows."""
    state = with_request(TriggerState(), "labels backfilled", T0)
    held = decide(_policy(), state, NONE, NONE, Context(T0, model_active=(5,)))
    assert held.action == "suppress" and "#5" in held.reasons[0]
    assert "manual kept owed: retrains once it ends" in held.reasons[0]
    assert held.state.request is not None
    later = decide(_policy(), held.state, NONE, NONE, Context(T0 + timedelta(hours=1)))
    assert later.action == "fire" and later.asking == ("manual",)


def test_a_signal_alone_held_by_the_active_job_is_folded_without_an_owed_note() -> None:
    held = decide(
        _policy(),
        TriggerState(),
        Observation(0.9, T0),
        NONE,
        Context(T0, model_active=(5,)),
    )
    assert held.action == "suppress" and "folded into it" in held.reasons[0]
    assert "owed" not in held.reasons[0]
