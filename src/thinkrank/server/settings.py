"""The server's own settings: names, limits, batching, security. The reranker is a RerankerSpec."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thinkrank.declare import Field, option
from thinkrank.declare import fields as declared_fields
from thinkrank.errors import InvalidInputError


@dataclass(frozen=True)
class ServerSettings:
    """How ``thinkrank serve`` behaves, validated on construction.

    Names and security:
        served_model_name: the name responses and ``GET /v1/models`` give (None: the model
            directory's or file's name, or the hub id, never a full filesystem path).
        strict_model_name: refuse (404) a request whose ``model`` is not ``served_model_name``.
            Off by default: the server serves one model, so any name (Cohere clients that send
            ``rerank-english-v3.0`` by default) is answered by it; the response names it.
        api_key: when set, every route but ``/healthz`` and ``/readyz`` needs
            ``Authorization: Bearer <api_key>`` (compared in constant time), else 401.
        log_text: put queries and documents into the request log (off: only sizes and ids).
        cors_origins: origins a browser may call from (``"*"``: any); empty: no CORS headers.
    Batching:
        max_batch_size: most documents judged in one engine call (pointwise; a listwise
            request is never split).
        max_batch_requests: most requests sharing one engine call; 1 serves one request at a
            time (no batching across requests).
        max_wait_ms: how long an idle server waits for more requests before an engine call.
        cache: an SQLite judgment cache file shared by all requests (None: no cache).
    Limits:
        max_queue: most documents waiting or in progress; more gets 429 with Retry-After.
        max_documents: most documents per request (413).
        max_query_chars / max_document_chars / max_instruction_chars: longest query, document
            and instruction text (413).
        max_body_bytes: largest request body (413).
        request_timeout: seconds a request may wait and run before a 504; also the longest a
            client may take to send its body (then 408 and the connection is closed).
        heartbeat_seconds: a streamed answer sends an SSE comment (``: ping``) at its start and
            after each this many seconds without an event, so proxies keep it open.
        max_think_budget: largest ``think_budget`` a request may ask for (422 above).
    Calibration:
        calibration: a calibration file (``thinkrank calibrate``) for the server's reranker
            setting: results of requests with that setting carry ``probability``.
    """

    served_model_name: str | None = option(None, "The model name responses and /v1/models give.  [default: the "
                                           "model directory's or file's name, or the hub id]")
    strict_model_name: bool = option(False, "Refuse (404) requests naming another model (default: any name is "
                                     "answered by the one served model).", flags=("--strict-model-name",))
    api_key: str | None = option(None, "Require 'Authorization: Bearer KEY' on every route but /healthz and "
                                 "/readyz.", envvar="THINKRANK_API_KEY", show_default=False)
    log_text: bool = option(False, "Log queries and documents (off: only sizes).", flags=("--log-text",))
    cors_origins: tuple[str, ...] = ()
    max_batch_size: int = option(32, "Most documents judged in one engine call.", minimum=1)
    max_batch_requests: int = option(64, "Most requests sharing one engine call (1: no batching across requests).",
                                     minimum=1)
    max_wait_ms: float = option(5.0, "How long an idle server waits to batch requests.", minimum=0.0)
    cache: Path | None = option(None, "SQLite judgment cache shared by all requests.")
    max_queue: int = option(1024, "Most documents waiting or in progress (then 429).", minimum=1)
    max_documents: int = option(1000, "Most documents per request (then 413).", minimum=1)
    max_query_chars: int = option(8192, "Longest query in characters (then 413).", minimum=1)
    max_document_chars: int = option(65536, "Longest document in characters (then 413).", minimum=1)
    max_instruction_chars: int = option(4096, "Longest instruction in characters (then 413).", minimum=1)
    max_body_bytes: int = option(16 * 1024 * 1024, "Largest request body (then 413).", minimum=1)
    request_timeout: float = option(600.0, "Seconds a request may take (then 504), and to send its body (then 408).",
                                    positive=True, unit=" seconds")
    max_think_budget: int = option(8192, "Largest think_budget a request may ask for.", minimum=1)
    heartbeat_seconds: float = option(15.0, "Streams send an SSE ': ping' comment this often while no result comes.",
                                      positive=True, unit=" seconds")
    calibration: Path | None = option(None, "Calibration file (thinkrank calibrate) for this setting: results then "
                                      "carry a calibrated `probability`.")

    def __post_init__(self) -> None:
        for name, declared in server_options().items():
            _check_number(name, declared, getattr(self, name))
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))
        if any(not isinstance(o, str) or not o.strip() for o in self.cors_origins):
            raise InvalidInputError(f"cors_origins must be non-empty strings, got {self.cors_origins!r}")
        if self.max_queue < self.max_documents:
            raise InvalidInputError(
                f"max_queue ({self.max_queue}) must be >= max_documents ({self.max_documents}), or a request with "
                "max_documents documents could never be queued"
            )
        if self.api_key is not None and not self.api_key.strip():
            raise InvalidInputError("api_key is empty; leave it out to serve without a key")
        if self.served_model_name is not None and not self.served_model_name.strip():
            raise InvalidInputError("served_model_name is empty")
        if self.cache is not None:
            object.__setattr__(self, "cache", Path(self.cache))
        if self.calibration is not None:
            object.__setattr__(self, "calibration", Path(self.calibration))


@functools.cache
def server_options() -> dict[str, Field]:
    """The options :class:`ServerSettings` declares (``thinkrank serve`` builds its flags from them)."""
    return declared_fields(ServerSettings)


def _check_number(name: str, field: Field, value: Any) -> None:
    d = field.declared
    if field.kind is int and d.minimum is not None:
        if not isinstance(value, int) or isinstance(value, bool) or value < d.minimum:
            raise InvalidInputError(f"{name} must be an int >= {d.minimum:g}, got {value!r}")
    elif field.kind is float and (d.positive or d.minimum is not None):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if d.positive and not (number and value > 0):
            raise InvalidInputError(f"{name} must be > 0{d.unit}, got {value!r}")
        if d.minimum is not None and not (number and value >= d.minimum):
            raise InvalidInputError(f"{name} must be >= {d.minimum:g}{d.unit}, got {value!r}")
