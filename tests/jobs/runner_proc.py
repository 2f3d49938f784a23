"""A job runner in its own process, for the multi-process tests: `python -m
tests.jobs.runner_proc REPO (loop|once)`. `loop` runs until the project has no running job and no
queued one that is due; `once` makes one runner pass. With PARITY_TEST_GO set, the runner writes
`<that path>.<pid>` once it is ready and waits for the file itself before it starts."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from parity import FeatureStore


def main(argv: list[str]) -> None:
    repo, mode = argv
    with FeatureStore(repo) as store:
        jobs = store.jobs
        jobs.runner().warm()  # imports and connections done before the start
        go = os.environ.get("PARITY_TEST_GO")
        if go:
            Path(f"{go}.{os.getpid()}").touch()
            while not Path(go).exists():
                time.sleep(0.01)
        if mode == "once":
            jobs.run_pending()
            return

        def idle() -> bool:
            now = store.now()
            return not any(j.status == "running" or j.not_before <= now for j in jobs.active())

        jobs.run(until=idle, slots=1)  # one at a time: the cap is shared by the processes


if __name__ == "__main__":
    main(sys.argv[1:])
