"""Run one command; write its wall time, CPU time, exit status and peak RSS as JSON to a file.

    python measured_run.py RESULT.json TIMEOUT_S COMMAND [ARG ...]    (TIMEOUT_S 0: no limit)

A small launcher, because Linux starts a child's peak-RSS counter (ru_maxrss) at the RSS of the
process that spawned it: spawned straight from the benchmark, every child would report at least
the benchmark's own memory. This process stays small (standard library only), spawns the command
with posix_spawn, reaps it with os.wait4, and kills it with SIGKILL when the time limit passes.
Output streams are inherited.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time


def main(argv: list[str]) -> int:
    result_path, timeout, command = argv[0], float(argv[1]), argv[2:]
    start = time.perf_counter()
    pid = os.posix_spawnp(command[0], command, os.environ)
    timed_out = False

    def on_alarm(_signum: int, _frame: object) -> None:
        nonlocal timed_out
        timed_out = True
        os.kill(pid, signal.SIGKILL)

    if timeout > 0:
        signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - start
    signal.setitimer(signal.ITIMER_REAL, 0)
    maxrss_kib = usage.ru_maxrss // 1024 if sys.platform == "darwin" else usage.ru_maxrss
    result = {
        "seconds": seconds,
        "rc": os.waitstatus_to_exitcode(status),
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "maxrss_kib": maxrss_kib,
        "timed_out": timed_out,
    }
    with open(result_path, "w") as out:
        json.dump(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
