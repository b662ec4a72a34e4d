"""The server's own settings: names, limits, batching, security. The reranker is a RerankerSpec."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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

    served_model_name: str | None = None
    strict_model_name: bool = False
    api_key: str | None = None
    log_text: bool = False
    cors_origins: tuple[str, ...] = ()
    max_batch_size: int = 32
    max_batch_requests: int = 64
    max_wait_ms: float = 5.0
    cache: Path | None = None
    max_queue: int = 1024
    max_documents: int = 1000
    max_query_chars: int = 8192
    max_document_chars: int = 65536
    max_instruction_chars: int = 4096
    max_body_bytes: int = 16 * 1024 * 1024
    request_timeout: float = 600.0
    max_think_budget: int = 8192
    heartbeat_seconds: float = 15.0
    calibration: Path | None = None

    def __post_init__(self) -> None:
        positive_ints = ("max_batch_size", "max_batch_requests", "max_queue", "max_documents", "max_query_chars",
                         "max_document_chars", "max_instruction_chars", "max_body_bytes", "max_think_budget")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidInputError(f"{name} must be an int >= 1, got {value!r}")
        if not isinstance(self.max_wait_ms, (int, float)) or self.max_wait_ms < 0:
            raise InvalidInputError(f"max_wait_ms must be >= 0, got {self.max_wait_ms!r}")
        for name in ("request_timeout", "heartbeat_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InvalidInputError(f"{name} must be > 0 seconds, got {value!r}")
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
