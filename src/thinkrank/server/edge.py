"""What every request passes first (a plain ASGI middleware, so streaming answers pass untouched):
the request id, the API key check, the body size and time limits, and the request metrics.

The key is compared with :func:`hmac.compare_digest`, in time that does not depend on where a
wrong key differs. ``/healthz`` and ``/readyz`` (probes), the OpenAPI docs and ``OPTIONS``
(CORS preflights, which browsers send without credentials) stay open. A body is read in full
(the rerank routes need all of it anyway) and refused with 413 as soon as it passes the limit,
whatever Content-Length claims, so a client cannot make the server hold more; a body not
received in full within the request timeout is answered 408 and its connection closed, so a
slow or stalled client cannot hold one open.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Sequence
from typing import Any

from thinkrank.server import request_id
from thinkrank.server.metrics import Metrics
from thinkrank.server.settings import ServerSettings

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})


class Edge:
    def __init__(self, app: Any, settings: ServerSettings, metrics: Metrics) -> None:
        self.app, self.settings, self.metrics = app, settings, metrics
        self._key = settings.api_key.encode() if settings.api_key else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        rid = request_id.choose(_header(scope, request_id.HEADER))
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id.current.set(rid)

        async def send_and_note(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                if not any(k.lower() == request_id.HEADER for k, _ in headers):
                    message = {**message, "headers": [*headers, (request_id.HEADER, rid.encode())]}
            await send(message)

        self.metrics.in_progress.inc()
        try:
            await self._handle(scope, receive, send_and_note)
        finally:
            request_id.current.reset(token)
            self.metrics.in_progress.dec()
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(label, str(status)).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - started)

    async def _handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        open_path = scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS"
        if self._key is not None and not open_path and not self._authorised(scope):
            await _send_error(send, 401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                              [(b"www-authenticate", b"Bearer")])
            return
        limit = self.settings.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_error(send, 413, f"body: {int(declared)} bytes; at most {limit} (--max-body-bytes)")
            return
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.settings.request_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        await _send_error(send, 413, f"body: more than {limit} bytes (--max-body-bytes)")
                        return
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await _send_error(send, 408, f"body: not received in full within {self.settings.request_timeout:g}s "
                                         f"(--request-timeout; {size} bytes came)", [(b"connection", b"close")])
            return
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the client to leave (streaming answers listen)

        await self.app(scope, replay, send)

    def _authorised(self, scope: dict[str, Any]) -> bool:
        value = _header(scope, b"authorization") or ""
        scheme, _, token = value.partition(" ")
        given = token.strip().encode() if scheme.lower() == "bearer" else b""
        assert self._key is not None
        return hmac.compare_digest(given, self._key)


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _send_error(send: Any, status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"message": message, "request_id": request_id.current.get()}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})
