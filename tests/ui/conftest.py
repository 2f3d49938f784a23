"""Fixtures of the UI's tests: the fraud world (tests/ui/world.py), built once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ui.world import World, build_world, copy_world


@pytest.fixture(scope="session")
def fraud_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Read it, do not change it: tests that act (rollout buttons, scans that write) take
    `fresh_world`."""
    world = build_world(tmp_path_factory.mktemp("ui-world") / "fraud_detection")
    yield world
    world.store.close()


@pytest.fixture
def fresh_world(fraud_world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    world = copy_world(fraud_world, tmp_path_factory.mktemp("ui-copy") / "fraud_detection")
    yield world
    world.store.close()
