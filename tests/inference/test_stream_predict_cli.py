"""`parity predict stream` from the command line: a run that scores and says what it did, and the
user errors (unknown model, source or alias, a group that is `parity ingest`'s, a model without a
feature service) as one line naming the problem, exit 1, no traceback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis
from typer.testing import CliRunner

from parity import FeatureStore
from parity.cli.main import app
from parity.ingest.stream import StreamWorker, publish
from tests.inference.test_stream_predict_support import VelocityModel, history, make_repo, register

pytestmark = pytest.mark.redis
runner = CliRunner()


@pytest.fixture
def repo(tmp_path: Path, redis_url: str) -> Iterator[dict[str, Any]]:
    root, stream = make_repo(tmp_path / "repo")
    store = FeatureStore(root)
    store.apply()
    register(store)
    client = redis.Redis.from_url(redis_url)
    sink = f"parity:test:scores:{stream.rsplit(':', 1)[1]}"
    yield {"root": root, "store": store, "client": client, "stream": stream, "sink": sink}
    client.delete(stream, sink, f"{sink}:dead")
    client.close()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["predict", "stream", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_a_run_until_idle_scores_every_event_and_says_so(repo: dict[str, Any]) -> None:
    now = datetime.now(UTC)
    source = repo["store"].get_feature_view("velocity").source
    publish(repo["client"], source, history(now, [1, 2], 2), project=repo["store"].project)
    worker = StreamWorker(repo["store"], "txns", block_ms=1, client=repo["client"])
    while worker.run_once():
        pass
    fresh = {"account_id": 1, "event_timestamp": now - timedelta(seconds=1), "amount": 2.0}
    unknown = {**fresh, "account_id": 5}
    publish(repo["client"], source, [fresh, unknown], project=repo["store"].project)
    code, output = run(
        "--model", "velo@champion", "--source", "txns", "--sink", repo["sink"],
        "--repo", str(repo["root"]), "--until-idle", "--ingest-wait-ms", "200",
    )  # fmt: skip
    assert code == 0, output
    # every event of the stream: 4 history events and the new one scored, account 5 unknown;
    # the new one was not ingested (after the 200 ms wait): marked
    assert "published 5 scores" in output and "1 dead letters (1 unknown_entity)" in output
    assert "1 scored before `parity ingest` had applied them (ingest_behind)" in output
    assert repo["client"].xlen(repo["sink"]) == 5


def test_an_unknown_model_source_or_alias_is_one_line(repo: dict[str, Any]) -> None:
    common = ["--sink", repo["sink"], "--repo", str(repo["root"])]
    for model, source, expected in [
        ("nope@champion", "txns", "nope"),
        ("velo@staging", "txns", "staging"),
        ("velo@champion", "no_such_source", "no_such_source"),
    ]:
        code, output = run("--model", model, "--source", source, *common)
        assert code == 1 and expected in output and "Traceback" not in output, output


def test_the_ingest_group_is_refused(repo: dict[str, Any]) -> None:
    group = f"parity:{repo['store'].project}"
    code, output = run(
        "--model", "velo", "--source", "txns", "--sink", repo["sink"],
        "--repo", str(repo["root"]), "--group", group,
    )  # fmt: skip
    assert code == 1 and "parity ingest" in output and "--group" in output, output


def test_a_model_without_a_feature_service_is_refused(repo: dict[str, Any]) -> None:
    sample = pd.DataFrame(
        {"amount_count_5m": [1.0], "amount_sum_1h": [2.0], "amount_to_mean": [1.0], "amount": [3.0]}
    )
    repo["store"].models.register_model(
        "bare", VelocityModel(), flavor="pyfunc", sample_input=sample
    )
    code, output = run(
        "--model", "bare", "--source", "txns", "--sink", repo["sink"], "--repo", str(repo["root"])
    )
    assert code == 1 and "feature service" in output, output


def test_a_negative_ingest_wait_is_refused(repo: dict[str, Any]) -> None:
    code, output = run(
        "--model", "velo", "--source", "txns", "--sink", repo["sink"],
        "--repo", str(repo["root"]), "--ingest-wait-ms", "-1",
    )  # fmt: skip
    assert code == 2 and "ingest-wait-ms" in output, output
