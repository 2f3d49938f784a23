"""The one credential redaction of Parity: passwords in URLs (`scheme://user:PASSWORD@host`),
secret query parameters (`?password=...`), Parity API tokens' secrets (`parity_<id>_***`) and
bearer credentials (`Bearer ***`) become `***` in any text. Every ParityError's message
passes through `redact`; servers' log handlers get `RedactingFilter`. Imports nothing of Parity.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

HIDDEN = "***"

# scheme://[user]:password@ — the password runs to the last '@' of the authority (an unescaped
# '@' in a password is what urllib and redis-py's parsers accept too).
_USERINFO = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s'\"<>]*):(?P<secret>[^/?#\s'\"<>]*)@"
)
_QUERY = re.compile(
    r"(?P<head>[?&;](?:password|passwd|pwd|secret|token|access_token|secret_key|"
    r"secret_access_key|aws_secret_access_key|account_key|sas_token|sig)=)[^&#\s'\"<>]*",
    re.IGNORECASE,
)


# A Parity API token (serving/auth/tokens.py): its id is public, its secret is not.
_TOKEN = re.compile(r"\bparity_(?P<id>[0-9a-f]{12})_[A-Za-z0-9_\-]+")
# A bearer credential (RFC 6750's token68 characters, 12 or more: not an English word); a
# Parity token there keeps its public id (its secret is hidden by _TOKEN first).
_BEARER = re.compile(
    r"(?P<head>\bbearer\s+)(?!parity_[0-9a-f]{12}_)[A-Za-z0-9._~+/\-]{12,}=*", re.IGNORECASE
)


def redact(text: str) -> str:
    """`text` with every URL password, secret query parameter, API token secret and bearer
    credential replaced by `***`."""
    if "parity_" in text:
        text = _TOKEN.sub(lambda m: f"parity_{m['id']}_{HIDDEN}", text)
    if "earer" in text:
        text = _BEARER.sub(lambda m: f"{m['head']}{HIDDEN}", text)
    if "://" not in text and "=" not in text:  # the common case costs a few scans
        return text
    text = _USERINFO.sub(lambda m: f"{m['head']}:{HIDDEN}@", text)
    return _QUERY.sub(lambda m: f"{m['head']}{HIDDEN}", text)


def _clean(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


def redacted_log_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a logging dictConfig whose every handler redacts (RedactingFilter), with the
    root logger sent to its first handler, so library log lines are redacted too."""
    result = {**config, "filters": {**config.get("filters", {}), "redact": {"()": RedactingFilter}}}
    handlers = {
        name: {**handler, "filters": [*handler.get("filters", []), "redact"]}
        for name, handler in config.get("handlers", {}).items()
    }
    result["handlers"] = handlers
    if handlers and "root" not in config:
        result["root"] = {"handlers": [next(iter(handlers))], "level": "WARNING"}
    return result


class RedactingFilter(logging.Filter):
    """A handler filter that redacts each record's message and traceback text before any
    formatter sees them (the traceback is rendered once here and cached on the record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if redact(message) != message:
            # Redact the parts first, so formatters that read `args` (uvicorn's access log)
            # still find them; flatten to the redacted text if a secret remains.
            if isinstance(record.msg, str):
                record.msg = redact(record.msg)
            if isinstance(record.args, tuple):
                record.args = tuple(_clean(a) for a in record.args)
            elif isinstance(record.args, Mapping):
                record.args = {k: _clean(v) for k, v in record.args.items()}
            message = record.getMessage()
            if redact(message) != message:
                record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
