"""Shared by the streaming prediction tests: a feature repo with a stream source, a windowed view
and an on-demand ratio, a model whose score anyone can compute by hand, and event helpers.
(No tests here: pickled models must import this module in worker subprocesses.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from parity import FeatureStore
from tests.conftest import write_repo

SERVICE = "scoring"
FEATURES = ["amount_count_5m", "amount_sum_1h", "amount_to_mean"]
DEFS = """
    from datetime import timedelta
    from parity import (Aggregation, Entity, FeatureService, FeatureView, Field, FileSource,
                        Float64, Int64, RequestSource, StreamSource, on_demand_feature_view)

    account = Entity(name="account", join_keys=["account_id"])
    txns = StreamSource(
        name="txns", stream="{stream}", lateness=timedelta(hours=1),
        batch_source=FileSource(path="data/txns/"),
    )
    velocity = FeatureView(
        name="velocity", entities=[account],
        schema=[Field(name="amount", dtype=Float64)],
        source=txns, tile_interval=timedelta(minutes=1),
        aggregations=[
            Aggregation(column="amount", function="count", window=timedelta(minutes=5)),
            Aggregation(column="amount", function="sum", window=timedelta(hours=1)),
            Aggregation(column="amount", function="mean", window=timedelta(hours=1)),
        ],
    )
    txn = RequestSource(name="txn", schema=[Field(name="amount", dtype=Float64)])

    @on_demand_feature_view(
        sources=[velocity[["amount_mean_1h"]], txn],
        schema=[Field(name="amount_to_mean", dtype=Float64)],
    )
    def ratio(row):
        mean = row["amount_mean_1h"]
        return {{"amount_to_mean": row["amount"] / mean if mean else None}}

    scoring = FeatureService(
        name="scoring", features=[velocity[["amount_count_5m", "amount_sum_1h"]], ratio]
    )
"""


class VelocityModel:
    """count_5m + sum_1h / 100 + ratio / 10 + amount / 1000 (a missing feature counts -1)."""

    def predict(self, frame: Any) -> Any:
        def column(name: str) -> Any:
            return pd.to_numeric(frame[name], errors="coerce").fillna(-1).to_numpy(float)

        return (
            column("amount_count_5m")
            + column("amount_sum_1h") / 100
            + column("amount_to_mean") / 10
            + column("amount") / 1000
        )


def make_repo(root: Path, extra: str = "") -> tuple[Path, str]:
    """A repo whose stream key is unique to the test; returns (root, stream key)."""
    stream = f"parity:test:{uuid.uuid4().hex}"
    project = f"p{uuid.uuid4().hex[:10]}"
    files = {"defs.py": DEFS.format(stream=stream)}
    return write_repo(
        root, files, project=project, extra=f"models: {{trusted: true}}\n{extra}"
    ), stream


def register(store: FeatureStore) -> None:
    sample = pd.DataFrame(
        {"amount_count_5m": [1.0], "amount_sum_1h": [2.0], "amount_to_mean": [1.0], "amount": [3.0]}
    )
    store.models.register_model(
        "velo",
        VelocityModel(),
        flavor="pyfunc",
        feature_service=SERVICE,
        sample_input=sample,
        alias="champion",
    )


def expected_scores(store: FeatureStore, events: Sequence[dict[str, Any]]) -> list[float]:
    """The oracle: features from get_historical_features at each event's own time (the rule of
    docs/lifecycle.md: a score includes its event, as a training row does), then the model's
    formula by hand."""
    frame = pd.DataFrame(
        {
            "account_id": [e["account_id"] for e in events],
            "amount": [e["amount"] for e in events],
            "event_timestamp": [e["event_timestamp"] for e in events],
        }
    )
    offline = store.get_historical_features(frame, SERVICE).to_pandas()
    return [float(v) for v in VelocityModel().predict(offline)]


def offline_features(
    store: FeatureStore, events: Sequence[dict[str, Any]], at: Sequence[datetime]
) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "account_id": [e["account_id"] for e in events],
            "amount": [e["amount"] for e in events],
            "event_timestamp": list(at),
        }
    )
    return store.get_historical_features(frame, SERVICE).to_pandas()


def history(now: datetime, accounts: Sequence[int], per_account: int) -> list[dict[str, Any]]:
    """Events of each account over the 30 minutes before `now`, amounts 1, 2, 3, ..."""
    return [
        {
            "account_id": account,
            "event_timestamp": now - timedelta(minutes=30) + timedelta(seconds=97 * i + account),
            "amount": float(i + account),
        }
        for account in accounts
        for i in range(per_account)
    ]


def close(got: Sequence[float], want: Sequence[float]) -> bool:
    return bool(np.allclose(np.asarray(got), np.asarray(want), rtol=1e-9, atol=1e-9))


@contextmanager
def stream_world(
    online: str, root: Path, redis_url: str, sink_prefix: str, now: datetime
) -> Iterator[dict[str, Any]]:
    """The repo above on the `online` store ("sqlite", "redis", or "redis_cluster" with
    `redis_url` the cluster's), applied, with the model registered; its stream, an output
    stream named `sink_prefix` + the stream's id (on a cluster `{<stream>}:scores`, in the
    stream's slot, as the publish script needs), and a Redis client. Every key the test made is
    deleted afterwards."""
    import redis

    from parity.online.cluster_router import cluster_client

    extra = f"online:\n  type: {online}\n  connection_string: '{redis_url}'\n"
    repo, stream = make_repo(root, extra if online != "sqlite" else "")
    store = FeatureStore(repo, clock=lambda: now)
    store.apply()
    register(store)
    if online == "redis_cluster":
        client = cluster_client(redis_url)
        sink = f"{{{stream}}}:scores"
    else:
        client = redis.Redis.from_url(redis_url)
        sink = f"{sink_prefix}{stream.rsplit(':', 1)[1]}"
    try:
        yield {"store": store, "client": client, "stream": stream, "sink": sink}
    finally:
        client.delete(stream, sink, f"{sink}:dead")
        for key in client.scan_iter(match=f"parity:v1:{store.project}:*", count=1000):
            client.delete(key)
        client.close()
