"""In-process get_online_features latency, for bench_online.py; runs under Parity's or Feast's
Python (standard library plus the system under test).

    python online_reads.py CONFIG.json RESULT.json

CONFIG: {"system": "parity" | "feast", "repo": PATH, "ids": [FIRST, COUNT], "seed": N,
"shapes": [{"name", "refs", "entities", "calls", "warmup"}], "dump": {"ids", "refs"} (optional)}.

Opens the store, then per shape: `warmup` untimed calls, then `calls` calls each timed on its own
with perf_counter_ns, every call for `entities` random driver ids (with replacement), given as
a dict of columns: `store.get_online_features(refs, {"driver_id": ids}).to_dict()` for Parity,
`store.get_online_features(features=refs, entity_rows={"driver_id": ids}).to_dict()` for Feast.
Before timing, one call's result is checked: every value present (None counts as missing).
RESULT: per shape the sorted latencies in microseconds, the missing count, and the process CPU
time; with "dump", also the to_dict() of one call for the dump ids (values as JSON gives them).
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any


def open_store(system: str, repo: str) -> Any:
    if system == "parity":
        from parity import FeatureStore

        return FeatureStore(repo)
    from feast import FeatureStore as FeastStore

    return FeastStore(repo_path=repo)


def reader(system: str, store: Any) -> Any:
    if system == "parity":
        return lambda refs, ids: store.get_online_features(refs, {"driver_id": ids}).to_dict()
    return lambda refs, ids: store.get_online_features(
        features=refs, entity_rows={"driver_id": ids}
    ).to_dict()


def missing(result: dict[str, list[Any]], refs: list[str]) -> int:
    names = [ref.split(":", 1)[1] for ref in refs]
    return sum(value is None for name in names for value in result.get(name, [None]))


def main(argv: list[str]) -> int:
    config = json.loads(Path(argv[0]).read_text())
    started = time.perf_counter()
    store = open_store(config["system"], config["repo"])
    read = reader(config["system"], store)
    first, count = config["ids"]
    rng = random.Random(config["seed"])
    out: dict[str, Any] = {"open_s": time.perf_counter() - started, "shapes": {}}
    clock = time.perf_counter_ns
    for shape in config["shapes"]:
        refs, size = shape["refs"], shape["entities"]
        total = shape["warmup"] + shape["calls"]
        calls = [[first + rng.randrange(count) for _ in range(size)] for _ in range(total)]
        gaps = missing(read(refs, calls[0]), refs)
        for ids in calls[: shape["warmup"]]:
            read(refs, ids)
        cpu = time.process_time()
        latencies = []
        for ids in calls[shape["warmup"] :]:
            begin = clock()
            read(refs, ids)
            latencies.append((clock() - begin) / 1_000)
        out["shapes"][shape["name"]] = {
            "us": sorted(latencies),
            "cpu_s": time.process_time() - cpu,
            "missing": gaps,
        }
    dump = config.get("dump")
    if dump:
        out["dump"] = read(dump["refs"], dump["ids"])
    with open(argv[1], "w") as result:
        json.dump(out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
