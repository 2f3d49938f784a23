"""Peers (MLServer, Evidently) live in virtual environments of their own, created by the
benchmark that compares against them: commands run with their output in a log file, and a venv
created and filled with pip when its probe fails."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def run_logged(command: list[str | Path], log: Path, timeout: float) -> tuple[bool, str]:
    """Run `command` with stdout and stderr in `log`; (succeeded, the log's text)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        try:
            done = subprocess.run(
                [str(c) for c in command],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return False, str(error)
    return done.returncode == 0, log.read_text(errors="replace").strip()


def tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.splitlines()[-lines:])


def install(venv: Path, packages: list[str], logs: Path, name: str, error: type[Exception]) -> None:
    """Create `venv` if it has no python yet, then pip install `packages` into it; `error`
    (with the output's tail) when either step fails."""
    if not (venv / "bin" / "python").exists():
        print(f"  {name}: creating {venv.name} ...", flush=True)
        base = shutil.which("python3") or sys.executable
        ok, text = run_logged([base, "-m", "venv", venv], logs / f"{name}-venv.log", 300)
        if not ok:
            raise error(f"python3 -m venv failed: {tail(text)}")
    print(f"  {name}: pip install {' '.join(packages)} (a minute or two) ...", flush=True)
    pip: list[str | Path] = [venv / "bin" / "pip", "install", "-q", *packages]
    ok, text = run_logged(pip, logs / f"{name}-pip.log", 1800)
    if not ok:
        raise error(f"pip install {' '.join(packages)} failed: {tail(text)}")
