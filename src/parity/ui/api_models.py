"""/ui/api routes of the models part (filled by its owner)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["models"])
