"""Drift (issue 13): Parity's drift report over a prediction log against Evidently's
DataDriftPreset on the same data, in one run.

    .venv/bin/python benchmarks/bench_drift.py [--rows 1000000] [--features 20]
        [--reference-rows 100000] [--repeats 3] [--no-evidently]

The data (drift_data.py, cached under benchmarks/.work/drift/): a reference training dataset
(Parquet) and a current window of --rows predictions written as a real prediction log by
ParquetLogSink, with a known mix of unshifted, slightly and clearly shifted columns. Parity
(drift_parity.py) profiles the reference once (timed apart), then runs the drift report over the
log window: registry lookups, stored profiles, DuckDB read of the log, every column's default
test, history rows. Evidently (drift_evidently.py, in its own venv benchmarks/.venv-evidently,
created on first run) reads the same Parquet files into pandas and runs DataDriftPreset.

Every step runs in its own process started by measured_run.py, which reports the process's peak
RSS (ru_maxrss, the same way for both tools: it counts native memory, DuckDB's and Arrow's
included, that tracemalloc would miss). Run times are measured inside the processes around the
work itself (imports excluded); process wall times, imports included, are printed beside them.

Prints times, the ratio to the 3 s limit, the speedup and peak-memory ratio against Evidently,
each column's verdict from both tools side by side with the reason for every difference, and
both tools' PSI per column. Exits 0 even when a target is missed; non-zero only when something
failed to run. See benchmarks/README.md and docs/monitoring.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peer_venv import install, run_logged, tail

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
WORK = BENCH_DIR / ".work" / "drift"
PARITY_PYTHON = ROOT / ".venv" / "bin" / "python"
MEASURED_RUN = BENCH_DIR / "measured_run.py"
EVIDENTLY_VENV = BENCH_DIR / ".venv-evidently"
EVIDENTLY_PYTHON = EVIDENTLY_VENV / "bin" / "python"
# The version this benchmark was written against; pandas 3 removed a helper Evidently 0.7 imports.
EVIDENTLY_PACKAGES = ("evidently==0.7.23", "pandas<3", "pyarrow")

MAX_RUN_S = 3.0  # the limit for 1,000,000 rows x 20 features
MIN_SPEEDUP = 10.0
MAX_MEMORY_RATIO = 0.5


class BenchFailure(Exception):
    """Something the benchmark needs failed to run."""


def log(text: str = "") -> None:
    print(text, flush=True)


def load_average() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass
class Measured:
    """One process: its wall time (spawn to exit), CPU time, peak RSS, and what it wrote."""

    seconds: float
    cpu_s: float
    peak_mib: float
    result: dict[str, Any]


def measured(
    command: list[str | Path],
    output: Path,
    what: str,
    timeout: float,
    env: dict[str, str] | None = None,
) -> Measured:
    """Run `command`, which writes its result to `output`, through measured_run.py."""
    with tempfile.TemporaryDirectory() as folder:
        figures = Path(folder) / "figures.json"
        launcher = [sys.executable, "-S", MEASURED_RUN, figures, timeout, *command]
        done = subprocess.run([str(c) for c in launcher], capture_output=True, env=env, check=False)
        run = json.loads(figures.read_text()) if figures.exists() else None
        if run is None or run["rc"] != 0 or not output.exists():
            why = "over the time limit" if run and run["timed_out"] else f"exit {run and run['rc']}"
            tail = "\n".join(done.stderr.decode(errors="replace").strip().splitlines()[-15:])
            raise BenchFailure(f"{what} failed ({why}):\n{tail}")
    return Measured(
        run["seconds"], run["cpu_s"], run["maxrss_kib"] / 1024, json.loads(output.read_text())
    )


# --- set-up ------------------------------------------------------------------------------------


def ensure_data(rows: int, features: int, reference_rows: int, seed: int) -> Path:
    """The generated data for these parameters, reused when a complete copy is there."""
    folder = WORK / f"data-r{rows}-f{features}-ref{reference_rows}-s{seed}"
    manifest = folder / "manifest.json"
    if manifest.exists() and json.loads(manifest.read_text()).get("format") == data_format():
        log(f"  data: reusing {folder.relative_to(ROOT)}")
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    log(f"  data: generating {rows:,} logged rows x {features} features (ParquetLogSink) ...")
    command = [
        PARITY_PYTHON,
        BENCH_DIR / "drift_data.py",
        folder,
        "--rows",
        rows,
        "--features",
        features,
        "--reference-rows",
        reference_rows,
        "--seed",
        seed,
    ]
    done = subprocess.run([str(c) for c in command], check=False)
    if done.returncode != 0 or not manifest.exists():
        raise BenchFailure("drift_data.py failed; see its output above")
    return folder


def data_format() -> int:
    """drift_data.DATA_FORMAT, read from its source (importing it would load numpy here)."""
    found = re.search(r"^DATA_FORMAT = (\d+)", (BENCH_DIR / "drift_data.py").read_text(), re.M)
    if found is None:
        raise BenchFailure("drift_data.py has no DATA_FORMAT line")
    return int(found.group(1))


def ensure_evidently(logs: Path) -> str:
    """benchmarks/.venv-evidently with EVIDENTLY_PACKAGES; returns Evidently's version."""
    probe = "import evidently, pandas, pyarrow; print(evidently.__version__, pandas.__version__)"
    ok, text = run_logged([EVIDENTLY_PYTHON, "-c", probe], logs / "evidently-probe.log", 300)
    wanted_version = EVIDENTLY_PACKAGES[0].split("==")[1]
    if ok and text.split()[-2:][0] == wanted_version:
        return wanted_version
    install(EVIDENTLY_VENV, list(EVIDENTLY_PACKAGES), logs, "evidently", BenchFailure)
    ok, text = run_logged([EVIDENTLY_PYTHON, "-c", probe], logs / "evidently-probe.log", 300)
    if not ok:
        raise BenchFailure(f"evidently does not import after installing: {tail(text)}")
    return text.split()[-2]


def evidently_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["VIRTUAL_ENV"] = str(EVIDENTLY_VENV)
    return env


# --- the runs ----------------------------------------------------------------------------------


@dataclass
class Runs:
    profile: Measured
    parity: list[Measured]
    parity_psi: Measured
    evidently: Measured | None
    evidently_psi: Measured | None
    evidently_version: str | None


def run_all(data: Path, repeats: int, with_evidently: bool, timeout: float) -> Runs:
    work, results = WORK / "run", WORK / "results"
    results.mkdir(parents=True, exist_ok=True)
    worker = BENCH_DIR / "drift_parity.py"
    log("  parity: reference profile (once) ...")
    out = results / "profile.json"
    profile = measured(
        [PARITY_PYTHON, worker, "profile", data, work, out], out, "parity profile", timeout
    )
    parity = []
    for attempt in range(repeats):
        log(f"  parity: drift report, run {attempt + 1} of {repeats} ...")
        out = results / f"parity-{attempt}.json"
        parity.append(
            measured(
                [PARITY_PYTHON, worker, "drift", data, work, out], out, "parity drift", timeout
            )
        )
    log("  parity: PSI for every column (not timed in the comparison) ...")
    out = results / "parity-psi.json"
    parity_psi = measured(
        [PARITY_PYTHON, worker, "drift", data, work, out, "--psi"],
        out,
        "parity drift --psi",
        timeout,
    )
    evidently = evidently_psi = version = None
    if with_evidently:
        version = ensure_evidently(WORK / "logs")
        peer = BENCH_DIR / "drift_evidently.py"
        log(f"  evidently {version}: DataDriftPreset (a minute or more) ...")
        out = results / "evidently.json"
        evidently = measured(
            [EVIDENTLY_PYTHON, peer, data, out],
            out,
            "evidently DataDriftPreset",
            timeout,
            evidently_env(),
        )
        log("  evidently: DataDriftPreset(method='psi') (not timed in the comparison) ...")
        out = results / "evidently-psi.json"
        evidently_psi = measured(
            [EVIDENTLY_PYTHON, peer, data, out, "--method", "psi"],
            out,
            "evidently psi",
            timeout,
            evidently_env(),
        )
    return Runs(profile, parity, parity_psi, evidently, evidently_psi, version)


# --- the report --------------------------------------------------------------------------------


def verdict(ok: bool, text: str) -> str:
    return f"{'PASS' if ok else 'MISS'}  {text}"


def medianrun_logged(runs: list[Measured]) -> Measured:
    ordered = sorted(runs, key=lambda r: r.result["run_s"])
    return ordered[len(ordered) // 2]


def _row(label: str, work_s: float, work_cpu: float | None, m: Measured, extra: str = "") -> None:
    cpu = "-" if work_cpu is None else f"{work_cpu:.2f}"
    log(
        f"{label:<42} {work_s:>7.2f} {cpu:>8} {m.seconds:>9.2f} {m.cpu_s:>8.2f} "
        f"{m.peak_mib:>8.0f}{extra}"
    )


def print_times(runs: Runs) -> None:
    """work: the step itself, timed inside its process; process: spawn to exit, imports and
    interpreter start included; cpu: every thread's CPU seconds; peak: the process's ru_maxrss."""
    log(
        f"\n{'step':<42} {'work s':>7} {'work cpu':>8} {'process s':>9} {'proc cpu':>8} "
        f"{'peak MiB':>8}"
    )
    prof = runs.profile
    _row("parity: reference profile (once, apart)", prof.result["total_s"], None, prof)
    p = medianrun_logged(runs.parity)
    spread = ", ".join(f"{r.result['run_s']:.2f}" for r in runs.parity)
    spread += f"; best {min(r.result['run_s'] for r in runs.parity):.2f}"
    label = f"parity: drift report (median of {len(runs.parity)})"
    _row(label, p.result["run_s"], p.result["run_cpu_s"], p, f"   runs: {spread} s")
    e = runs.evidently
    if e is not None:
        r = e.result
        extra = f"   load {r['load_s']:.2f} + report {r['report_s']:.2f} s"
        work_cpu = r["load_cpu_s"] + r["report_cpu_s"]
        _row("evidently: load + DataDriftPreset", r["load_s"] + r["report_s"], work_cpu, e, extra)
    _row(
        "parity: PSI run (not compared)",
        runs.parity_psi.result["run_s"],
        runs.parity_psi.result["run_cpu_s"],
        runs.parity_psi,
    )
    if runs.evidently_psi is not None:
        r = runs.evidently_psi.result
        _row(
            "evidently: PSI report (not compared)",
            r["report_s"],
            r["report_cpu_s"],
            runs.evidently_psi,
        )


def targets(runs: Runs, agree: int, total: int) -> list[str]:
    p = medianrun_logged(runs.parity)
    run_s = p.result["run_s"]
    out = [
        verdict(
            run_s <= MAX_RUN_S,
            f"parity drift report {run_s:.2f} s <= {MAX_RUN_S:.0f} s "
            f"({run_s / MAX_RUN_S:.0%} of the limit)",
        )
    ]
    e = runs.evidently
    if e is None:
        return [*out, "SKIP  speedup, memory and verdicts against Evidently (--no-evidently)"]
    end_to_end = e.result["load_s"] + e.result["report_s"]
    speedup, report_only = end_to_end / run_s, e.result["report_s"] / run_s
    ratio = p.peak_mib / e.peak_mib
    out.append(
        verdict(
            speedup >= MIN_SPEEDUP,
            f"speedup vs Evidently {speedup:.1f}x >= "
            f"{MIN_SPEEDUP:.0f}x (same files to verdicts; against Evidently's report "
            f"step alone, its input already in pandas: {report_only:.1f}x)",
        )
    )
    out.append(
        verdict(
            ratio <= MAX_MEMORY_RATIO,
            f"peak memory {p.peak_mib:.0f} MiB / "
            f"{e.peak_mib:.0f} MiB = {ratio:.2f} <= {MAX_MEMORY_RATIO}",
        )
    )
    out.append(verdict(agree == total, f"default verdicts agree on {agree} of {total} columns"))
    return out


EVIDENTLY_TESTS = {
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensen_shannon",
    "PSI": "psi",
    "K-S p_value": "ks",
    "chi-square p_value": "chi_squared",
    "Z-test p_value": "z_test",
}
JS_BASE_RATIO = 1 / math.sqrt(math.log(2))  # JS distance in bits / in nats


def score_note(test: str, ev: float | None, pa: float | None, column: dict[str, Any]) -> str:
    """Why two scores of the same test differ, from the two methods (not from the data)."""
    if ev is None or pa is None or not (math.isfinite(ev) and math.isfinite(pa)):
        return "a score is missing"
    if ev != 0 and abs(pa / ev - JS_BASE_RATIO) < 0.03 and test == "jensen_shannon":
        return (
            "JS in bits (log base 2) vs Evidently's scipy default (natural log): ratio "
            f"{pa / ev:.3f} = 1/sqrt(ln 2)"
        )
    if test == "wasserstein":
        return (
            "W1 from the stored profile's quantile function (1,001 levels) vs Evidently's exact "
            "W1 on the raw reference"
        )
    if test == "jensen_shannon":
        return (
            "both on exact value counts"
            if abs(pa - ev) <= 1e-9 + 1e-6 * abs(ev)
            else ("category counts differ (top-K + other in the profile)")
        )
    return ""


def side_by_side(
    ev_run: dict[str, Any], pa_run: dict[str, Any], manifest: dict[str, Any]
) -> tuple[int, int]:
    log("\nPer column, default tests (threshold 0.1 for both tools' distance tests):")
    header = (
        f"{'column':<18} {'expected':<8} {'evidently test':<15} {'score':>8} {'drift':<5} "
        f"{'parity test':<15} {'score':>8} {'drift':<5} {'agree':<5} note"
    )
    log(header)
    log("-" * len(header))
    agree = total = 0
    for spec in manifest["columns"]:
        name = spec["name"]
        ev, pa = ev_run["columns"].get(name), pa_run["columns"].get(name)
        if ev is None or pa is None:
            log(f"{name:<18} missing in {'evidently' if ev is None else 'parity'}")
            continue
        ev_test = EVIDENTLY_TESTS.get(ev["test"], ev["test"])
        pa_score = (
            pa["p_value"] if pa["test"] in ("ks", "chi_squared", "z_test") else pa["statistic"]
        )
        same = bool(ev["drift"]) == bool(pa["drifted"])
        agree, total = agree + same, total + 1
        note = "" if ev_test == pa["test"] else f"tests differ ({ev['test']} vs {pa['test']}); "
        note += score_note(pa["test"], ev["score"], pa_score, spec)
        if not same:
            note = f"VERDICTS DIFFER: {note}"
        log(
            f"{name:<18} {'drift' if spec['drift'] else 'none':<8} {ev_test:<15} "
            f"{_num(ev['score']):>8} {_yes(ev['drift']):<5} {pa['test']:<15} {_num(pa_score):>8} "
            f"{_yes(pa['drifted']):<5} {'yes' if same else 'NO':<5} {note}"
        )
    ds_e, ds_p = ev_run.get("dataset") or {}, pa_run["dataset"]
    per_column = sum(1 for c in ev_run["columns"].values() if c.get("drift"))
    log(
        f"{'dataset':<18} share of drifted columns: evidently {_num(ds_e.get('share'))} "
        f"(DriftedColumnsCount {ds_e.get('count')}, its ValueDrift verdicts {per_column}), "
        f"parity {_num(ds_p['share'])}; dataset drift: evidently "
        f"{_yes(ev_run.get('dataset_drift'))}, parity {_yes(ds_p['drifted'])}"
    )
    if ds_e.get("count") is not None and int(ds_e["count"]) != per_column:
        suspects = [c["name"] for c in manifest["columns"] if "+-inf in the reference" in c["note"]]
        log(
            "  note: Evidently's DriftedColumnsCount disagrees with its own ValueDrift verdicts: "
            "its dataset metric replaces +-inf by NaN only in columns that hold a null, so a "
            "column with +-inf and no null gets a NaN score and counts as not drifted "
            f"(here: {', '.join(suspects) or 'a column with +-inf'})."
        )
    return agree, total


def psi_table(
    ev_psi: dict[str, Any] | None, pa_psi: dict[str, Any], manifest: dict[str, Any]
) -> None:
    """Both tools' PSI per column, and Parity's PSI computed with Evidently's bins and empty-bin
    fill, which shows that the two rules, not the data handling, make the difference."""
    log("\nPSI per column. Parity: the reference deciles stored in the profile (one bin per value")
    log("for categories and numbers with <= 20 values), out-of-range mass in the edge bins, an")
    log("empty bin counted as a 1e-4 share. Evidently: Sturges equal-width bins over reference +")
    log("current for numbers with > 20 reference values (its n_bins is ignored: evidently#1400),")
    log("one bin per value otherwise; an empty bin becomes 1e-4, or the sample's smallest share /")
    log("1e6 when that is <= 1e-4 (so the result moves with the data: evidently#334).")
    log("'parity, evidently's rule': Parity's profile and window with Evidently's bins and fill.")
    header = (
        f"{'column':<18} {'evidently':>10} {'thr':>4} {'drift':<5} {'parity':>10} {'thr':>4} "
        f"{'drift':<5} {'parity, evidently rule':>22}  note"
    )
    log(header)
    log("-" * len(header))
    same_rule = pa_psi.get("evidently_rule_psi", {})
    for spec in manifest["columns"]:
        name = spec["name"]
        pa = pa_psi["columns"][name]
        ev = (ev_psi or {"columns": {}})["columns"].get(name, {})
        log(
            f"{name:<18} {_num(ev.get('score')):>10} {_num(ev.get('threshold'), 2):>4} "
            f"{_yes(ev.get('drift')):<5} {_num(pa['statistic']):>10} "
            f"{_num(pa['threshold'], 2):>4} {_yes(pa['drifted']):<5} "
            f"{_num(same_rule.get(name)):>22}  {psi_note(ev, pa, same_rule.get(name))}"
        )


def psi_note(ev: dict[str, Any], pa: dict[str, Any], same_rule: float | None) -> str:
    """Why the two PSI values or verdicts differ."""
    score, ours = ev.get("score"), pa["statistic"]
    if score is None or ours is None:
        return ""
    notes = []
    if abs(ours - score) > 1e-9 + 1e-6 * abs(score):
        matched = same_rule is not None and abs(same_rule - score) <= 0.01 + 0.05 * abs(score)
        notes.append(
            "binning (Evidently's rule on Parity's profile gives Evidently's value)"
            if matched
            else "binning and empty-bin fill"
        )
    if bool(ev.get("drift")) != bool(pa["drifted"]):
        same_side = (score >= pa["threshold"]) == bool(pa["drifted"])
        notes.append(
            f"verdicts differ: thresholds {_num(ev.get('threshold'), 2)} vs "
            f"{_num(pa['threshold'], 2)}"
            if same_side
            else "verdicts differ: the binning moves the value across the threshold"
        )
    return "; ".join(notes)


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"


def _yes(value: Any) -> str:
    return "-" if value is None else ("yes" if value else "no")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="logged rows in the window")
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--reference-rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--repeats", type=int, default=5, help="Parity drift runs (median)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per process")
    parser.add_argument("--no-evidently", action="store_true", help="skip the peer")
    args = parser.parse_args(argv)
    log(
        f"Drift benchmark: {args.rows:,} logged rows x {args.features} features against "
        f"{args.reference_rows:,} reference rows; {os.cpu_count()} cores, {load_average()}"
    )
    try:
        data = ensure_data(args.rows, args.features, args.reference_rows, args.seed)
        runs = run_all(data, max(1, args.repeats), not args.no_evidently, args.timeout)
    except BenchFailure as error:
        log(f"FAILED: {error}")
        return 1
    manifest = json.loads((data / "manifest.json").read_text())
    print_times(runs)
    agree = total = 0
    p = medianrun_logged(runs.parity).result
    if runs.evidently is not None and runs.evidently_psi is not None:
        agree, total = side_by_side(runs.evidently.result, p, manifest)
    psi_table(
        None if runs.evidently_psi is None else runs.evidently_psi.result,
        runs.parity_psi.result,
        manifest,
    )
    log(f"\nTargets ({load_average()} at the end):")
    for line in targets(runs, agree, total):
        log(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
