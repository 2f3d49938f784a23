"""`parity rollout ...` through typer's runner on a SQLite repo: every bad option is one error line
naming the option and the fix (exit 1, no traceback), as the other commands do."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from parity import FeatureStore
from parity.cli.main import app
from tests.inference.test_rollout_http import rollout_store

runner = CliRunner()


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


@dataclass
class Repo:
    path: Path
    store: FeatureStore

    def cli(self, *args: str) -> Result:
        result = runner.invoke(
            app,
            ["rollout", *args, "--repo", str(self.path)],
            env={"COLUMNS": "200", "PARITY_USER": "cli-test", "PARITY_REPO": None},
        )
        return Result(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    monkeypatch.chdir(tmp_path)  # outside any git checkout: registration runs no git in ours
    path, store = rollout_store(tmp_path)
    return Repo(path, store)


def one_error(result: Result, code: str, *named: str) -> str:
    assert result.code == 1, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error [{code}]: "), result.stderr
    assert "Traceback" not in result.stderr
    for text in named:
        assert text in lines[0], lines[0]
    return lines[0]


START = ("start", "--model", "ranker", "--candidate", "2")


@pytest.mark.parametrize(
    ("options", "code", "named"),
    [
        (("--gate", "latency_p50"), "invalid_rollout",
         ("--gate 'latency_p50'", "is not known", "latency_p99")),
        (("--gate", "error_rate", "--gate", "label:accuracy_x:0.1", "--gate", "recall"),
         "invalid_rollout", ("--gate 'recall'", "'recall' is not known")),
        (("--steps", "5,25,25"), "invalid_rollout", ("--steps", "must increase", "1, 5, 25")),
        (("--steps", "50,10"), "invalid_rollout", ("--steps", "must increase")),
        (("--steps", "1,,5"), "invalid_option", ("--steps '1,,5'", "1,5,25,50,100")),
        (("--steps", "1,five"), "invalid_option", ("--steps", "finite number")),
        (("--steps", "1,nan"), "invalid_option", ("--steps", "finite number")),
        (("--steps", "0,5"), "invalid_rollout", ("--steps", "weight above 0")),
        (("--steps", "5,150"), "invalid_rollout", ("--steps", "percentage from 0 to 100")),
        (("--step-duration", "10 minutes"), "invalid_option", ("--step-duration", "30m")),
        (("--step-min-samples", "-3"), "invalid_option", ("--step-min-samples '-3'",)),
        (("--shadow", "1y"), "invalid_option", ("--shadow '1y'", "1d")),
        (("--shadow", "30m", "--no-shadow"), "invalid_option", ("--no-shadow", "drop --shadow")),
        (("--shadow-fraction", "1.5"), "invalid_rollout", ("--shadow-fraction", "(0, 1]")),
        (("--shadow-fraction", "inf"), "invalid_option", ("--shadow-fraction", "finite")),
        (("--routing-key", "driver_id", "--routing-header", "x-user"), "invalid_option",
         ("--routing-key and --routing-header", "not both")),
        (("--routing-header", "x user"), "invalid_rollout",
         ("--routing-key/--routing-header", "header name 'x user'")),
        (("--routing-key", "driver-id"), "invalid_rollout",
         ("--routing-key/--routing-header", "not an identifier")),
        (("--gate", "latency_p99:fast"), "invalid_option", ("--gate 'latency_p99:fast'",)),
        (("--gate", "latency_p99:-1"), "invalid_rollout",
         ("--gate 'latency_p99:-1'", "finite number >= 0")),
        (("--gate", "latency_p99:0.1:0.2"), "invalid_option", ("metric[:threshold]",)),
        (("--gate", "prediction_drift:0.2:test=chi"), "invalid_rollout",
         ("--gate 'prediction_drift:0.2:test=chi'", "psi")),
        (("--gate", "custom:no_such_gate"), "invalid_rollout",
         ("--gate 'custom:no_such_gate'", "custom_gates")),
        (("--gate", "error_rate", "--gate", "error_rate:0.02"), "invalid_rollout",
         ("--gate", "repeat")),
        (("--failure-mode", "sometimes"), "invalid_option", ("--failure-mode", "consecutive")),
        (("--failure-limit", "0"), "invalid_option", ("--failure-limit '0'", "from 1 to")),
        (("--interval", "0s"), "invalid_option", ("--interval '0s'", "at least 1s")),
        (("--champion-alias", "the champ"), "invalid_rollout",
         ("--champion-alias", "not an identifier")),
    ],
)  # fmt: skip
def test_bad_start_options_are_one_line_naming_the_option(
    repo: Repo, options: tuple[str, ...], code: str, named: tuple[str, ...]
) -> None:
    one_error(repo.cli(*START, *options), code, *named)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("start",), ("--model is required", "ROLLOUT")),
        (("start", "--model", "ranker"), ("--candidate is required",)),
        (("start", "ranker_ramp", "--model", "ranker"), ("ROLLOUT", "drop --model")),
        (("start", "ranker_ramp", "--steps", "1,2"), ("ROLLOUT", "drop --steps")),
        (("start", "ranker_ramp", "--no-shadow"), ("ROLLOUT", "drop --no-shadow")),
        (("start", "--model", "ranker", "--candidate", "a b"), ("--candidate", "identifier")),
        (("start", "--model", "ranker", "--candidate", "99999999999"), ("--candidate",)),
    ],
)
def test_start_needs_a_declared_rollout_or_model_and_candidate(
    repo: Repo, args: tuple[str, ...], named: tuple[str, ...]
) -> None:
    result = repo.cli(*args)
    assert result.code == 1, result
    assert "Traceback" not in result.stderr
    for text in named:
        assert text in result.stderr, result.stderr


def test_run_rejects_a_bad_interval(repo: Repo) -> None:
    one_error(repo.cli("run", "--interval", "soon"), "invalid_option", "--interval 'soon'")


def test_rollout_commands_are_listed(repo: Repo) -> None:
    result = runner.invoke(app, ["rollout", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in ("start", "status", "pause", "resume", "promote", "abort", "history", "run"):
        assert f" {name} " in result.stdout


# --- with the controller ----------------------------------------------------------------------


def test_the_issues_bad_input_names_the_option(repo: Repo) -> None:
    assert repo.cli(*START).code == 0
    one_error(repo.cli("start", "--model", "ranker", "--candidate", "3"), "rollout_active")
    one_error(
        repo.cli("start", "--model", "lonely", "--candidate", "2"),
        "invalid_rollout",
        "--champion-alias: ",
        "parity models alias set lonely champion",
    )
    repo.store.models.set_alias("lonely", "champion", 1)
    one_error(
        repo.cli("start", "--model", "lonely", "--candidate", "1"),
        "invalid_rollout",
        "--candidate: version 1",
    )
    one_error(repo.cli("start", "--model", "nobody", "--candidate", "1"), "model_not_found")
    one_error(  # the hint is a command that works
        repo.cli("status", "nobody"),
        "rollout_not_found",
        "parity rollout start --model nobody --candidate <version>",
    )
    one_error(repo.cli("pause", "lonely"), "rollout_not_found", "lonely")


def test_start_status_history_and_json_agree(repo: Repo) -> None:
    started = repo.cli(
        *START, "--steps", "2,20,100", "--step-duration", "5m", "--shadow", "15m",
        "--routing-header", "x-user", "--gate", "latency_p99:0.2", "--gate",
        "label:precision_at_k:0.05:k=50:min_samples=30", "--failure-mode", "consecutive",
        "--failure-limit", "3", "--interval", "30s", "--json",
    )  # fmt: skip
    assert started.code == 0, started.stderr
    state = json.loads(started.stdout)["rollout"]
    definition = state["definition"]
    assert [(s["weight"], s["duration"]) for s in definition["steps"]] == [
        (2.0, "PT5M"),
        (20.0, "PT5M"),
        (100.0, "PT5M"),
    ]
    assert definition["shadow"] == {"weight": 0.0, "duration": "PT15M", "min_samples": 500}
    assert definition["routing_key"] == {"name": "x-user", "source": "header"}
    assert [
        (g["metric"], g["threshold"], g["k"], g["min_samples"]) for g in definition["gates"]
    ] == [
        ("latency_p99", 0.2, 100, 100),
        ("label:precision_at_k", 0.05, 50, 30),
    ]
    assert definition["failure_policy"] == {"mode": "consecutive", "limit": 3}
    assert definition["interval"] == "PT30S"
    assert (state["candidate"], state["champion"], state["phases"]) == (2, 1, 4)

    status = repo.cli("status", "ranker", "--json")
    assert json.loads(status.stdout) == {"rollout": state}
    assert json.loads(repo.cli("status", "--json").stdout) == {"rollouts": [state]}
    history = json.loads(repo.cli("history", "ranker", "--json").stdout)
    assert history["rollout"] == state
    assert [(e["kind"], e["actor"]) for e in history["events"]] == [("started", "cli-test")]

    shown = repo.cli("status", "ranker")
    assert shown.code == 0, shown.stderr
    assert f"Rollout {state['id']}: ranker v2 against champion=v1" in shown.stdout
    assert "shadow 15m, then 2% → 20% → 100%; active at shadow (weight 0%)" in shown.stdout
    assert "latency_p99 ≤ 0.2, label:precision_at_k ≤ 0.05" in shown.stdout
    table = repo.cli("status").stdout
    assert state["id"] in table and "shadow" in table


def test_pause_resume_abort_promote_round_trips(repo: Repo) -> None:
    assert repo.cli(*START, "--no-shadow", "--steps", "10,100").code == 0
    paused = repo.cli("pause", "ranker", "--reason", "freeze")
    assert paused.code == 0, paused.stderr
    assert "paused at step 1/2 (weight 10%); freeze" in paused.stdout
    one_error(repo.cli("pause", "ranker"), "rollout_state")
    assert "active at step 1/2" in repo.cli("resume", "ranker").stdout
    aborted = repo.cli("abort", "ranker", "--reason", "too slow")
    assert aborted.code == 0 and "aborted; too slow" in aborted.stdout
    assert repo.store.models.aliases("ranker") == {"champion": 1}
    assert repo.cli("status", "--json").stdout.strip() == '{"rollouts": []}'
    assert "No active rollout." in repo.cli("status").stdout

    assert repo.cli("start", "--model", "ranker", "--candidate", "3").code == 0
    promoted = repo.cli("promote", "ranker", "--reason", "by hand", "--json")
    assert json.loads(promoted.stdout)["rollout"]["status"] == "promoted"
    assert repo.store.models.aliases("ranker") == {"champion": 3}

    first = json.loads(repo.cli("history", "ranker", "--rollout", "ranker-1", "--json").stdout)
    assert [e["kind"] for e in first["events"]] == ["started", "paused", "resumed", "aborted"]
    assert first["rollout"]["status"] == "aborted"
    timeline = repo.cli("history", "ranker", "--rollout", "ranker-1").stdout
    rows = [line for line in timeline.splitlines() if line.startswith("│")]
    assert [row.split("│")[4].strip() for row in rows] == [
        "started",
        "paused",
        "resumed",
        "aborted",
    ]
    one_error(repo.cli("history", "ranker", "--rollout", "ranker-9"), "rollout_not_found")


def test_run_once_checks_a_due_rollout(repo: Repo) -> None:
    from parity.deploy.service import Rollouts

    an_hour_ago = repo.store.now() - timedelta(hours=1)
    past = Rollouts(repo.store, clock=lambda: an_hour_ago)
    past.start(model="ranker", candidate=2, actor="test")  # started an hour ago: a check is due
    ran = repo.cli("run", "--once")
    assert ran.code == 0, ran.stderr
    assert "ranker-1 check at weight 0%" in ran.stdout
    kinds = [e.kind for e in repo.store.rollouts.history("ranker")]
    assert kinds == ["started", "check"]
    # the shadow has no predictions logged: the check holds the step, it never passes it
    assert repo.store.rollouts.status("ranker").step == 0


def test_a_custom_gate_comes_from_the_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path, store = rollout_store(tmp_path)
    (path / "rollouts.py").write_text(
        "from parity import Gate, Rollout\n"
        "def no_worse(evidence):\n"
        "    return None\n"
        "declared = Rollout(name='declared', model='ranker', candidate=2,\n"
        "    gates=[Gate(metric='custom:no_worse')], custom_gates=[no_worse])\n"
    )
    store.apply()
    repo = Repo(path, store)
    started = repo.cli(*START, "--gate", "custom:no_worse", "--json")
    assert started.code == 0, started.stderr
    definition = json.loads(started.stdout)["rollout"]["definition"]
    assert [g["name"] for g in definition["custom_gates"]] == ["no_worse"]
    assert definition["name"] == "ranker_rollout"  # built from the options
    assert repo.cli("abort", "ranker").code == 0
    declared = repo.cli("start", "declared", "--json")  # the declared one, by name
    assert declared.code == 0, declared.stderr
    definition = json.loads(declared.stdout)["rollout"]["definition"]
    assert (definition["name"], definition["candidate"]) == ("declared", 2)
    assert [g["metric"] for g in definition["gates"]] == ["custom:no_worse"]


def test_history_shows_each_gates_verdict_with_its_numbers(repo: Repo) -> None:
    from parity.deploy.service import Rollouts
    from parity.deploy.state import CheckOutcome, GateResult, RolloutState

    slow = GateResult(
        "latency_p99",
        "fail",
        candidate=41.25,
        champion=33.0,
        limit=0.1,
        samples={"candidate": 512, "champion": 480},
        reason="p99 41.2 ms > 36.3 ms",
    )
    quiet = GateResult("error_rate", "pass", 0.001, 0.002, 0.01, {"candidate": 512})

    def checker(store: FeatureStore, state: RolloutState, now: object) -> CheckOutcome:
        return CheckOutcome((slow, quiet), {"candidate": 512, "champion": 480})

    start = repo.store.now() - timedelta(hours=1)
    rollouts = Rollouts(repo.store, clock=lambda: start, checker=checker)
    rollouts.start(model="ranker", candidate=2, actor="test", shadow=None)
    events = rollouts.step(now=repo.store.now())
    assert [e.kind for e in events] == ["check", "aborted"]  # one failure aborts by default

    shown = repo.cli("history", "ranker")
    assert shown.code == 0, shown.stderr
    assert "ranker v2 against champion=v1, 1% → 5% → 25% → 50% → 100%; aborted" in shown.stdout
    cells = "".join(line.split("│")[5] for line in shown.stdout.splitlines() if "│" in line)
    gates = " ".join(cells.split())  # the gates column, rejoined across its wrapped lines
    assert (
        "latency_p99 FAIL 41.25 vs 33 (limit 0.1) [candidate 512, champion 480]: p99 41.2 ms > "
        "36.3 ms"
    ) in gates
    assert "error_rate PASS 0.001 vs 0.002 (limit 0.01) [candidate 512]" in gates
    kinds = [line.split("│")[4].strip() for line in shown.stdout.splitlines() if "│" in line]
    assert [k for k in kinds if k] == ["started", "check", "aborted"]


_OPTIONS = ["--steps", "--step-duration", "--step-min-samples", "--shadow", "--shadow-min-samples",
            "--shadow-fraction", "--routing-key", "--routing-header", "--gate", "--failure-limit",
            "--failure-mode", "--interval", "--champion-alias", "--candidate"]  # fmt: skip
_VALUES = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["1,5,100", "10m", "0", "-1", "nan", "1e309", "5,1", "latency_p99:0.1",
                     "label:auc:0.05:k=5", "x" * 300, "1,,2", "\uff12", "0.5", "cumulative"]),
)  # fmt: skip


@given(options=st.lists(st.tuples(st.sampled_from(_OPTIONS), _VALUES), max_size=4))
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_any_start_options_start_or_give_one_error_line(
    repo: Repo, options: list[tuple[str, str]]
) -> None:
    args = ["start", "--model", "ranker", "--candidate", "2"]
    for option, value in options:
        args += [option, value]
    result = repo.cli(*args)
    if result.code == 0:
        assert repo.cli("abort", "ranker").code == 0  # the next example may start again
        return
    assert result.code in (1, 2), result  # 2: the option parser's own usage errors
    assert "Traceback" not in result.stderr
    if result.code == 1:
        [line] = [line for line in result.stderr.splitlines() if line.strip()]
        assert re.match(r"Error \[(invalid_option|invalid_rollout|model_not_found)\]: ", line)
