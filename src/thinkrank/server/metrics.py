"""Prometheus metrics of one server (its own registry: two apps in one process never mix counts)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from thinkrank.errors import require

_DOC_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_REQUEST_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    """The server's counters, gauges and histograms; ``render()`` is the ``/metrics`` body."""

    def __init__(self, queue_depth: Callable[[], float]) -> None:
        prom = require("prometheus_client", "server")
        self._prom = prom
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.requests = prom.Counter("thinkrank_requests", "HTTP requests by route and status.",
                                     ["route", "status"], registry=r)
        self.latency = prom.Histogram("thinkrank_request_duration_seconds", "Time from request to response, by route.",
                                      ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.judgments = prom.Counter("thinkrank_judgments", "Documents judged, computed or read from the cache.",
                                      ["source"], registry=r)
        self.generated_tokens = prom.Counter("thinkrank_generated_tokens", "Reasoning tokens generated.", registry=r)
        self.prompt_tokens = prom.Counter("thinkrank_prompt_tokens", "Prompt tokens of computed judgments.", registry=r)
        self.rejected = prom.Counter("thinkrank_rejected", "Requests refused for capacity, by reason "
                                     "(queue_full, timeout, shutting_down, not_ready).", ["reason"], registry=r)
        self.batch_documents = prom.Histogram("thinkrank_batch_documents", "Documents per engine call.",
                                              buckets=_DOC_BUCKETS, registry=r)
        self.batch_requests = prom.Histogram("thinkrank_batch_requests", "Requests sharing one engine call.",
                                             buckets=_REQUEST_BUCKETS, registry=r)
        self.batch_seconds = prom.Histogram("thinkrank_batch_duration_seconds", "Time per engine call.",
                                            buckets=_LATENCY_BUCKETS, registry=r)
        self.in_progress = prom.Gauge("thinkrank_requests_in_progress", "HTTP requests being answered (this "
                                      "scrape included).", registry=r)
        depth = prom.Gauge("thinkrank_queue_depth", "Documents waiting or being judged.", registry=r)
        depth.set_function(queue_depth)

    def render(self) -> tuple[bytes, str]:
        return self._prom.generate_latest(self.registry), self._prom.CONTENT_TYPE_LATEST

    def computed(self, judgments: Any) -> None:
        """Count judgments the engine just made (not cache hits)."""
        self.judgments.labels("computed").inc(len(judgments))
        self.generated_tokens.inc(sum(j.reasoning_tokens for j in judgments))
        self.prompt_tokens.inc(sum(j.prompt_tokens for j in judgments))
