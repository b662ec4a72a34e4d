"""Every request's id: the client's ``X-Request-Id`` when it is a plain token, else a new one.
It comes back in the ``X-Request-Id`` header of every answer, in the body of every error and as
``id`` of a rerank response, and :class:`RequestIdFilter` puts it into every log line written
while the request is handled (``%(request_id)s``; ``-`` outside a request)."""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar
from typing import Any

HEADER = b"x-request-id"
current: ContextVar[str] = ContextVar("thinkrank_request_id", default="-")

# Reflected into headers and logs: printable, no spaces or quotes, bounded.
_TOKEN = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")


def choose(given: str | None) -> str:
    """``given`` when it is a usable id, else a fresh one."""
    return given if given is not None and _TOKEN.fullmatch(given) else uuid.uuid4().hex


def of(scope: dict[str, Any]) -> str:
    """The id the edge gave this request (``-`` for one that never passed it)."""
    return scope.get("state", {}).get("request_id", "-")


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record a handler formats."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = current.get()
        return True
