"""The model server's drift gauges: values from the latest stored rows, refreshed at most every
`refresh_seconds` in the background, the last values kept when a read fails."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest

from parity.inference.metrics import DriftGauges


@dataclass
class Row:
    model: str
    version: int
    column: str
    kind: str
    test: str
    statistic: float | None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def scrape(gauges: DriftGauges) -> str:
    registry = CollectorRegistry()
    registry.register(gauges)
    return generate_latest(registry).decode()


def test_gauges_show_each_columns_statistic_and_the_dataset_share() -> None:
    rows = [
        Row("fraud", 3, "amount", "feature", "wasserstein", 0.25),
        Row("fraud", 3, "output", "output", "psi", 0.5),
        Row("fraud", 3, "city", "feature", "-", None),  # insufficient data: no sample
        Row("fraud", 3, "__dataset__", "dataset", "drift_share", 0.5),
    ]
    gauges = DriftGauges(lambda: rows, spawn=lambda refresh: refresh())
    gauges.refresh()
    text = scrape(gauges)
    assert (
        'parity_feature_drift{feature="amount",model="fraud",test="wasserstein",version="3"} 0.25'
        in text
    )
    assert 'parity_feature_drift{feature="output",model="fraud",test="psi",version="3"} 0.5' in text
    assert 'feature="city"' not in text and 'feature="__dataset__"' not in text
    assert 'parity_dataset_drift_share{model="fraud",version="3"} 0.5' in text


def test_reads_happen_in_the_background_at_most_once_per_interval() -> None:
    clock, reads, spawned = Clock(), [], []
    values = [0.1]

    def read() -> list[Row]:
        reads.append(clock.now)
        return [Row("m", 1, "x", "feature", "ks", values[-1])]

    def spawn(refresh: Callable[[], None]) -> None:
        spawned.append(refresh)  # run later, as a thread would

    gauges = DriftGauges(read, refresh_seconds=60, clock=clock, spawn=spawn)
    assert "parity_feature_drift{" not in scrape(gauges)  # first scrape: nothing read yet
    scrape(gauges)  # a read is already under way: no second one
    assert len(spawned) == 1 and reads == []
    spawned.pop()()
    assert 'test="ks",version="1"} 0.1' in scrape(gauges)
    values.append(0.2)
    clock.now += 59
    scrape(gauges)
    assert spawned == []  # still fresh
    clock.now += 1
    scrape(gauges)
    spawned.pop()()
    assert 'test="ks",version="1"} 0.2' in scrape(gauges) and reads == [100.0, 160.0]


def test_a_failed_read_keeps_the_last_values() -> None:
    answers: list[object] = [[Row("m", 1, "x", "feature", "ks", 0.3)], RuntimeError("db down")]

    def read() -> list[Row]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    clock = Clock()
    gauges = DriftGauges(read, refresh_seconds=1, clock=clock, spawn=lambda refresh: refresh())
    scrape(gauges)
    clock.now += 5
    assert 'version="1"} 0.3' in scrape(gauges)  # this scrape's read failed
    assert answers == []
