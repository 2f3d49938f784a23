"""Stand-ins for the modules other workstreams of issue 17 write (`parity.registry.audit`,
`parity.serving.auth.limits`), installed only while the real ones are missing, so the gate's
tests run before those land. Each follows the interface in the issue's brief."""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any


def _audit() -> types.ModuleType:
    module = types.ModuleType("parity.registry.audit")

    @dataclass(frozen=True)
    class Actor:
        name: str
        kind: str
        origin: str = ""

    current: ContextVar[Actor | None] = ContextVar("actor", default=None)

    @contextmanager
    def acting_as(actor: Actor) -> Iterator[Actor]:
        token = current.set(actor)
        try:
            yield actor
        finally:
            current.reset(token)

    def current_actor() -> Actor:
        return current.get() or Actor("local", "user", "")

    module.__dict__.update(Actor=Actor, acting_as=acting_as, current_actor=current_actor)
    return module


def _limits() -> types.ModuleType:
    module = types.ModuleType("parity.serving.auth.limits")

    class ClientLimits:
        def __init__(self, defaults: Any, server_max_in_flight: int, clock: Any = None) -> None:
            self.defaults = defaults

        def enter(self, principal: Any) -> None:
            pass

        def leave(self, principal: Any) -> None:
            pass

    module.__dict__.update(ClientLimits=ClientLimits)
    return module


def install() -> None:
    for name, build in (
        ("parity.registry.audit", _audit),
        ("parity.serving.auth.limits", _limits),
    ):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError:
            sys.modules[name] = build()
