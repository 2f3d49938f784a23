"""RetrainPolicy and TrainingJob name a model by its bare name, like Monitor and Rollout."""

from __future__ import annotations

import pytest

from parity import LabelSource, RetrainPolicy, TrainingJob
from parity.errors import InvalidDefinition


def train(frame, context):  # type: ignore[no-untyped-def]
    return None


@pytest.mark.parametrize("model", ["fraud@champion", "fraud/3", ""])
def test_a_policy_or_job_for_an_alias_or_version_is_refused_naming_the_field(model: str) -> None:
    with pytest.raises(InvalidDefinition, match=r"field 'model'.*every version"):
        RetrainPolicy(name="p", model=model, job="j")
    labels = LabelSource(path="l.parquet", label="y", join_keys=("k",), timestamp_field="t")
    with pytest.raises(InvalidDefinition, match=r"field 'model'.*new version"):
        TrainingJob(name="j", model=model, feature_service="s", labels=labels, train=train)


def test_a_bare_model_name_is_kept() -> None:
    assert RetrainPolicy(name="p", model="fraud", job="j").model == "fraud"
