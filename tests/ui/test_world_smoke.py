"""The UI's world is what its tests expect: a promoted retrain, then a rollback."""

from tests.ui.world import World


def test_the_world_has_a_rollback_after_the_promotion(fraud_world: World) -> None:
    result = fraud_world.result
    assert result.candidate is not None and result.promoted
    champion = fraud_world.store.models.resolve("fraud@champion")
    assert champion.version == fraud_world.rolled_back == result.champion.version
    moves = fraud_world.store.models.history("fraud", "champion")
    assert moves[-1].previous == result.candidate.version
