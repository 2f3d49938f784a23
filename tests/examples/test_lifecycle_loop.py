"""The fraud example's closed loop on a small world, through the real parts: the new pattern
appears, labels mature, exactly one retrain fires, its job trains on matured labels only, and the
retrained version passes shadow and canary and becomes the champion; the report shows it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from parity import FeatureStore
from parity.examples.fraud import model, scaffold
from parity.examples.fraud.lifecycle_sim import Loop, LoopFailed, LoopResult
from parity.examples.fraud.loop_view import loop_report
from parity.examples.fraud.rollout_sim import SimClock

END = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)  # the recorded data's end
ACCOUNTS = 1000
LABEL_DELAY = timedelta(days=30)


@dataclass
class Run:
    root: Path
    store: FeatureStore
    result: LoopResult


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("loop") / "fraud_detection"
    scaffold.scaffold(root, accounts=ACCOUNTS, days=60, end=END)
    with FeatureStore(root) as store:
        store.apply(message="first")
        labels = pq.read_table(root / "data" / "chargebacks.parquet").to_pandas()
        first = labels[labels["event_timestamp"] < pd.Timestamp(END) - timedelta(days=42)]
        entities = first[["transaction_id", "account_id", "device_id", "event_timestamp"]]
        entities = entities.assign(amount=first["amount"], is_fraud=first["is_fraud"])
        store.datasets.create("fraud_train_v1", entities, "fraud_model_v1", root / "t.parquet")
        model.train_and_register(store, "fraud_train_v1", alias="champion")
    clock = SimClock(END + timedelta(hours=1))
    store = FeatureStore(root, clock=clock.now)
    result = Loop(store, clock, seed=5).run()
    yield Run(root, store, result)
    store.close()


def test_exactly_one_retrain_fires_and_its_version_becomes_the_champion(run: Run) -> None:
    result, store = run.result, run.store
    fired = [d for d in result.decisions if d.action == "fire"]
    assert len(fired) == 1 and result.retrains == 1
    jobs = store.jobs.list(model="fraud")
    assert len(jobs) == 1
    job = jobs[0]
    assert (job.status, job.kind, job.name) == ("succeeded", "training", "fraud_training")
    assert job.trigger_decision == fired[0].id and fired[0].job_id == job.id
    # After the fire, through the rollout and three days more, no second retrain (the cooldown
    # suppresses a signal still asking; a signal that stopped asking holds).
    later = [d for d in result.decisions if d.at > fired[0].at]
    assert all(d.action in ("suppress", "hold") for d in later), [
        (d.action, d.reasons) for d in later
    ]
    assert result.end >= fired[0].at + timedelta(days=3)
    champion = store.models.resolve("fraud@champion")
    assert result.candidate is not None and result.promoted
    assert champion.version == result.candidate.version == job.result["version"]
    assert champion.version != result.champion.version
    moves = store.models.history("fraud", "champion")
    assert moves[-1].version == champion.version and moves[-1].previous == result.champion.version
    assert result.rollout is not None and result.rollout.state.status == "promoted"
    assert result.rollout.state.definition.name == "fraud_retrain_rollout"
    phases = [e.kind for e in result.rollout.events if e.kind in ("advanced", "promoted")]
    assert phases == ["advanced"] * 5 + ["promoted"]  # shadow -> 1 -> 5 -> 25 -> 50 -> 100 %


def test_the_retrain_fired_on_matured_labels_after_the_pattern_appeared(run: Run) -> None:
    result = run.result
    fired = next(d for d in result.decisions if d.action == "fire")
    assert fired.at >= result.shift_at + timedelta(days=7) + LABEL_DELAY  # the first bad week
    final = [w for w in result.final_weeks if w["end"] <= fired.at]
    before = [w for w in final if w["end"] <= result.shift_at]
    after = [w for w in final if w["start"] >= result.shift_at]
    assert before and after
    assert after[-1]["recall"] < 0.5 * before[0]["recall"]  # the policy's drop: half
    # Drift of the shifted weeks rose above the ordinary weeks'.
    shifted = [w["share"] for w in result.drift_weeks if w["start"] >= result.shift_at]
    ordinary = [w["share"] for w in result.drift_weeks if w["start"] < result.shift_at]
    assert ordinary and shifted and min(shifted) > max(ordinary)


def test_the_lineage_names_the_job_and_a_dataset_of_matured_labels_only(run: Run) -> None:
    store, result = run.store, run.result
    version = result.candidate
    assert version is not None
    job = store.jobs.list(model="fraud")[0]
    assert version.tags["job_id"] == str(job.id) and version.tags["job"] == "fraud_training"
    assert version.feature_service == "fraud_model_v1"
    dataset = store.datasets.get(str(version.training_dataset))
    assert dataset.fingerprint == version.dataset_fingerprint
    rows = pd.read_parquet(dataset.path)
    trained_at = job.started_at
    assert trained_at is not None
    cutoff = trained_at - LABEL_DELAY
    assert rows["event_timestamp"].max() <= pd.Timestamp(cutoff)
    assert rows["label_timestamp"].max() <= pd.Timestamp(trained_at)  # every label known then
    # The oracle: the chargebacks of the 35-day lookback before the cutoff, counted directly.
    labels = pq.read_table(run.root / "data" / "chargebacks.parquet").to_pandas()
    times = labels["event_timestamp"]
    window = (times <= pd.Timestamp(cutoff)) & (times > pd.Timestamp(cutoff - timedelta(days=35)))
    assert len(rows) == int(window.sum()) == dataset.row_count
    ring = rows["account_id"].isin(result.world.ring_accounts)
    assert ring.sum() > 100 and rows.loc[ring, "is_fraud"].all()  # the new pattern is in it


def test_the_retrained_version_catches_the_ring_the_champion_missed(run: Run) -> None:
    store, result = run.store, run.result
    assert result.candidate is not None
    fired = next(d for d in result.decisions if d.action == "fire")
    labels = pq.read_table(run.root / "data" / "chargebacks.parquet").to_pandas()
    times = labels["event_timestamp"]
    week = labels[(times >= pd.Timestamp(fired.at - timedelta(days=7))) & (times < fired.at)]
    ring = week[week["account_id"].isin(result.world.ring_accounts)]
    assert len(ring) > 50
    columns = ["transaction_id", "account_id", "device_id", "event_timestamp", "amount"]
    frame = store.get_historical_features(ring[columns], "fraud_model_v1").to_pandas()
    caught = {
        ref: float(
            np.mean(
                store.models.load(store.models.get_version("fraud", v)).predict(model.inputs(frame))
                >= 0.5
            )
        )
        for ref, v in (("old", result.champion.version), ("new", result.candidate.version))
    }
    assert caught["new"] > max(2 * caught["old"], caught["old"] + 0.25), caught
    assert result.pattern["champion"]["ring_recall"] == pytest.approx(caught["old"], abs=0.02)


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []
        self.csp = ""
        self.cells: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        found = dict(attrs)
        self.ids.add(found.get("id") or "")
        self.urls += [v or "" for k, v in attrs if k in ("src", "href", "action", "data")]
        if found.get("http-equiv") == "Content-Security-Policy":
            self.csp = found.get("content") or ""

    def handle_data(self, data: str) -> None:
        self.cells.append(data.strip())


def test_the_report_is_one_page_showing_the_lineage_the_registry_holds(run: Run) -> None:
    page = loop_report(run.store, run.result)
    parsed = _Page()
    parsed.feed(page)
    assert not {"script", "iframe", "link", "img", "object", "embed"} & set(parsed.tags)
    # Nothing to fetch: the only links jump within the page (the drift report's column index).
    assert parsed.urls and {url[1:] for url in parsed.urls} <= parsed.ids
    assert "default-src 'none'" in parsed.csp
    version = run.store.models.get_version("fraud", run.result.candidate.version)  # type: ignore[union-attr]
    lineage = page.split("Lineage of the retrained version")[1].split("</table>")[0]
    cells = _Page()
    cells.feed(lineage)
    texts = [text for text in cells.cells if text]
    shown = dict(zip(texts[0::2], texts[1::2], strict=True))
    assert shown["version"] == version.ref
    assert shown["dataset fingerprint"] == version.dataset_fingerprint
    assert shown["training dataset"] == version.training_dataset
    assert shown["feature service"] == version.feature_service
    assert shown["feature registry version"] == str(version.registry_version)
    assert shown["training job"] == f"fraud_training #{version.tags['job_id']}"
    for heading in ("Timeline", "Signals over time", "Retrain decisions"):
        assert f"<h2>{heading}</h2>" in page
    assert "custom:block_rate" in page  # the rollout's gate decisions, embedded
    assert page.count("<svg") >= 3  # the loop's signals, the drift plots, the rollout's weight


def test_a_loop_that_did_not_retrain_exactly_once_fails_loudly(run: Run) -> None:
    result = run.result
    quiet = LoopResult(
        result.model, result.start, result.shift_at, result.end, result.champion, result.world
    )
    loop = Loop.__new__(Loop)
    loop.model = "fraud"
    with pytest.raises(LoopFailed, match="exactly once; it fired 0 retrain"):
        loop._check(quiet)


def test_a_second_loop_on_an_already_continued_world_is_refused(run: Run) -> None:
    clock = SimClock(END + timedelta(hours=1))
    rows = pq.read_metadata(run.root / "data" / "transactions.parquet").num_rows
    refused = pytest.raises(LoopFailed, match=r"already run to .* a recorded world once")
    with FeatureStore(run.root, clock=clock.now) as store, refused:
        Loop(store, clock).run()
    assert pq.read_metadata(run.root / "data" / "transactions.parquet").num_rows == rows
