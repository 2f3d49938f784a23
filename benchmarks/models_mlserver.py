"""MLServer, the peer of bench_models.py: its own virtual environment (benchmarks/.mlserver-venv)
and a model repository per configuration that serves a joblib-dumped scikit-learn model.

Standard library only; MLServer runs as `mlserver start DIR` under its venv's Python.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peer_venv import install, run_logged, tail

BENCH_DIR = Path(__file__).resolve().parent
MLSERVER_VENV = BENCH_DIR / ".mlserver-venv"
MLSERVER_PYTHON = MLSERVER_VENV / "bin" / "python"
MLSERVER_CLI = MLSERVER_VENV / "bin" / "mlserver"


class MLServerUnavailable(Exception):
    """MLServer could not be installed or started; the message says why."""


@dataclass(frozen=True)
class MLServerConfig:
    """One way of running MLServer: a label, settings.json overrides, and what they mean."""

    label: str
    settings: dict[str, Any]
    note: str


# MLServer's defaults: debug on (uvicorn's access log), 1 inference worker process (requests cross
# a process boundary), Prometheus middleware on every request. Tuned: all three off, so inference
# runs in the server's own process like Parity's.
CONFIGS = (
    MLServerConfig(
        "mlserver default",
        {},
        "settings.json defaults: debug (access log) on, parallel_workers 1, metrics on",
    ),
    MLServerConfig(
        "mlserver tuned",
        {"debug": False, "parallel_workers": 0, "metrics_endpoint": None},
        "debug false, parallel_workers 0 (inference in the server process), metrics_endpoint null",
    ),
)


def ensure_mlserver(sklearn_version: str, logs: Path) -> str:
    """Make benchmarks/.mlserver-venv hold mlserver, mlserver-sklearn, httptools (uvicorn's fast
    HTTP parser, which Parity's server uses too), Parity's scikit-learn version (the joblib file
    must unpickle there) and uvloop < 0.22; returns MLServer's version."""
    probe = "import httptools, mlserver, mlserver_sklearn, sklearn, uvloop; "
    probe += "print(mlserver.__version__, sklearn.__version__, uvloop.__version__)"
    ok, text = run_logged([MLSERVER_PYTHON, "-c", probe], logs / "mlserver-probe.log", 120)
    versions = text.split()[-3:] if ok else ["", "", ""]
    if versions[1] == sklearn_version and _older(versions[2], (0, 22)):
        return versions[0]
    wanted = ["mlserver", "mlserver-sklearn", "httptools", f"scikit-learn=={sklearn_version}"]
    wanted.append("uvloop<0.22")  # 0.22 breaks MLServer 1.7's inference workers (MLServer #2286)
    install(MLSERVER_VENV, wanted, logs, "mlserver", MLServerUnavailable)
    ok, text = run_logged([MLSERVER_PYTHON, "-c", probe], logs / "mlserver-probe.log", 120)
    if not ok:
        raise MLServerUnavailable(f"mlserver does not import after installing: {tail(text)}")
    return text.split()[-3]


def _older(version: str, than: tuple[int, int]) -> bool:
    try:
        return tuple(int(part) for part in version.split(".")[:2]) < than
    except ValueError:
        return False


def write_repository(
    root: Path, config: MLServerConfig, model_name: str, model_file: Path, ports: dict[str, int]
) -> Path:
    """The folder for `mlserver start`: settings.json, and `model_name/model-settings.json`."""
    shutil.rmtree(root, ignore_errors=True)
    (root / model_name).mkdir(parents=True)
    settings = {
        "host": "127.0.0.1",
        "http_port": ports["http"],
        "grpc_port": ports["grpc"],
        "metrics_port": ports["metrics"],
    }
    (root / "settings.json").write_text(json.dumps(settings | config.settings, indent=1))
    model_settings = {
        "name": model_name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(model_file), "version": "v1"},
    }
    (root / model_name / "model-settings.json").write_text(json.dumps(model_settings, indent=1))
    return root


def command(root: Path) -> list[str | Path]:
    return [MLSERVER_CLI, "start", root]


def environment() -> dict[str, str]:
    """MLServer's venv first on PATH (its inference workers are spawned from it)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{MLSERVER_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(MLSERVER_VENV)
    return env
