"""The server's own settings: names, limits, batching, security. The reranker is a RerankerSpec."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from thinkrank.errors import InvalidInputError


@dataclass(frozen=True)
class ServerSettings:
    """How ``thinkrank serve`` behaves, validated on construction.

    Names and security:
        served_model_name: the ``model`` requests must name (None: the spec's model name);
            any other name is a 404. Requests may leave ``model`` out.
        api_key: when set, every route but ``/healthz`` and ``/readyz`` needs
            ``Authorization: Bearer <api_key>`` (compared in constant time), else 401.
        log_text: put queries and documents into the request log (off: only sizes and ids).
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
        max_query_chars / max_document_chars: longest query and document text (413).
        max_body_bytes: largest request body (413).
        request_timeout: seconds a request may wait and run before a 504.
        max_think_budget: largest ``think_budget`` a request may ask for (422 above).
    Calibration:
        calibration: a calibration file (``thinkrank calibrate``) for the server's reranker
            setting: results of requests with that setting carry ``probability``.
    """

    served_model_name: str | None = None
    api_key: str | None = None
    log_text: bool = False
    max_batch_size: int = 32
    max_batch_requests: int = 64
    max_wait_ms: float = 5.0
    cache: Path | None = None
    max_queue: int = 1024
    max_documents: int = 1000
    max_query_chars: int = 8192
    max_document_chars: int = 65536
    max_body_bytes: int = 16 * 1024 * 1024
    request_timeout: float = 600.0
    max_think_budget: int = 8192
    calibration: Path | None = None

    def __post_init__(self) -> None:
        positive_ints = ("max_batch_size", "max_batch_requests", "max_queue", "max_documents", "max_query_chars",
                         "max_document_chars", "max_body_bytes", "max_think_budget")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidInputError(f"{name} must be an int >= 1, got {value!r}")
        if not isinstance(self.max_wait_ms, (int, float)) or self.max_wait_ms < 0:
            raise InvalidInputError(f"max_wait_ms must be >= 0, got {self.max_wait_ms!r}")
        if not isinstance(self.request_timeout, (int, float)) or self.request_timeout <= 0:
            raise InvalidInputError(f"request_timeout must be > 0 seconds, got {self.request_timeout!r}")
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
