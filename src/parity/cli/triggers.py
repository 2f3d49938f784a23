"""`parity triggers history | request`: retrain decisions with their evidence."""

from __future__ import annotations

import typer

triggers_app = typer.Typer(
    help="Retrain triggers: each decision to retrain or not, with its evidence (docs/lifecycle.md)."
)
