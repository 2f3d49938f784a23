"""What `parity serve` and `parity serve-models` say at start-up about access: whether auth is on,
what /push and rollout control need, and a warning when auth is off on an address others reach."""

from __future__ import annotations

import ipaddress

from parity.cli.common import push_note


def access_note(secured: bool, enable_push: bool) -> str:
    """The start-up line's part on auth and /push."""
    if secured:
        return "auth on: every route but the health probes needs a token; /push needs features:push"
    return f"auth off; {push_note(enable_push)}"


def open_warning(secured: bool, host: str, port: int) -> str | None:
    """A warning for auth off on an address that is not loopback (None otherwise)."""
    if secured or _loopback(host):
        return None
    return (
        f"WARNING: auth is off and the server listens on {host}: anyone who can reach port "
        f"{port} can read every feature and call every model (and write, where push or rollout "
        "control is on). Turn auth on in parity.yaml (auth: {enabled: true}) and create tokens "
        "with 'parity auth token create', or listen on 127.0.0.1."
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: only 'localhost' is known to stay on this machine
        return False
