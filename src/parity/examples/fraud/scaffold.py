"""Scaffold the fraud-detection feature repo: copy the template and generate its data."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from parity.definitions.base import check_identifier
from parity.errors import RepoError
from parity.timeutil import TimeLike, parse_time


@dataclass(frozen=True)
class ScaffoldResult:
    repo: Path
    files: tuple[Path, ...]
    rows: dict[str, int]


def scaffold(
    target: Path,
    *,
    project: str | None = None,
    accounts: int = 1_000,
    days: int = 60,
    seed: int = 7,
    with_data: bool = True,
    data_only: bool = False,
    end: TimeLike = "now",
) -> ScaffoldResult:
    """Create the repo at `target` (which must not exist or be empty) and fill `data/` with data
    ending at `end` (a datetime, date, ISO 8601 text or 'now', the default)."""
    project = project or target.resolve().name.replace("-", "_")
    try:
        check_identifier(project, "project name")
    except ValueError as error:
        raise RepoError(f"{error}; pass a different NAME") from None
    files: list[Path] = []
    if not data_only:
        if target.exists() and any(target.iterdir()):
            raise RepoError(f"{target} exists and is not empty; choose a new NAME or remove it")
        files = _copy_template(target, project)
    rows: dict[str, int] = {}
    if with_data or data_only:
        from parity.examples.fraud.data import generate

        until = parse_time(end, "end")
        rows = generate(target / "data", accounts=accounts, days=days, seed=seed, end=until).rows
    return ScaffoldResult(target, tuple(files), rows)


def _copy_template(target: Path, project: str) -> list[Path]:
    template = resources.files("parity.examples.fraud") / "template"
    target.mkdir(parents=True, exist_ok=True)
    (target / "data").mkdir(exist_ok=True)
    written = []
    for item in sorted(template.iterdir(), key=lambda t: t.name):
        if not item.is_file() or (item.name.startswith(("__", ".")) and item.name != ".gitignore"):
            continue
        text = item.read_text().replace("{{project}}", project)
        path = target / item.name
        path.write_text(text)
        written.append(path)
    return written
