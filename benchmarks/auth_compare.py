"""Auth on against auth off at the same load, for bench_online.py and bench_models.py (issue 17):
a twin of a benchmark repo with `auth.enabled`, a token in its registry, the server's CPU time per
request from /proc, and the report (the difference per request against the 20 µs limit).

Both servers run at once (one per repo) and the load alternates between them, round by round
(off, on, on, off, ...), so a slow spell of a shared machine lands on both.
"""

from __future__ import annotations

import shutil
import statistics
import uuid
from dataclasses import dataclass, field
from pathlib import Path

LIMIT_US = 20.0


def auth_twin(repo: Path, twin: Path) -> Path:
    """A copy of `repo` (definitions, registry database, model artifacts: every relative path
    resolves the same; an online store outside it, e.g. Redis, is shared) with auth on."""
    shutil.rmtree(twin, ignore_errors=True)
    shutil.copytree(repo, twin, ignore=shutil.ignore_patterns("*.log", "__pycache__"))
    config = twin / "parity.yaml"
    text = config.read_text()
    if "\nauth:" in text or text.startswith("auth:"):
        raise ValueError(f"{config} already has an auth section")
    config.write_text(text.rstrip("\n") + "\nauth:\n  enabled: true\n")
    return twin


def create_token(repo: Path, scopes: str) -> str:
    """A new token in `repo`'s registry (`store.access.tokens.create`), its text."""
    from parity import FeatureStore

    store = FeatureStore(repo)
    try:
        _, text = store.access.tokens.create(f"bench-{uuid.uuid4().hex[:8]}", scopes.split())
        return str(text)
    finally:
        store.close()


def modes(rounds: int) -> list[str]:
    """off, on, on, off, off, on, ...: each mode first in every other round."""
    out: list[str] = []
    for index in range(rounds):
        out += ["off", "on"] if index % 2 == 0 else ["on", "off"]
    return out


@dataclass
class Phase:
    requests: int
    cpu_s: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def cpu_us(self) -> float:
        return self.cpu_s / self.requests * 1e6 if self.requests else float("nan")


@dataclass
class Comparison:
    """The phases of one load shape, by mode ("off", "on")."""

    label: str
    phases: dict[str, list[Phase]] = field(default_factory=lambda: {"off": [], "on": []})

    def add(self, mode: str, phase: Phase) -> None:
        self.phases[mode].append(phase)

    def median(self, mode: str, what: str) -> float:
        values = [getattr(p, what) for p in self.phases[mode]]
        return statistics.median(values) if values else float("nan")

    @property
    def cost_us(self) -> float:
        """Server CPU per request, auth on minus off (medians over the rounds)."""
        return self.median("on", "cpu_us") - self.median("off", "cpu_us")

    def lines(self) -> list[str]:
        off, on = self.median, self.median
        spread = [p.cpu_us for p in self.phases["off"]]
        return [
            f"  {self.label}: {len(self.phases['off'])} round(s) per mode",
            f"    server CPU per request  off {off('off', 'cpu_us'):8.1f} µs   "
            f"on {on('on', 'cpu_us'):8.1f} µs   difference {self.cost_us:+7.1f} µs "
            f"(off alone spread {min(spread, default=0):.1f}-{max(spread, default=0):.1f} µs)",
            f"    requests/s              off {off('off', 'rps'):8,.0f}      "
            f"on {on('on', 'rps'):8,.0f}",
            f"    p50 ms                  off {off('off', 'p50_ms'):8.3f}      "
            f"on {on('on', 'p50_ms'):8.3f}      difference "
            f"{(on('on', 'p50_ms') - off('off', 'p50_ms')) * 1e3:+7.1f} µs",
            f"    p99 ms                  off {off('off', 'p99_ms'):8.3f}      "
            f"on {on('on', 'p99_ms'):8.3f}",
            f"    errors (non-2xx)        off {sum(p.errors for p in self.phases['off']):8d}      "
            f"on {sum(p.errors for p in self.phases['on']):8d}",
        ]

    def target(self) -> str:
        """PASS/MISS against 20 µs; `----` when an answer was not 2xx (a phase that shed load
        is not the same load), with a note when the difference is inside the off phases' own
        spread (the machine's noise, not a result)."""
        cost = self.cost_us
        verdict = "PASS" if cost < LIMIT_US else "MISS"
        errors = sum(p.errors for ps in self.phases.values() for p in ps)
        spread = [p.cpu_us for p in self.phases["off"]]
        notes = []
        if errors:
            verdict = "----"
            notes.append(f"{errors} non-2xx answers: not the same load")
        if len(spread) > 1 and abs(cost) <= max(spread) - min(spread):
            notes.append("inside the off phases' own spread: noise")
        return (
            f"{verdict}  {self.label}: auth on - off = {cost:+.1f} µs of server CPU per request "
            f"(target < {LIMIT_US:g} µs: {cost / LIMIT_US:.2f}x)"
            + "".join(f"; {note}" for note in notes)
        )
