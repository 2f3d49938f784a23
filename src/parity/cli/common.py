"""What every `parity` command shares: the consoles, the repo option, one-line user errors."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from parity.errors import BackendNotInstalled, InvalidOption, ParityError, PortInUse

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
# TLS for both servers (`parity serve`, `parity serve-models`): give both or neither.
TlsCertOption = Annotated[
    Path | None,
    typer.Option(
        "--tls-cert",
        help="Serve HTTPS with this PEM certificate (chain); needs --tls-key.",
        dir_okay=False,
    ),
]
TlsKeyOption = Annotated[
    Path | None,
    typer.Option(
        "--tls-key", help="The certificate's PEM private key (unencrypted).", dir_okay=False
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


@dataclass(frozen=True)
class Tls:
    """A server's certificate and key files (absolute paths), checked to load as a pair."""

    cert: Path
    key: Path


def check_tls(cert: Path | None, key: Path | None) -> Tls | None:
    """The TLS files of --tls-cert/--tls-key (None: neither given, plain HTTP). InvalidOption
    naming the option for one without the other, an unreadable file, or a pair that does not
    load (a key of another certificate, not PEM, or encrypted: there is no password prompt)."""
    import ssl

    if cert is None and key is None:
        return None
    if cert is None or key is None:
        given, missing = ("--tls-cert", "--tls-key") if key is None else ("--tls-key", "--tls-cert")
        raise InvalidOption(f"{given} needs {missing}: give both to serve HTTPS, or neither")
    for option, path in (("--tls-cert", cert), ("--tls-key", key)):
        try:
            text = path.read_bytes()
        except OSError as error:
            raise InvalidOption(f"{option} {path}: cannot read it ({error.strerror})") from None
        _check_pem(option, path, text)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key, password=lambda: b"")
    except (ssl.SSLError, ValueError) as error:
        raise InvalidOption(
            f"--tls-key {key} is not the key of --tls-cert {cert} ({error.args[-1]}): give the "
            "certificate's own private key"
        ) from None
    return Tls(cert.resolve(), key.resolve())


def _check_pem(option: str, path: Path, text: bytes) -> None:
    """InvalidOption unless `text` is what `option` takes: a PEM certificate, or a PEM private
    key that is not encrypted (the server could only ask for its password on a terminal)."""
    if option == "--tls-cert" and b"-----BEGIN CERTIFICATE-----" not in text:
        raise InvalidOption(f"{option} {path}: not a PEM certificate (-----BEGIN CERTIFICATE-----)")
    if option == "--tls-key":
        if b"BEGIN ENCRYPTED PRIVATE KEY" in text or b"Proc-Type: 4,ENCRYPTED" in text:
            raise InvalidOption(
                f"{option} {path}: the key is encrypted; give it unencrypted (e.g. openssl pkey "
                "-in KEY -out PLAIN.key) and readable only by the server's user"
            )
        if b"PRIVATE KEY-----" not in text:
            raise InvalidOption(
                f"{option} {path}: not a PEM private key (-----BEGIN PRIVATE KEY-----)"
            )


def base_url(host: str, port: int, tls: Tls | None) -> str:
    """What a server's start-up line says it serves on: https:// with TLS files."""
    return f"{'https' if tls is not None else 'http'}://{host}:{port}"


def with_audit_lines(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of uvicorn's logging config that also writes the audit trail's records (logger
    `parity.audit`, one JSON object per line) to standard output, apart from the server's own
    log on standard error, so a log shipper can collect them as they are."""
    return {
        **config,
        "formatters": {**config["formatters"], "audit": {"format": "%(message)s"}},
        "handlers": {
            **config["handlers"],
            "audit": {
                "class": "logging.StreamHandler",
                "formatter": "audit",
                "stream": "ext://sys.stdout",
            },
        },
        "loggers": {
            **config["loggers"],
            "parity.audit": {"handlers": ["audit"], "level": "INFO", "propagate": False},
        },
    }


def run_server(
    factory: Callable[[], Any], *, host: str, port: int, workers: int, tls: Tls | None = None
) -> None:
    """Run an app factory (a module-level function, which each worker process imports) with
    uvicorn's fastest settings: httptools, uvloop, no access log; HTTPS with `tls` (TLS 1.2 or
    later, Python's default for a server context)."""
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
        log_config=redacted_log_config(with_audit_lines(LOGGING_CONFIG)),  # no credentials
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        http="httptools",
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        ssl_certfile=None if tls is None else str(tls.cert),
        ssl_keyfile=None if tls is None else str(tls.key),
    )
