"""Many lookups of different shapes at once on the feature server's read threads (issue 19: a
SimpleQueue feeds them, answers go back by call_soon_threadsafe, the Redis read uses each thread's
own connection): every request gets its own answer, equal to the old read path's (the oracle of
test_fast_lookup), and bad requests in the mix get their own 4xx."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from parity import FeatureStore
from parity.serving.app import create_app
from tests.serving.test_fast_lookup import CASES, old_bytes, old_read, store  # noqa: F401
from tests.serving.test_overload import post


def _body(refs: Any, entities: dict[str, list[Any]], full: bool) -> bytes:
    body: dict[str, Any] = {"entities": entities, "full_feature_names": full}
    body |= {"feature_service": refs} if isinstance(refs, str) else {"features": refs}
    return json.dumps(body).encode()


def test_concurrent_lookups_of_different_shapes_each_get_their_own_answer(
    store: FeatureStore,  # noqa: F811
) -> None:
    expected = [
        (
            _body(refs, entities, full),
            200,
            json.loads(old_bytes(old_read(store, refs, entities, full))),
        )
        for refs, entities, full in CASES
    ]
    for ids in ([3], [999], [1, 2], [9, 8, 7, 6, 5], list(range(1, 10)) * 30):
        refs = ["driver_stats:trips", "driver_stats:city"]
        want = json.loads(old_bytes(old_read(store, refs, {"driver_id": ids})))
        expected.append((_body(refs, {"driver_id": ids}, False), 200, want))
    refused = [
        (b'{"features":["driver_stats:trips"],"entities":{"driver_id":["1"]}}', 400),
        (b'{"features":["driver_stats:nope"],"entities":{"driver_id":[1]}}', 404),
        (b'{"features":"driver_stats:trips","entities":{"driver_id":[1]}}', 422),
        (b'{"features":["driver_stats:trips"],"entities":{"driver_id":[1]}', 400),
    ]
    statuses = {}
    for body, status in refused:  # what each is answered alone
        statuses[body] = asyncio.run(post(create_app(store), body))[0]
        assert statuses[body] == status, (body, statuses[body])
    app = create_app(store, read_threads=3, max_queue_ms=60_000, max_in_flight=1_000)  # no 503s
    rng = random.Random(19)
    mix: list[tuple[bytes, int, Any]] = [
        rng.choice(expected) if rng.random() < 0.8 else (rng.choice(refused)[0], 0, None)
        for _ in range(300)
    ]

    async def all_at_once() -> list[tuple[int, dict[str, str], Any, float]]:
        return await asyncio.gather(*(post(app, body) for body, _, _ in mix))

    for (body, _, want), (status, _, got, _) in zip(mix, asyncio.run(all_at_once()), strict=True):
        if want is None:
            assert status == statuses[body], (body, status, got)
        else:
            assert status == 200, (body, got)
            assert got == want, body
