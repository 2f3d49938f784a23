"""Background load for bench_windows.py's freshness part, in a process of its own.

    python windows_producer.py REPO SOURCE RATE SECONDS ENTITIES RESULT.json

Appends events to SOURCE's stream at RATE events/s for SECONDS: every 10 ms it publishes the
events due so far (with `parity.ingest.stream.publish`, one pipeline per tick), each for a random
entity in 1..ENTITIES with the current real time, a random device (1..50) and amount. Writes the
number of events sent and the achieved rate to RESULT.json.
"""

from __future__ import annotations

import json
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path


def main(argv: list[str]) -> int:
    repo, source_name, rate, seconds, entities = (
        argv[0],
        argv[1],
        float(argv[2]),
        float(argv[3]),
        int(argv[4]),
    )
    result_path = Path(argv[5])
    import redis

    from parity import FeatureStore
    from parity.ingest.stream import publish

    store = FeatureStore(repo)
    source = next(
        v.source for v in store.list_feature_views() if getattr(v.source, "name", "") == source_name
    )
    client = redis.Redis.from_url(store.config.online.connection_string)
    rng = random.Random(5)
    sent = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        due = int(elapsed * rate) - sent
        if due > 0:
            now = datetime.now(UTC)
            rows = [
                {
                    "account_id": rng.randint(1, entities),
                    "event_timestamp": now,
                    "amount": float(rng.randint(1, 500)),
                    "device": rng.randint(1, 50),
                }
                for _ in range(due)
            ]
            publish(client, source, rows, project=store.project)
            sent += due
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    result_path.write_text(json.dumps({"sent": sent, "seconds": elapsed, "rate": sent / elapsed}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
