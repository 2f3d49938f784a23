"""The store URLs of parity.yaml (online.connection_string, registry.url, models.artifacts),
checked with each backend's own parser, so a URL it cannot take is a config error when the config
is loaded, not a TypeError at the first read. Imports a backend only to check its URL; a missing
backend is left to the store's own BackendNotInstalled. Returns problems; never raises them.
"""

from __future__ import annotations

import importlib
import re
from typing import Any
from urllib.parse import urlsplit

from parity.redaction import redact

_KEYWORD = re.compile(r"keyword argument '([^']+)'")
_REDIS_FORM = "redis://[user@]host[:port][/db], rediss:// (TLS) or unix:///path"


def redis_url_problem(url: str) -> str | None:
    """Why redis-py (sync and asyncio clients) cannot use `url` as Parity does, or None."""
    try:
        import redis
        import redis.asyncio
    except ModuleNotFoundError:
        return None
    shown = repr(redact(url))  # quoted: a redacted ?token= value ends at the quote
    problem = _authority_problem(url)
    if problem is not None:
        return f"{shown}: {problem}; expected {_REDIS_FORM}"
    try:
        parts = urlsplit(url)
        kwargs = redis.connection.parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as error:
        return f"{shown}: {error}; expected {_REDIS_FORM}"
    path = parts.path.strip("/")
    if parts.scheme in ("redis", "rediss") and path and not path.isdigit():
        return f"{shown}: the database '{path}' is not a number; expected {_REDIS_FORM}"
    if kwargs.get("decode_responses"):
        return f"{shown}: remove decode_responses; Parity stores bytes and decodes them itself"
    for module in (redis, redis.asyncio):
        problem = _connection_problem(module, url)
        if problem is not None:
            return f"{shown}: {problem}"
    return None


def _connection_problem(module: Any, url: str) -> str | None:
    """Build (not open) a connection the way the client will: options in the query string
    reach the connection class, which refuses names it does not know."""
    pool = module.ConnectionPool.from_url(url)
    try:
        pool.make_connection()
    except TypeError as error:
        name = _KEYWORD.search(str(error))
        if name is None:
            return f"redis-py cannot use its options ({error})"
        return (
            f"'{name.group(1)}' is not a connection option redis-py knows; remove it from the "
            "query string (redis-py takes options such as socket_timeout and client_name)"
        )
    except ValueError as error:
        return f"redis-py cannot use its options ({error})"
    return None


def registry_url_problem(url: str) -> str | None:
    """Why `url` cannot be the PostgreSQL registry's SQLAlchemy URL, or None."""
    try:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError
    except ModuleNotFoundError:
        return None
    shown = repr(redact(url))
    form = "expected postgresql://user@host[:port]/database[?option=value]"
    problem = _authority_problem(url)
    if problem is not None:
        return f"{shown}: {problem}; {form}"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as error:
        return f"{shown}: not a database URL ({error}); {form}"
    if parsed.drivername not in ("postgresql", "postgres", "postgresql+psycopg"):
        return f"{shown}: registry type postgres takes a postgresql:// URL, not {parsed.drivername}"
    known = _libpq_options()
    unknown = [name for name in parsed.query if known is not None and name not in known]
    if unknown:
        return (
            f"{shown}: '{unknown[0]}' is not a PostgreSQL connection option; remove it from the "
            "query string (libpq takes options such as connect_timeout and sslmode)"
        )
    return None


def _libpq_options() -> set[str] | None:
    try:
        from psycopg import pq
    except ImportError:
        return None
    return {option.keyword.decode() for option in pq.Conninfo.get_defaults()}


def artifacts_url_problem(url: str) -> str | None:
    """Why fsspec cannot open `url` (a protocol it does not know), or None. A plain path, a
    file:// URL and a protocol whose package is missing (BackendNotInstalled later) pass."""
    if "://" not in url or url.lower().startswith("file://"):
        return None
    try:
        protocols = importlib.import_module("fsspec").available_protocols
    except (ImportError, AttributeError):  # no fsspec (or a stand-in without the registry)
        return None
    known = set(protocols())
    for part in url.split("::"):  # chained URLs: simplecache::s3://bucket/prefix
        protocol = part.split("://", 1)[0].lower() if "://" in part else part.lower()
        if protocol not in known:
            return (
                f"{redact(url)!r}: '{protocol}' is not a filesystem protocol fsspec knows; use a "
                "folder, or a URL such as s3://bucket/prefix, gs://, az:// or memory://"
            )
    return None


def _authority_problem(url: str) -> str | None:
    """A port that is not a number in 1-65535 (urllib's own check, with a clearer message)."""
    try:
        port = urlsplit(url).port
    except ValueError:
        return "the port is not a number in 1-65535"
    if port == 0:
        return "the port is not a number in 1-65535"
    return None
