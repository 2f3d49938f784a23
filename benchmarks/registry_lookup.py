"""Time cached feature-view lookups by name in one process; print the figures as one JSON line.

Run by the registry benchmark with Parity's interpreter (`parity REPO`: `store.get_feature_view`
and, as the practical limit, a plain dict lookup of the same names) or with the Feast venv's
interpreter (`feast REPO`: Feast's `store.get_feature_view(name, allow_registry_cache=True)`).
Each figure: `timeit` of a loop over every view name (shuffled), divided by the calls made.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import timeit
from collections.abc import Callable
from typing import Any

REPEATS = 7


def per_call_seconds(stmt: str, namespace: dict[str, Any], calls_per_loop: int) -> list[float]:
    """Per-call seconds of each of REPEATS timings, each at least 0.2 s long."""
    timer = timeit.Timer(stmt, globals=namespace)
    number, _ = timer.autorange()
    return [total / (number * calls_per_loop) for total in timer.repeat(REPEATS, number)]


def summary(samples: list[float]) -> dict[str, float]:
    return {"min_us": min(samples) * 1e6, "median_us": statistics.median(samples) * 1e6}


def time_getter(get: Callable[[str], object], names: list[str]) -> dict[str, float]:
    for name in names:  # warm up: first call loads the registry into the cache
        get(name)
    samples = per_call_seconds(
        "for name in names: get(name)", {"get": get, "names": names}, len(names)
    )
    return summary(samples)


def time_dict(table: dict[str, object], names: list[str]) -> dict[str, float]:
    namespace = {"table": table, "names": names}
    return summary(per_call_seconds("for name in names: table[name]", namespace, len(names)))


def shuffled(names: list[str]) -> list[str]:
    names = sorted(names)
    random.Random(0).shuffle(names)
    return names


def parity_figures(repo: str) -> dict[str, Any]:
    from parity import FeatureStore

    store = FeatureStore(repo)
    views = dict(store.registry.catalog.feature_views)
    names = shuffled(list(views))
    return {
        "views": len(views),
        "lookup": time_getter(store.get_feature_view, names),
        "dict": time_dict(views, names),
        "reloads": store.registry.reloads,
    }


def feast_figures(repo: str) -> dict[str, Any]:
    from feast import FeatureStore

    store = FeatureStore(repo_path=repo)
    names = shuffled([view.name for view in store.list_feature_views()])

    def get(name: str) -> object:
        return store.get_feature_view(name, allow_registry_cache=True)

    return {"views": len(names), "lookup": time_getter(get, names)}


def main(argv: list[str]) -> int:
    kind, repo = argv
    figures = parity_figures(repo) if kind == "parity" else feast_figures(repo)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
