"""What every request passes first (a plain ASGI middleware, so streaming answers pass untouched):
the API key check, the body size limit, and the request metrics.

The key is compared with :func:`hmac.compare_digest`, in time that does not depend on where a
wrong key differs. ``/healthz`` and ``/readyz`` (probes) and the OpenAPI docs stay open. A body
is read in full (the rerank routes need all of it anyway) and refused with 413 as soon as it
passes the limit, whatever Content-Length claims, so a client cannot make the server hold more.
"""

from __future__ import annotations

import hmac
import json
import time
from typing import Any

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

        async def send_and_note(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_progress.inc()
        try:
            await self._handle(scope, receive, send_and_note)
        finally:
            self.metrics.in_progress.dec()
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(label, str(status)).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - started)

    async def _handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self._key is not None and scope["path"] not in OPEN_PATHS and not self._authorised(scope):
            await _send_error(send, 401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                              [(b"www-authenticate", b"Bearer")])
            return
        limit = self.settings.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_error(send, 413, f"body: {int(declared)} bytes; at most {limit} (--max-body-bytes)")
            return
        chunks, size = [], 0
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


async def _send_error(send: Any, status: int, message: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"message": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})
