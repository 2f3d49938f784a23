"""What every `parity` command shares: the consoles, the repo option, one-line user errors."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from parity.errors import BackendNotInstalled, ParityError, PortInUse

if TYPE_CHECKING:
    from parity.feature_store import FeatureStore

console = Console(highlight=False)
err = Console(stderr=True, highlight=False)
state = {"debug": False}

RepoOption = Annotated[
    Path,
    typer.Option(
        "--repo", "-r", help="Feature repo folder (holds parity.yaml).", envvar="PARITY_REPO"
    ),
]
# Options the stream workers share (`parity ingest`, `parity predict stream`).
ConsumerOption = Annotated[
    str | None, typer.Option(help="Consumer name in the group (default host-pid).")
]
RedisUrlOption = Annotated[
    str | None,
    typer.Option(
        help="Redis holding the stream (default: the online store's, or local). One server's "
        "URL: on a Redis Cluster leave it out, and the online store's nodes are used."
    ),
]
UntilIdleOption = Annotated[
    bool, typer.Option(help="Exit when the stream has nothing new (for scripts and demos).")
]
ClaimIdleOption = Annotated[
    int, typer.Option(min=0, help="Claim messages another consumer left pending this long.")
]


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn ParityError into one clear line and exit code 1."""
    try:
        yield
    except ParityError as error:
        if state["debug"]:
            raise
        # soft_wrap: one line whatever the terminal's width (scripts grep it, users copy it)
        err.print(f"[red]Error[/] {escape(f'[{error.code}]: {error.message}')}", soft_wrap=True)
        raise typer.Exit(1) from None


def store_at(repo: Path) -> FeatureStore:
    from parity.feature_store import FeatureStore

    return FeatureStore(repo)


def command(function: Callable[..., None]) -> Callable[..., None]:
    """Wrap a command body in user_errors (keeps the signature typer reads)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        with user_errors():
            function(*args, **kwargs)

    return wrapper


def check_port(host: str, port: int) -> None:
    """Refuse, before anything starts, a port another process listens on (uvicorn would print
    'Errno 98' after the start-up line)."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise PortInUse(
                    f"port {port} on {host} is already in use; stop the process listening "
                    "there or pass --port with a free one"
                ) from None
            raise PortInUse(f"cannot listen on {host}:{port}: {error.strerror}") from None


def push_note(enable_push: bool) -> str:
    """What a server's start-up line says about /push (on only with --enable-push)."""
    if enable_push:
        return "/push on: anyone who reaches the port can write features"
    return "/push off: --enable-push turns it on"


def run_server(factory: Callable[[], Any], *, host: str, port: int, workers: int) -> None:
    """Run an app factory (a module-level function, which each worker process imports) with
    uvicorn's fastest settings: httptools, uvloop, no access log."""
    import sys

    try:
        import uvicorn
    except ModuleNotFoundError:
        raise BackendNotInstalled("serving needs uvicorn: pip install 'parity[serve]'") from None
    from uvicorn.config import LOGGING_CONFIG

    from parity.redaction import redacted_log_config

    uvicorn.run(
        f"{factory.__module__}:{factory.__name__}",
        factory=True,
        log_config=redacted_log_config(LOGGING_CONFIG),  # no credentials in any log line
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        http="httptools",
        loop="uvloop" if sys.platform != "win32" else "asyncio",
    )
