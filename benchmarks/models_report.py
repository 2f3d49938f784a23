"""Figures and verdicts of bench_models.py: what one load run measured, and the report's blocks
(server overhead, adaptive batching, against MLServer) with one PASS/MISS line per target.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# Targets of issue 6.
MAX_OVERHEAD_MS = 1.0
MIN_BATCHING_GAIN = 4.0
MIN_MLSERVER_RATIO = 2.0


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


@dataclass
class LoadRun:
    label: str
    clients: int
    rps: float
    p50: float
    p99: float
    max_ms: float
    ok: int
    errors: dict[str, int]
    samples: list[str]
    ramp_s: float  # warm-up, until every connection had an answer
    silent_at_start: int  # connections still without an answer when the timed phase began
    batch_rows: float | None = None  # mean rows per model call in the timed phase (Parity only)
    answered: int = 0  # every answer, warm-up included (the server's work in the whole run)

    def line(self) -> str:
        errors = sum(self.errors.values())
        text = (
            f"{self.rps:,.0f} req/s, p50 {self.p50:.2f} ms, p99 {self.p99:.2f} ms, "
            f"max {self.max_ms:.1f} ms, {self.ok:,} ok"
        )
        if self.batch_rows is not None:
            text += f", {self.batch_rows:.1f} rows/batch"
        text += f"; warm-up {self.ramp_s:.1f} s"
        if self.silent_at_start:
            text += f" ({self.silent_at_start} connections still unanswered)"
        return text + (f", {errors} ERRORS" if errors else "")


@dataclass
class InProcess:
    """Milliseconds of LoadedModel.predict (and of the library's own predict), p50 unless said."""

    lr_p50: float
    lr_p99: float
    lr_native_p50: float
    rf_1_p50: float
    rf_64_p50: float
    rf_native_1_p50: float


@dataclass
class Results:
    inproc: InProcess
    sequential: dict[str, LoadRun] = field(default_factory=dict)
    batching: dict[str, LoadRun] = field(default_factory=dict)
    versus: dict[str, LoadRun] = field(default_factory=dict)
    mlserver_note: str = ""
    mlserver_version: str = ""


def _rows(run: LoadRun) -> str:
    return f"{run.batch_rows:.1f}" if run.batch_rows is not None else "-"


def overhead_report(results: Results, _args: Any) -> tuple[list[str], list[str]]:
    inproc, seq = results.inproc, results.sequential
    lines = [
        "",
        "1. server overhead: lr (LogisticRegression, 8 features), 1-row requests, 1 sequential "
        "keep-alive client",
        f"  in-process LoadedModel.predict   p50 {inproc.lr_p50:.3f} ms, p99 {inproc.lr_p99:.3f} ms"
        f" (sklearn's own predict p50 {inproc.lr_native_p50:.3f} ms)",
    ]
    for model, note in (("lr", "batching on, max 64 rows / 5 ms"), ("lr_off", "batching off")):
        run = seq[model]
        lines.append(
            f"  POST /v2/models/{model}/infer{' ' * (7 - len(model))}p50 {run.p50:.3f} ms, "
            f"p99 {run.p99:.3f} ms, {run.rps:,.0f} req/s ({note})"
        )
    overhead = seq["lr"].p50 - inproc.lr_p50
    overhead_off = seq["lr_off"].p50 - inproc.lr_p50
    lines.append(
        f"  overhead = HTTP p50 - in-process p50 = {overhead:.3f} ms (lr), "
        f"{overhead_off:.3f} ms (lr_off); it includes the client's share and the loopback"
    )
    target = (
        f"{verdict(overhead < MAX_OVERHEAD_MS)}  server overhead p50 {overhead:.3f} ms < "
        f"{MAX_OVERHEAD_MS:g} ms: overhead/target {overhead / MAX_OVERHEAD_MS:.2f}"
    )
    return lines, [target]


def batching_report(results: Results, args: Any) -> tuple[list[str], list[str]]:
    inproc, runs = results.inproc, results.batching
    model_time = inproc.rf_64_p50
    lines = [
        "",
        f"2. adaptive batching: rf (RandomForestClassifier, {args.rf_trees} trees, depth 8), "
        f"{args.clients} clients x 1-row requests, {args.duration:g} s each, one server",
        f"  model time, in-process LoadedModel.predict p50: 1 row {inproc.rf_1_p50:.2f} ms, "
        f"64 rows {model_time:.2f} ms (64 rows / 1 row = {model_time / inproc.rf_1_p50:.2f}; "
        f"sklearn's own predict, 1 row, {inproc.rf_native_1_p50:.2f} ms)",
        f"  {'model':<8}{'settings':<40}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'errors':>8}{'rows/batch':>12}",
    ]
    settings = {
        "rf_on": f"max_batch_size 64, max_latency_ms {args.max_latency_ms:g}",
        "rf_off": "max_batch_size 1 (batching off)",
    }
    for model in ("rf_on", "rf_off"):
        run = runs[model]
        lines.append(
            f"  {model:<8}{settings[model]:<40}{run.rps:>9,.0f}{run.p50:>9.2f}{run.p99:>9.2f}"
            f"{run.max_ms:>9.1f}{sum(run.errors.values()):>8}{_rows(run):>12}"
        )
    on, off = runs["rf_on"], runs["rf_off"]
    gain = on.rps / off.rps if off.rps else float("inf")
    bound = args.max_latency_ms + model_time
    targets = [
        f"{verdict(gain >= MIN_BATCHING_GAIN)}  batching throughput on/off {gain:.1f}x >= "
        f"{MIN_BATCHING_GAIN:g}x ({on.rps:,.0f} vs {off.rps:,.0f} req/s)",
        f"{verdict(on.p99 < bound)}  batching p99(on) {on.p99:.2f} ms < max_latency_ms + model "
        f"time = {args.max_latency_ms:g} + {model_time:.2f} = {bound:.2f} ms: p99/bound "
        f"{on.p99 / bound:.2f}",
        f"info  Little's law: {on.clients} clients / {on.rps:,.0f} req/s = "
        f"{1000 * on.clients / on.rps:.1f} ms mean latency; a p99 under {bound:.2f} ms at "
        f"{on.clients} clients needs over {1000 * on.clients / bound:,.0f} req/s",
    ]
    return lines, targets


def versus_report(results: Results, args: Any) -> tuple[list[str], list[str]]:
    runs = results.versus
    peer = f"MLServer {results.mlserver_version}" if results.mlserver_version else "MLServer"
    lines = [
        "",
        f"3. against {peer}: lr (the LogisticRegression of part 1; a joblib file for MLServer), "
        f"{args.clients} clients x 1-row requests, {args.duration:g} s each, one server at a time",
        f"  {'server':<18}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}"
        f"{'rows/batch':>12}{'parity lr/this':>16}",
    ]
    parity = runs["parity lr"]
    for label, run in runs.items():
        ratio = parity.rps / run.rps if run.rps else float("inf")
        lines.append(
            f"  {label:<18}{run.rps:>9,.0f}{run.p50:>9.2f}{run.p99:>9.2f}{run.max_ms:>9.1f}"
            f"{sum(run.errors.values()):>8}{_rows(run):>12}{ratio:>15.2f}x"
        )
    lines.append("  parity lr: batching on (Parity's default, 64 rows / 5 ms); lr_off: off;")
    lines.append("  MLServer's adaptive batching is off by default (max_batch_size 0), left off")
    peers = {label: run for label, run in runs.items() if label.startswith("mlserver")}
    if not peers:
        return lines, [f"----  parity vs MLServer: not measured: {results.mlserver_note}"]
    best_label, best = max(peers.items(), key=lambda item: item[1].rps)
    ratio = parity.rps / best.rps if best.rps else float("inf")
    ok = ratio >= MIN_MLSERVER_RATIO and parity.p99 <= best.p99
    targets = [
        f"{verdict(ok)}  parity lr {parity.rps:,.0f} req/s >= {MIN_MLSERVER_RATIO:g}x the best "
        f"MLServer ({best_label}, {best.rps:,.0f} req/s): {ratio:.2f}x; at equal or lower p99: "
        f"{parity.p99:.2f} vs {best.p99:.2f} ms (parity/mlserver {parity.p99 / best.p99:.2f})"
    ]
    for label, run in peers.items():
        if label != best_label:
            targets.append(
                f"info  vs {label}: {parity.rps / run.rps:.2f}x req/s, p99 {parity.p99:.2f} vs "
                f"{run.p99:.2f} ms"
            )
    off = runs["parity lr_off"]
    targets.append(
        f"info  parity lr_off (no batching) vs {best_label}: {off.rps / best.rps:.2f}x req/s, "
        f"p99 {off.p99:.2f} vs {best.p99:.2f} ms"
    )
    if results.mlserver_note:
        targets.append(f"info  {results.mlserver_note}")
    return lines, targets


def errors_report(results: Results) -> list[str]:
    runs = [*results.sequential.values(), *results.batching.values(), *results.versus.values()]
    bad = {run.label: run.errors for run in runs if run.errors}
    if not bad:
        return [f"PASS  no errors: every answer 200 over {len(runs)} loads (warm-ups included)"]
    return [f"MISS  answers other than 200: {json.dumps(bad)}"] + [
        f"      {run.label}: {sample}" for run in runs for sample in run.samples
    ]


def report(results: Results, args: Any) -> list[str]:
    lines: list[str] = []
    targets: list[str] = []
    for part in (overhead_report, batching_report, versus_report):
        block, checks = part(results, args)
        lines += block
        targets += checks
    targets += errors_report(results)
    return [*lines, "", "targets (issue 6):", *("  " + line for line in targets)]
