"""A job runner in its own process, for the multi-process tests: `python -m
tests.jobs.runner_proc REPO (loop|once)`. `loop` runs until the project has no running job and no
queued one that is due; `once` makes one runner pass."""

from __future__ import annotations

import sys

from parity import FeatureStore


def main(argv: list[str]) -> None:
    repo, mode = argv
    with FeatureStore(repo) as store:
        jobs = store.jobs
        if mode == "once":
            jobs.run_pending()
            return

        def idle() -> bool:
            now = store.now()
            return not any(j.status == "running" or j.not_before <= now for j in jobs.active())

        jobs.run(until=idle, slots=1)  # one at a time: the cap is shared by the processes


if __name__ == "__main__":
    main(sys.argv[1:])
