"""`make demo`'s script, run for real on a smaller data size: scaffold, plan, apply, list, serve,
monitor, roll out a good candidate (promoted) and a bad one (rolled back in shadow), and close the
loop on simulated time (a new fraud pattern, drift flagged, recall drops, one retrain, promoted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_script_scaffolds_applies_once_and_lists_the_registry(tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        # 1,000 accounts: at 100 the first 18 days hold too little fraud for any model to learn,
        # and the candidates cannot be told apart (docs/rollout.md, "The fraud example").
        "DEMO_ACCOUNTS": "1000",
        "COLUMNS": "120",
        "DEMO_REPORTS": str(tmp_path / "reports"),
    }
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    # 2 entities, 5 views (one the growth team's, planted for the UI's duplicate detection),
    # 2 services, 1 ODFV, a monitor, 2 rollouts, a training job, a policy
    assert "Plan: 15 to add." in out
    assert out.count("Applied: registry version 1.") == 1
    assert "No changes: the registry (version 1) matches the repo." in out
    for name in ("account_profile", "account_txn_stats", "device_profile", "fraud_model_v1"):
        assert name in out
    assert "fraud model features, first version" in out
    assert "Dataset 'fraud_train_v1'" in out
    assert "x 16 columns" in out  # 6 entity-frame columns + the service's 10 features
    assert "feature service   fraud_model_v1" in out
    assert "sha256:" in out
    assert "Materialized into the online store" in out
    lookup = out.split("an online lookup, in-process")[1]
    assert "['PRESENT', 'NOT_FOUND']" in lookup  # device 999999 does not exist
    assert "txn_count_7d" in lookup
    streaming = out.split("a burst of transactions through 'parity ingest'")[1]
    # Redis runs here and in CI: the burst of 6 transactions (390.0 in all) from 3 devices moves
    # the windows. (The data ends now, so its newest events may count too.)
    after = dict(
        item.split("=") for item in streaming.split("after: ")[1].splitlines()[0].split(", ")
    )
    assert int(after["amount_count_5m"]) >= 6
    assert float(after["amount_sum_1h"]) >= 390.0
    assert int(after["device_id_count_distinct_10m"]) >= 3
    over_http = out.split("the same lookup over HTTP")[1].split("== train the fraud model")[0]
    assert "device_risk_score" in over_http and "'NOT_FOUND'" in over_http
    # The data ends today, so served values are fresh, the same as the in-process lookup's.
    fresh = [line for line in over_http.splitlines() if "txn_count_7d" in line]
    assert fresh and fresh[0].endswith("['PRESENT', 'PRESENT']")
    in_process = lookup.split("the same lookup over HTTP")[0].splitlines()
    same = next(line for line in in_process if "txn_count_7d" in line)
    assert fresh[0].split()[1:3] == same.split()[1:3]
    modelling = out.split("== train the fraud model")[1].split("== streaming")[0]
    assert "Registered fraud/1 as fraud@champion" in modelling
    assert "lineage: service fraud_model_v1, dataset fraud_train_v1" in modelling
    assert "champion=1" in modelling  # parity models list
    assert "registered fraud/1" in modelling  # parity models history: the alias's first move
    assert "model fraud version 1 (alias champion)" in modelling
    scores = [line for line in modelling.splitlines() if "fraud probability" in line]
    assert len(scores) == 4  # two charged-back payments and two clean ones
    for line in scores:
        assert 0.0 <= float(line.split("fraud probability ")[1].split(",")[0]) <= 1.0
    assert [line.endswith("charged back: True") for line in scores] == [True, True, False, False]
    assert "prediction log: 1 Parquet file(s) written on shutdown" in modelling
    monitoring = out.split("== monitoring: online/offline consistency")[1]
    consistency, skewed = monitoring.split("== a skew injected on purpose")
    assert "300 rows replayed, 0 mismatching values" in consistency
    skewed = skewed.split("== monitoring: six weeks")[0]
    assert "301 rows replayed, 5 mismatching values" in skewed  # account 7's window features
    assert "999.0" in skewed and "0.0" in skewed  # amount_sum_1h: online 999.0, offline 0.0
    drift = monitoring.split("== parity monitor drift")[1].split("== parity monitor alerts")[0]
    summary = drift.split("one line per window")[1].split("└")[0]
    weeks = [line for line in summary.splitlines() if line.startswith("│ fraud/1")]
    verdicts = [line.split("│")[5].strip() for line in weeks]
    shares = [float(line.split("│")[4].strip().rstrip("%") or "nan") for line in weeks[:6]]
    # The shifted week drifts, more than any ordinary week. (With fewer accounts than the demo's
    # 2,000 an ordinary week can drift too.)
    assert verdicts[5] == "DRIFT", verdicts
    assert shares[5] == max(shares) and shares[5] >= 50, shares
    assert "wrote drift_report.html" in drift
    alerts = monitoring.split("== parity monitor alerts")[1].split("== parity monitor performance")[
        0
    ]
    assert "fraud_drift" in alerts and "fired" in alerts
    performance = monitoring.split("== parity monitor performance")[1].split(
        "== parity monitor quality"
    )[0]
    assert "final" in performance and "provisional" in performance and "100.0%" in performance
    assert "account_txn_stats" in monitoring.split("== parity monitor quality")[1]
    assert_rollouts(out.split("== safe rollout")[1].split("== the closed loop")[0])
    assert_loop(out.split("== the closed loop")[1])
    kept = sorted(p.name for p in (tmp_path / "reports").iterdir())
    assert kept == [
        "drift_report.html",
        "loop_report.html",
        "rollout_bad.html",
        "rollout_good.html",
    ]
    page = (tmp_path / "reports" / "loop_report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "default-src 'none'" in page
    assert "<script" not in page and "Lineage of the retrained version" in page


def assert_rollouts(out: str) -> None:
    """The good candidate went shadow -> 1 -> 5 -> 25 -> 50 -> 100 % and was promoted; the bad one was
    rolled back in shadow by the decision gate, before any client saw it."""
    good, rest = out.split("== parity models history fraud")
    assert "Registered fraud/2 as fraud@challenger" in good
    assert "Rollout fraud-1: version 2 against champion version 1" in good
    assert "PROMOTED: fraud@champion is now version 2" in good
    moves = [line.split()[1:3] for line in good.splitlines() if " advanced " in line]
    assert moves == [["1", "%"], ["5", "%"], ["25", "%"], ["50", "%"], ["100", "%"]], moves
    checks = [line for line in good.splitlines() if "check -> advance" in line]
    assert len(checks) == 5 and "shadow" in checks[0]
    shadow_gates = good.split("check -> advance")[1].split("advanced")[0]
    for gate in ("custom:blocked_disagreement PASS", "latency_p99 PASS", "error_rate PASS"):
        assert gate in shadow_gates, shadow_gates
    assert [line.split()[1:4] for line in good.splitlines() if " promoted " in line] == [
        ["100", "%", "100"]
    ]
    assert "wrote rollout_good.html" in good
    history, bad = rest.split("== the bad candidate")
    moved = [line for line in history.splitlines() if "rollout fraud-1" in line]
    cells = [cell.strip() for cell in moved[0].split("│")[2:5]] if moved else []
    assert cells == ["champion", "1", "2"], moved
    assert "Registered fraud/3 as fraud@challenger" in bad and "without device_risk_score" in bad
    assert "Rollout fraud-2: version 3 against champion version 2" in bad
    assert "ROLLED BACK: version 3 answers nothing; the champion (version 2) is untouched" in bad
    reason = next(line for line in bad.splitlines() if line.startswith("  reason:"))
    assert "gate 'custom:blocked_disagreement' fail" in reason
    share = int(reason.split("blocked_disagreement' fail: ")[1].split("%")[0])
    assert share > 20, reason
    traffic = next(line for line in bad.splitlines() if "shadow predictions" in line)
    assert "canary" not in traffic  # it never answered a client
    aborted = [line for line in bad.splitlines() if " aborted " in line]
    assert aborted and aborted[0].split()[1:4] == ["shadow", "0", "%"], aborted
    listed = bad.split("== parity models list")[1]
    assert "champion=2" in listed


def assert_loop(out: str) -> None:
    """The loop's narrative, in order: the shift, drift flagged, the new pattern's week matured
    with recall halved, exactly one retrain, its job, the candidate promoted; any decision after
    it suppressed, the report written, one fire in the history and one job in the list."""
    loop, rest = out.split("== parity triggers history fraud")
    lines = [line for line in loop.splitlines() if line.startswith("  day ")]

    def first(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    shift, flagged = first("SHIFT: instant sign-up opens"), first("alert fraud_drift fired")
    fired, job = first("FIRE -> job #1"), first("job #1 (fraud_training")
    registered, promoted = first("as fraud@candidate"), first("PROMOTED: rollout")
    assert shift < flagged < fired < job < registered < promoted, loop
    assert "succeeded" in lines[job]
    assert sum("FIRE" in line for line in lines) == 1
    after = [line for line in lines[promoted + 1 :] if "retrain decision" in line]
    assert all("SUPPRESS: cooldown" in line for line in after), after  # no second retrain
    recalls = [
        float(line.split(" recall ")[1].split("%")[0]) for line in lines if "labels final" in line
    ]
    assert len(recalls) >= 2 and recalls[-1] < recalls[0] / 2, recalls  # the policy's drop
    assert "retrains fired: 1 " in loop
    version = lines[promoted].split("fraud@champion is now version ")[1].strip()
    assert f"promoted: fraud/{version}" in loop
    assert "registered fraud/" + version in lines[registered]
    assert "wrote loop_report.html" in loop
    history, jobs = rest.split("== parity jobs list")
    actions = [cell.strip() for line in history.splitlines() for cell in line.split("│")[4:5]]
    assert actions.count("fire") == 1, history
    assert jobs.count("fraud_training") == 1 and "succeeded" in jobs
