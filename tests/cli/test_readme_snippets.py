"""QA finding 12: the README's comments say what the code really prints."""

from __future__ import annotations

import re
from pathlib import Path

from parity import FeatureStore
from tests.cli.test_cli import run

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_plan_summary_comment_is_what_plan_prints(tmp_path: Path) -> None:
    said = re.search(r'store\.plan\(\)\.summary\(\)\)\s+# "([^"]+)"', README.read_text())
    assert said is not None
    repo = tmp_path / "fraud"
    code, output = run("init", str(repo), "--accounts", "10", "--days", "2")
    assert code == 0, output
    with FeatureStore(repo) as store:
        assert store.plan().summary() == said.group(1)
