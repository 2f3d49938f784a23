"""Admission control as plain ASGI middleware (no per-request task or body copy):

- more than `max_in_flight` requests at once -> a fast 503 (with `Retry-After: 1`) instead of
  an unbounded queue;
- a body over `max_body_bytes` (by Content-Length, or counted while streaming) -> 413: the
  receive the app reads through raises BodyTooLarge (a ParityError, so each app answers it in its
  own error shape), and the guard answers for an app that let it escape;
- every answered request's latency goes into the histogram, labelled by known path;
- `fast_routes` answer their (method, path) straight from the body bytes, skipping the
  framework's routing and dependency layers (the feature lookup is the hot path).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from parity.errors import BodyTooLarge
from parity.serving.errors import body_for

if TYPE_CHECKING:
    from starlette.responses import Response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


FastRoute = Callable[[bytes, Scope], Awaitable["Response"]]  # the body, and the scope
ErrorBody = Callable[[str, str], Any]


class RequestMetrics(Protocol):
    def observe(self, path: str, seconds: float) -> None: ...

    def error(self, code: str) -> None: ...


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: RequestMetrics,
        max_in_flight: int,
        max_body_bytes: int,
        fast_routes: Mapping[tuple[str, str], FastRoute] | None = None,
        error_body: ErrorBody = body_for,
    ) -> None:
        self.app = app
        self.fast_routes = dict(fast_routes or {})
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.max_body_bytes = max_body_bytes
        self.in_flight = 0
        self.error_body = error_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            await self._refuse(send, 503, "overloaded", "too many requests in flight; retry")
            return
        length = _content_length(scope)
        if length is not None and length > self.max_body_bytes:
            await self._refuse(send, 413, BodyTooLarge.code, self._too_large().message)
            return
        self.in_flight += 1
        started = time.perf_counter()
        seen = 0
        responded = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body_bytes:
                raise self._too_large()
            return message

        async def watching_send(message: Message) -> None:
            nonlocal responded
            responded = True
            await send(message)

        try:
            fast = self.fast_routes.get((scope["method"], scope["path"]))
            if fast is None:
                await self.app(scope, counting_receive, watching_send)
            else:
                response = await fast(await read_body(counting_receive), scope)
                await response(scope, counting_receive, watching_send)
        except BodyTooLarge as failure:
            if not responded:
                await self._refuse(send, 413, failure.code, failure.message)
        finally:
            self.in_flight -= 1
            self.metrics.observe(scope["path"], time.perf_counter() - started)

    def _too_large(self) -> BodyTooLarge:
        return BodyTooLarge(
            f"request body over {self.max_body_bytes} bytes; send less per request (the limit "
            "is the server's --max-body-bytes)"
        )

    async def _refuse(self, send: Send, status: int, code: str, message: str) -> None:
        self.metrics.error(code)
        payload = orjson.dumps(self.error_body(code, message))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    *([(b"retry-after", b"1")] if status == 503 else []),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


async def read_body(receive: Receive) -> bytes:
    """The whole request body (stops early if the client disconnects). Behind the Guard, a body
    over its limit raises BodyTooLarge from here: answer it as any ParityError."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None
