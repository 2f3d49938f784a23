"""QA finding 1 through the CLI: an END in the future and an incremental END before the
watermark exit 1 with one line naming the times and how to recover (no from-after-to row)."""

from __future__ import annotations

from pathlib import Path

from tests.cli.test_cli import run
from tests.conftest import DRIVER_REPO, write_repo


def test_materialize_end_in_the_future_is_refused(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "r", DRIVER_REPO)
    assert run("apply", "--repo", str(repo))[0] == 0
    for args in (
        ["materialize", "2025-12-31", "2999-01-01"],
        ["materialize-incremental", "2999-01-01"],
    ):
        code, output = run(*args, "--repo", str(repo))
        assert code == 1, output
        assert "[end_in_future]: end 2999-01-01T00:00:00+00:00 is after the store's clock" in output
        assert "Traceback" not in output and "Materialized" not in output


def test_incremental_end_before_the_watermark_is_refused_with_the_way_back(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "r", DRIVER_REPO)
    assert run("apply", "--repo", str(repo))[0] == 0
    assert run("materialize-incremental", "2026-01-02", "--repo", str(repo))[0] == 0
    code, output = run("materialize-incremental", "2026-01-01T01:30:00Z", "--repo", str(repo))
    assert code == 1, output
    assert "[end_before_watermark]" in output and "ended at 2026-01-02T00:00:00+00:00" in output
    assert "parity materialize START 2026-01-01T01:30:00+00:00" in output
    assert "Materialized" not in output
    code, output = run("materialize", "2025-12-31", "2026-01-01T01:30:00Z", "--repo", str(repo))
    assert code == 0, output
    code, output = run("materialize-incremental", "2026-01-02", "--repo", str(repo))
    assert code == 0 and "2026-01-01 01:30:00 │ 2026-01-02 00:00:00" in output, output


def test_materialize_help_reads_whole_sentences_at_80_columns() -> None:
    from typer.testing import CliRunner

    from parity.cli.main import app

    for command in ("materialize", "materialize-incremental"):
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "80"})
        assert result.exit_code == 0
        description = result.output.split("Usage:")[1].split("╭─ Arguments")[0]
        paragraphs: list[list[str]] = [[]]
        for line in description.splitlines()[1:]:  # after the usage line
            if line.strip():
                paragraphs[-1].append(line.strip())
            else:
                paragraphs.append([])
        for lines in paragraphs:
            # every line but a paragraph's last fills most of the width (no mid-sentence break)
            assert all(len(line) >= 45 for line in lines[:-1]), lines
        text = " ".join(result.output.split())
        assert "use." not in text and "tiles reads" not in text
        assert "(so no entity is lost)" in text or command != "materialize"
        assert (
            "tiles used by reads from END to materialize.read_slack (a day) after it" in text
            or command == "materialize"
        )
