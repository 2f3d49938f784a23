"""Load a feature repo's `*.py` files and collect the definitions they declare, with file:line.

Executes user code (that is what a Python feature repo is); everything it imports is removed from
`sys.modules` afterwards so two repos with same-named files can load in one process.
"""

from __future__ import annotations

import fnmatch
import importlib
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from parity.definitions import Entity, FeatureService, FeatureView
from parity.definitions.monitor import Monitor
from parity.definitions.on_demand import OnDemandFeatureView
from parity.definitions.retrain import RetrainPolicy
from parity.definitions.rollout import Rollout
from parity.definitions.training import TrainingJob
from parity.errors import DuplicateDefinition, RepoError
from parity.registry.catalog import Catalog, Definition

IGNORED_DIRS = frozenset({"data", "venv", "__pycache__", "node_modules", "build", "dist"})
IGNORE_FILE = ".parityignore"
_ASSIGNMENT = re.compile(r"^([A-Za-z_][\w, ]*?)\s*(?::[^=]+)?=(?!=)")
_TARGET_NAMES = re.compile(r"[A-Za-z_]\w*")
_DEFINITION = re.compile(r"^(?:async\s+)?def\s+([A-Za-z_]\w*)")  # decorated on-demand views
_KINDS = (
    Entity,
    FeatureView,
    FeatureService,
    OnDemandFeatureView,
    Monitor,
    Rollout,
    TrainingJob,
    RetrainPolicy,
)


@dataclass(frozen=True)
class Located:
    """A definition and where the repo declares it."""

    definition: Definition
    file: Path
    line: int

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class LoadedRepo:
    catalog: Catalog
    locations: dict[tuple[str, str], Located]
    files: tuple[Path, ...]


def discover_files(root: Path) -> list[Path]:
    """Python files of the repo, sorted; skips hidden folders, data/, venvs and `.parityignore`."""
    patterns = _ignore_patterns(root)
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if any(p.startswith(".") or p in IGNORED_DIRS for p in relative.parts[:-1]):
            continue
        if any(fnmatch.fnmatch(relative.as_posix(), pattern) for pattern in patterns):
            continue
        found.append(path)
    return found


def _ignore_patterns(root: Path) -> list[str]:
    ignore = root / IGNORE_FILE
    if not ignore.is_file():
        return []
    lines = (line.strip() for line in ignore.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def load_repo(root: Path, project: str) -> LoadedRepo:
    """Import the repo's files and build its catalog. Raises RepoError / DuplicateDefinition."""
    if not root.is_dir():
        raise RepoError(f"feature repo {root} is not a folder; pass --repo PATH")
    files = discover_files(root)
    located = _dedupe(list(_collect(root, files)))
    definitions = [item.definition for item in located]
    declared = {d.name for d in definitions if isinstance(d, Entity)}
    for view in [d for d in definitions if isinstance(d, FeatureView)]:
        implicit = [e for e in view.entities if e.name not in declared]
        definitions.extend(implicit)
        declared.update(e.name for e in implicit)
    catalog = Catalog.build(project, definitions)
    locations = {(item.definition.kind, item.definition.name): item for item in located}
    return LoadedRepo(catalog, locations, tuple(files))


def _collect(root: Path, files: list[Path]) -> Iterator[Located]:
    names = [_module_name(root, f) for f in files]
    before = set(sys.modules)
    sys.path.insert(0, str(root))
    try:
        for name in names:
            sys.modules.pop(name, None)
        for path, name in zip(files, names, strict=True):
            module = _import(path, name)
            yield from _definitions_in(module, path)
    finally:
        sys.path.remove(str(root))
        for name in set(sys.modules) - before:
            file = getattr(sys.modules[name], "__file__", None) or ""
            if file.startswith(str(root)):
                del sys.modules[name]


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts) or "__init__"


def _import(path: Path, name: str) -> ModuleType:
    try:
        module = importlib.import_module(name)
    except Exception as error:
        where = _failing_line(error, path)
        raise RepoError(f"{where} failed to import: {type(error).__name__}: {error}") from error
    if Path(getattr(module, "__file__", "") or "").resolve() != path.resolve():
        raise RepoError(
            f"{path} is shadowed by the installed Python module '{name}'; rename the file"
        )
    return module


def _failing_line(error: BaseException, path: Path) -> str:
    """`file:line` of the deepest frame of `path` in the traceback (the line that raised)."""
    line = None
    trace = error.__traceback__
    while trace is not None:
        if Path(trace.tb_frame.f_code.co_filename).resolve() == path.resolve():
            line = trace.tb_lineno
        trace = trace.tb_next
    if line is None and isinstance(error, SyntaxError) and error.lineno:
        line = error.lineno
    return f"{path}:{line}" if line else str(path)


def _definitions_in(module: ModuleType, path: Path) -> Iterator[Located]:
    """Module-level definitions, and definitions in module-level lists, tuples and dicts."""
    lines = _assignment_lines(path)
    for variable, value in vars(module).items():
        if variable.startswith("__"):
            continue
        line = lines.get(variable)
        if line is None:
            continue  # imported from elsewhere: its own file declares it
        if isinstance(value, _KINDS):
            yield Located(value, path, line)
        elif isinstance(value, list | tuple | dict):
            items = value.values() if isinstance(value, dict) else value
            yield from (Located(v, path, line) for v in items if isinstance(v, _KINDS))


def _assignment_lines(path: Path) -> dict[str, int]:
    """Line of the first module-level assignment to each name (`name = ...`, `name: T = ...`).

    A line scan, not a parse: a repo of hundreds of literal views parses slowly, and module-level
    assignments are exactly the unindented `name =` lines.
    """
    lines: dict[str, int] = {}
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            match = _ASSIGNMENT.match(line)
            if match:
                for name in _TARGET_NAMES.findall(match.group(1)):
                    lines.setdefault(name, number)
            elif line.startswith(("def ", "async ")):
                found = _DEFINITION.match(line)
                if found:
                    lines.setdefault(found.group(1), number)
    return lines


def _dedupe(items: list[Located]) -> list[Located]:
    """One entry per object; two different objects of one kind and name are an error."""
    by_identity: dict[int, Located] = {}
    for item in items:
        by_identity.setdefault(id(item.definition), item)
    by_name: dict[tuple[str, str], Located] = {}
    for item in by_identity.values():
        key = (item.definition.kind, item.definition.name)
        first = by_name.get(key)
        if first is not None:
            raise DuplicateDefinition(
                f"{key[0]} '{key[1]}' is declared twice: at {first.where} and at {item.where}; "
                "rename one or delete it"
            )
        by_name[key] = item
    return list(by_name.values())
