"""What a new user hits (issue 12, items 18, 21, 22, 23): one clear line, exit 1, no traceback;
times as ISO text, dates or 'now'; `parity init` data that ends now; progress bars."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from parity.cli.main import app
from tests.cli.test_models_cli import Repo, assert_user_error
from tests.cli.test_models_cli import repo as repo
from tests.conftest import DRIVER_REPO, write_repo

runner = CliRunner()


def run(*args: str, columns: int = 200) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": str(columns), "PARITY_USER": "t"})
    return result.exit_code, result.stdout, result.stderr


def one_error_line(stderr: str, code: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"Error [{code}]: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_materialize_before_apply_is_one_line_and_exit_1(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "r", DRIVER_REPO)
    code, out, stderr = run("materialize", "2026-01-01", "now", "--repo", str(repo))
    assert code == 1 and out == ""
    assert "run `parity apply` first" in one_error_line(stderr, "nothing_to_materialize")


def test_materialize_incremental_takes_now_and_materialize_takes_dates(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "r", DRIVER_REPO)
    assert run("apply", "--repo", str(repo))[0] == 0
    before = datetime.now(UTC)
    code, out, stderr = run("materialize-incremental", "now", "--repo", str(repo))
    assert code == 0, stderr
    shown = max(re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", out))
    ended = datetime.strptime(shown, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    assert abs(ended - before) < timedelta(minutes=1)
    code, out, stderr = run("materialize", "2025-12-31", "2026-01-02", "--repo", str(repo))
    assert code == 0, stderr
    assert "2026-01-02 00:00:00" in out


def test_epoch_integers_as_times_are_one_line_naming_the_argument(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "r", DRIVER_REPO)
    assert run("apply", "--repo", str(repo))[0] == 0
    code, _, stderr = run("materialize", "1764115200", "now", "--repo", str(repo), columns=80)
    assert code == 1
    assert "start: '1764115200' looks like an epoch" in one_error_line(stderr, "invalid_time")
    # An entity frame whose timestamps are epoch numbers (as text, from SQL)
    code, _, stderr = run(
        "dataset", "create", "--entities",
        "SELECT 1::BIGINT AS driver_id, '1764115200' AS event_timestamp",
        "--features", "driver_stats:trips", "--out", str(tmp_path / "t.parquet"),
        "--repo", str(repo), columns=80,
    )  # fmt: skip
    assert code == 1
    line = one_error_line(stderr, "invalid_entity_frame")
    assert '"1764115200"' in line and "epoch numbers are not guessed" in line


def test_errors_do_not_wrap_at_80_columns(tmp_path: Path) -> None:
    code, _, stderr = run("registry", "list", "--repo", str(tmp_path / "nowhere"), columns=80)
    assert code == 1
    assert len(one_error_line(stderr, "invalid_config")) > 80  # one line, longer than the screen


@pytest.mark.parametrize(
    "command", [(), ("init",), ("materialize",), ("serve",), ("serve-models",), ("models", "alias")]
)
def test_flags_show_no_bool_placeholder(command: tuple[str, ...]) -> None:
    """A flag takes no value, so help must not show one (typer 0.29 printed `<bool>` after every
    flag, --help and --debug included)."""
    code, out, _ = run(*command, "--help")
    assert code == 0 and "--help" in out
    assert "<bool>" not in out
    if not command:
        (line,) = [line for line in out.splitlines() if "--debug" in line]
        assert "Show tracebacks on errors." in line


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.mark.parametrize("command", ["serve", "serve-models"])
def test_a_port_in_use_is_one_line_before_any_serving_line(
    tmp_path: Path, busy_port: int, command: str
) -> None:
    repo = write_repo(tmp_path / "r", DRIVER_REPO)
    code, out, stderr = run(command, "--port", str(busy_port), "--repo", str(repo))
    assert code == 1 and "Serving" not in out + stderr
    assert f"port {busy_port} on 127.0.0.1 is already in use" in one_error_line(
        stderr, "port_in_use"
    )


def test_serve_models_with_an_unknown_alias_is_one_line_naming_the_cli(
    repo: Repo, busy_port: int
) -> None:
    del busy_port  # a free port is not needed: the alias is refused before serving
    result = runner.invoke(
        app,
        ["serve-models", "--model", "fraud@staging", "--repo", str(repo.path), "--port", "1"],
        env={"COLUMNS": "80"},
    )
    assert_user_error(type("R", (), {"code": result.exit_code, "stdout": result.stdout,
                                     "stderr": result.stderr})(), "alias_not_found")  # fmt: skip
    assert "parity models alias set fraud staging VERSION" in result.stderr
    assert "ModelRegistry" not in result.stderr and "Serving" not in result.stderr


def test_init_data_ends_now_by_default_and_at_end_when_given(tmp_path: Path) -> None:
    before = datetime.now(UTC)
    code, out, stderr = run("init", str(tmp_path / "fresh"), "--accounts", "20", "--days", "3")
    assert code == 0, stderr
    times = pq.read_table(tmp_path / "fresh" / "data" / "transactions.parquet")["event_timestamp"]
    newest = max(times.to_pylist())
    assert before - timedelta(hours=6) < newest <= datetime.now(UTC)
    code, out, stderr = run(
        "init", str(tmp_path / "fixed"), "--accounts", "20", "--days", "3", "--end", "2026-01-01"
    )
    assert code == 0, stderr
    assert "end at 2026-01-01 00:00:00 UTC" in out
    times = pq.read_table(tmp_path / "fixed" / "data" / "transactions.parquet")["event_timestamp"]
    assert max(times.to_pylist()) < datetime(2026, 1, 1, tzinfo=UTC)


def test_materialize_shows_a_finished_bar_per_view(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "r", DRIVER_REPO)
    assert run("apply", "--repo", str(repo))[0] == 0
    code, _, stderr = run("materialize", "2025-12-31", "2026-01-02", "--repo", str(repo))
    assert code == 0
    (bar,) = [line for line in stderr.splitlines() if line.startswith("driver_stats")]
    assert "3 rows" in bar and "━" in bar


def test_an_entity_frame_of_epoch_integers_is_one_line_in_python(tmp_path: Path) -> None:
    import pandas as pd

    from parity import FeatureStore
    from parity.errors import EntityFrameError

    repo = write_repo(tmp_path / "r", DRIVER_REPO)
    with FeatureStore(repo) as store:
        store.apply()
        frame = pd.DataFrame({"driver_id": [1], "event_timestamp": [1764115200]})
        with pytest.raises(EntityFrameError) as raised:
            store.get_historical_features(frame, ["driver_stats:trips"])
    assert "holds numbers, not times" in str(raised.value) and "\n" not in str(raised.value)


def test_dataset_progress_moves_between_0_and_100_percent(tmp_path: Path) -> None:
    """The query behind `dataset create`'s bar reports progress while it runs (it sat at 0%)."""
    from parity.offline.duckdb_engine import DuckDBEngine, _with_progress

    connection = DuckDBEngine(tmp_path).connect()
    # On a loaded machine a short query can end before the first progress poll: a few tries,
    # each query longer than the last, and at least one must report a value in between.
    tries: list[list[float]] = []
    for rows in (3000, 6000, 12000):
        seen: list[float] = []
        sql = (
            f"COPY (SELECT a.range AS x, sum(b.range) AS s FROM range({rows}) a, "
            f"range(30000) b GROUP BY 1) TO '{tmp_path / 'x.parquet'}'"
        )
        _with_progress(connection, sql, seen.append)
        assert seen[-1] == 1.0
        tries.append(seen)
        if any(0.0 < value < 1.0 for value in seen):
            break
    assert any(0.0 < value < 1.0 for value in tries[-1]), tries
