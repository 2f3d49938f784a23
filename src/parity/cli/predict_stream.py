"""`parity predict stream`: score a stream source's events and publish the scores."""

from __future__ import annotations

from parity.cli.predict import predict_app

__all__ = ["predict_app"]
