"""`parity jobs run | list | status | cancel`: durable training jobs and their runner."""

from __future__ import annotations

import typer

jobs_app = typer.Typer(
    help="Training jobs: run, list, inspect and cancel durable jobs (docs/lifecycle.md)."
)
