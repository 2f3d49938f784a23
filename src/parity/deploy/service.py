"""`Rollouts` (`store.rollouts`): the deploy layer's one entry point. Starts, inspects and steers
rollouts, evaluates their gates once (`step`) or in a leased loop (`run`), and tells the model
server how to route (`routes`). Wires deploy's modules to the store; the logic lives in them.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from parity.definitions.rollout import Rollout
from parity.deploy.state import RolloutEvent, RolloutState
from parity.inference.routing import Routes

if TYPE_CHECKING:
    from parity.feature_store import FeatureStore


class Rollouts:
    """Rollouts of one project's models; state and every decision in the registry database."""

    def __init__(self, store: FeatureStore, *, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self._clock = clock or store.now

    # --- lifecycle ---------------------------------------------------------------------------

    def start(
        self,
        rollout: Rollout | str | None = None,
        *,
        model: str | None = None,
        candidate: int | str | None = None,
        actor: str = "",
    ) -> RolloutState:
        """Start a rollout: a `Rollout` value, the name of one applied in the repo, or (None) the
        defaults for `model` and `candidate`. InvalidRollout names the field and the fix (no
        champion, candidate equal to the champion, unknown gate metric, ...); RolloutActive when
        the model already has one."""
        raise NotImplementedError

    def status(self, model: str) -> RolloutState:
        """The model's latest rollout (active or finished); RolloutNotFound if it never had one."""
        raise NotImplementedError

    def list(self, *, active_only: bool = False) -> list[RolloutState]:
        raise NotImplementedError

    def pause(self, model: str, *, reason: str = "", actor: str = "") -> RolloutState:
        raise NotImplementedError

    def resume(self, model: str, *, reason: str = "", actor: str = "") -> RolloutState:
        raise NotImplementedError

    def promote(self, model: str, *, reason: str = "", actor: str = "") -> RolloutState:
        """Move the champion alias to the candidate now (compare-and-swap on the alias)."""
        raise NotImplementedError

    def abort(self, model: str, *, reason: str = "", actor: str = "") -> RolloutState:
        """Candidate weight back to 0; the champion alias is not touched."""
        raise NotImplementedError

    def history(self, model: str, rollout: str | None = None) -> builtins.list[RolloutEvent]:
        """Every event of the model's latest rollout (or of rollout id `rollout`), oldest first."""
        raise NotImplementedError

    # --- control loop ------------------------------------------------------------------------

    def step(
        self, *, now: datetime | None = None, owner: str | None = None
    ) -> builtins.list[RolloutEvent]:
        """One evaluation of every active rollout (if this process holds the lease): gates
        checked, steps advanced, promoted or aborted. Returns the events it recorded."""
        raise NotImplementedError

    def run(self, *, stop: threading.Event, owner: str | None = None) -> None:
        """`step` every interval until `stop` is set (parity rollout run, parity serve-models)."""
        raise NotImplementedError

    # --- data plane --------------------------------------------------------------------------

    def routes(self) -> Mapping[str, Routes]:
        """Routes of every model with an active rollout, by model name (read by every worker of
        the model server, refreshed like aliases)."""
        raise NotImplementedError
