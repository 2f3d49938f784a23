"""`parity predict batch | stream`: the serving patterns besides request/response. `batch` is
here; `stream` is in cli/predict_stream.py and registers itself on `predict_app`."""

from __future__ import annotations

import typer

predict_app = typer.Typer(help="Batch and streaming predictions (docs/lifecycle.md).")
