"""Bad input to `store.jobs`: wrong types, unknown names and ids, out-of-range ids and limits,
naive or wrong-typed times: each a typed error naming the field, nothing queued."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from parity.errors import InvalidOption, InvalidTime, JobNotFound, TrainingJobNotFound
from tests.jobs.support import open_store


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"name": 7}, InvalidOption, "name=7: give non-empty text"),
        ({"name": ""}, InvalidOption, "name='': give non-empty text"),
        ({"name": "ok_job", "reason": None}, InvalidOption, "reason=None"),
        ({"name": "ok_job", "trigger_decision": "3"}, InvalidOption, "trigger_decision='3'"),
        ({"name": "ok_job", "trigger_decision": True}, InvalidOption, "trigger_decision=True"),
        ({"name": "ok_job", "now": datetime(2026, 3, 1)}, InvalidTime, "timezone-aware"),
        ({"name": "ok_job", "now": "2026-03-01"}, InvalidTime, "now='2026-03-01'"),
        ({"name": "ok_job2"}, TrainingJobNotFound, "no training job named 'ok_job2'"),
    ],
)
def test_bad_submissions_are_refused_and_queue_nothing(
    tiny_repo: Path, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with open_store(tiny_repo) as store:
        name = kwargs.pop("name")
        with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
            store.jobs.submit(name, **kwargs)
        assert store.jobs.list() == []


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_bad_ids_and_list_arguments_are_typed_errors(tiny_repo: Path) -> None:
    with open_store(tiny_repo) as store:
        job = store.jobs.submit("ok_job")
        for bad in (0, -1, 2**63, 2**80, job.id + 1):
            with pytest.raises(JobNotFound):
                store.jobs.get(bad)
            with pytest.raises(JobNotFound):
                store.jobs.cancel(bad)
        for wrong in ("1", 1.0, True, None):
            with pytest.raises(InvalidOption, match="job id"):
                store.jobs.get(wrong)  # type: ignore[arg-type]
        for limit in (0, -3, 10_001, 2.5, True):
            with pytest.raises(InvalidOption, match="limit="):
                store.jobs.list(limit=limit)  # type: ignore[arg-type]
        with pytest.raises(InvalidOption, match="status='done'"):
            store.jobs.list(status="done")  # type: ignore[arg-type]
        assert [j.id for j in store.jobs.list(limit=10_000)] == [job.id]
        assert store.jobs.get(job.id).status == "queued"
