"""Shared by the model server tests: small models with known answers, a registry on SQLite, and a
real uvicorn server on a free port in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn

from parity.models.artifacts import LocalArtifactStore
from parity.models.registry import ModelRegistry
from parity.models.sql import SqlModelStore
from parity.registry.sql import sqlite_url


class Affine:
    """y = x @ weights + bias for rows of x: an oracle anyone can compute by hand."""

    def __init__(self, weights: list[float], bias: float) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)
        self.bias = bias

    def predict(self, batch: Any) -> Any:
        return np.asarray(batch, dtype=np.float64) @ self.weights + self.bias


class Recorder:
    """Remembers the size of each batch it predicts, and fails any batch holding a row whose first
    value is -1 (a poisoned request)."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def predict(self, batch: Any) -> Any:
        rows = np.asarray(batch, dtype=np.float64)
        self.batches.append(len(rows))
        if (rows[:, 0] == -1).any():
            raise ValueError("poisoned row")
        time.sleep(0.002)  # a model call costs time, so concurrent requests queue up
        return rows.sum(axis=1)


def model_registry(root: Path, **options: Any) -> ModelRegistry:
    return ModelRegistry(
        SqlModelStore(sqlite_url(root / "registry.db")),
        LocalArtifactStore(root / "artifacts"),
        project="test",
        trusted=True,
        **options,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve `app` with uvicorn (lifespan included) until the block ends; yields host:port."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


class TripsModel:
    """10 x trips (-1 when unknown) + bonus, on a DataFrame: trips is a feature, bonus comes with
    the request."""

    def __init__(self, scale: float = 10.0) -> None:
        self.scale = scale

    def predict(self, frame: Any) -> Any:
        return frame["trips"].fillna(-1).to_numpy() * self.scale + frame["bonus"].to_numpy()
