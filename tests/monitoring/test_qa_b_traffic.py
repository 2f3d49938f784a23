"""QA (issue 13, helper B): the fraud example's traffic simulator refuses bad arguments with a
message, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from parity.examples.fraud.traffic import main
from tests.conftest import DRIVER_REPO, write_repo


@pytest.mark.parametrize("args", [["--days", "0"], ["--days", "-3"], ["--shift-days", "50"]])
def test_days_out_of_range_are_a_usage_error(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # --days 0 ended in scikit-learn's "Found array with 0 sample(s)" traceback
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    assert "--days" in capsys.readouterr().err


def test_an_unknown_model_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = write_repo(tmp_path / "repo", DRIVER_REPO)
    with pytest.raises(SystemExit) as exited:
        main(["--repo", str(repo), "--model", "fraud@nope"])
    assert exited.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("Error [") and "fraud" in err[0]
