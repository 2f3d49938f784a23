"""The fast lookup's status shortcuts (issue 19: statuses from (event time, values) rows, `PRESENT`
for a whole column at once, one HMGET for one Redis entity) at the edges, against hand-worked
answers: a row exactly at max age and one microsecond past it, a row at the read time and one
microsecond after it, a view without ttl beside one with ttl, a row written before a feature
existed. Each key is looked up alone (Redis: plain HMGET) and with all the others (the script)."""

from __future__ import annotations

from typing import Any

import pytest

from parity import FeatureStore
from parity.online.encoding import OnlineRow, entity_key
from tests.serving.test_fast_lookup import NOW_US, store  # noqa: F401

DAY_US = 86_400_000_000
P, OLD, N, V = "PRESENT", "OUTSIDE_MAX_AGE", "NOT_FOUND", "NULL_VALUE"
# driver id: (event time, stored values, expected (trips, city) values and statuses)
EDGES: dict[int, tuple[int, dict[str, Any], tuple[Any, Any], tuple[str, str]]] = {
    101: (NOW_US - DAY_US, {"trips": 1, "city": "x"}, (1, "x"), (P, P)),  # exactly max age
    102: (NOW_US - DAY_US - 1, {"trips": 2, "city": "y"}, (None, None), (OLD, OLD)),  # 1 µs past
    103: (NOW_US, {"trips": 3, "city": "z"}, (3, "z"), (P, P)),  # at the read time
    104: (NOW_US + 1, {"trips": 4, "city": "w"}, (None, None), (OLD, OLD)),  # 1 µs after it
    105: (NOW_US - 1, {"trips": 5}, (5, None), (P, V)),  # written before `city` existed
    106: (NOW_US - 1, {"trips": None, "city": "n"}, (None, "n"), (V, P)),
    999: (0, {}, (None, None), (N, N)),  # never written
}
RIDERS = {"old": (NOW_US - 3650 * DAY_US, 0.5), "new": (NOW_US + 1, 0.75)}  # no ttl


@pytest.fixture
def edges(store: FeatureStore) -> FeatureStore:  # noqa: F811
    rows = [
        OnlineRow("driver_stats", entity_key(["driver_id"], [i]), ts, ts, values)
        for i, (ts, values, _, _) in EDGES.items()
        if i != 999
    ]
    rows += [
        OnlineRow("rider_stats", entity_key(["rider_id"], [r]), ts, ts, {"score": score})
        for r, (ts, score) in RIDERS.items()
    ]
    store.online_store.write(store.project, rows)
    return store


def test_statuses_at_the_max_age_and_read_time_edges_alone_and_together(
    edges: FeatureStore,
) -> None:
    refs = ["driver_stats:trips", "driver_stats:city"]
    ids = list(EDGES)
    for group in [[i] for i in ids] + [ids, ids[::-1] + ids]:
        got = edges.get_online_features(refs, {"driver_id": group})
        assert got.values["trips"] == [EDGES[i][2][0] for i in group], group
        assert got.values["city"] == [EDGES[i][2][1] for i in group], group
        assert got.statuses["trips"] == [EDGES[i][3][0] for i in group], group
        assert got.statuses["city"] == [EDGES[i][3][1] for i in group], group


def test_a_view_without_ttl_beside_one_with_ttl(edges: FeatureStore) -> None:
    got = edges.get_online_features(
        ["rider_stats:score", "driver_stats:trips"],
        {"rider_id": ["old", "new", "old"], "driver_id": [102, 101, 103]},
    )
    assert got.values["score"] == [0.5, None, 0.5]  # no ttl: ten years old still counts
    assert got.statuses["score"] == [P, OLD, P]  # after the read time: not yet
    assert got.values["trips"] == [None, 1, 3]
    assert got.statuses["trips"] == [OLD, P, P]
