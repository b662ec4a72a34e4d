"""The reranking behind the HTTP routes: one loaded reranker, its per-request variants, the
optional judgment cache and the batcher, with nothing HTTP-specific.

Everything that touches the engine or the SQLite cache runs in one worker thread: the engine
is not re-entrant, and an SQLite connection belongs to the thread that opened it. The checks a
request passes before it joins a batch (:meth:`RerankService.check`: the library's own, token
counts included) run in a second thread, so they never wait behind an engine call; they only
read the tokenizer (``encode``), which is safe beside the engine's own use of it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thinkrank.rerankers.base import Reranker, RerankRequest
from thinkrank.rerankers.spec import RerankerSpec, build_reranker
from thinkrank.server.batching import Batcher, BatchStats
from thinkrank.server.metrics import Metrics
from thinkrank.server.settings import ServerSettings

log = logging.getLogger("thinkrank.server")


@dataclass(frozen=True)
class Variant:
    """The per-request settings that change a judgment: requests with equal variants share calls."""

    reasoning: bool
    think_budget: int
    max_passage_tokens: int | None
    per_query: bool = False
    """Judged a whole request at a time (listwise, setwise, or the server's cascade), not pair by pair."""


class RerankService:
    """Loads the reranker (or takes one), then judges jobs through the batcher."""

    def __init__(self, spec: RerankerSpec, settings: ServerSettings, reranker: Reranker | None = None) -> None:
        self.spec, self.settings = spec, settings
        self.base: Any = reranker  # a model reranker (Rank1, RankK, …): its engine is shared by variants
        self.load_error: str | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thinkrank-engine")
        self.checker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thinkrank-check")
        self._variants_lock = threading.Lock()
        self.metrics = Metrics(lambda: self.batcher.pending if self.batcher else 0)
        self.batcher: Batcher | None = None
        self._variants: dict[Variant, Reranker] = {}
        self._cache: Any = None
        self.calibration: Any = None
        self._loading: asyncio.Future[None] | None = None

    @property
    def ready(self) -> bool:
        return self.base is not None and self._loading is not None and self._loading.done() and not self.load_error

    @property
    def model_name(self) -> str:
        return self.settings.served_model_name or short_model_name(self.spec.model_name)

    @property
    def context_length(self) -> int | None:
        return getattr(getattr(self.base, "engine", None), "context_length", None)

    @property
    def pointwise(self) -> bool:
        """Whether the reranker judges pairs (each request is then split into pairs)."""
        return self.spec.kind == "pair"

    # ---- lifecycle (called from the app's lifespan) -------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        s = self.settings
        self.batcher = Batcher(self._compute, self.executor, max_batch_size=s.max_batch_size,
                               max_batch_requests=s.max_batch_requests, max_wait=s.max_wait_ms / 1000,
                               max_queue=s.max_queue, observe=self._observe)
        self.batcher.start()
        # Loading runs in the worker thread (a model can take minutes): /healthz answers meanwhile
        # and /readyz says when it is done.
        self._loading = loop.run_in_executor(self.executor, self._load)
        self._loading.add_done_callback(self._loaded)

    async def stop(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
        if self._cache is not None:
            await asyncio.get_running_loop().run_in_executor(self.executor, self._cache.close)
        self.executor.shutdown(wait=True)
        self.checker.shutdown(wait=True)

    def _load(self) -> None:
        if self.base is None:
            self.base = build_reranker(self.spec)
        if self.settings.calibration is not None:
            from thinkrank.calibration.file import calibration_for

            self.calibration = calibration_for(self.settings.calibration, self.base.settings, "the server's reranker")
        if self.settings.cache is not None:
            from thinkrank.cache import JudgmentCache

            self._cache = JudgmentCache(self.settings.cache)

    def _loaded(self, future: asyncio.Future[None]) -> None:
        exc = future.exception()
        if exc is not None:
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.error("could not load the reranker: %s", self.load_error)
        else:
            log.info("reranker ready: %s", self.model_name)

    def info(self) -> dict[str, Any]:
        return dict(self.base.settings) if self.base is not None else {}

    # ---- per-request variants -------------------------------------------------------------------
    def variant(self, reasoning: bool | None, think_budget: int | None, max_tokens_per_doc: int | None) -> Variant:
        """The variant a request asks for, from the server's defaults and the request's overrides."""
        base_limit = getattr(self.base, "max_passage_tokens", None)
        limit = max_tokens_per_doc if base_limit is None else min(base_limit, max_tokens_per_doc or base_limit)
        if not self.pointwise:
            return Variant(False, 0, limit, per_query=True)
        reasoning = self.spec.reasoning if reasoning is None else reasoning
        budget = (think_budget or self.spec.think_budget) if reasoning else 0
        # The server's cascade applies to requests with reasoning on; reasoning off needs no chains to save.
        return Variant(reasoning, budget, limit, per_query=reasoning and self.spec.judges != "pair")

    async def check(self, variant: Variant, request: RerankRequest) -> None:
        """The reranker's own checks of ``request`` under ``variant`` (no model work).

        Raises:
            InvalidInputError: what the library would refuse, e.g. a query too long for the context.
        """
        await asyncio.get_running_loop().run_in_executor(self.checker, self._check, variant, request)

    def _check(self, variant: Variant, request: RerankRequest) -> None:
        self._reranker(variant).check(request)

    def _reranker(self, variant: Variant) -> Reranker:
        with self._variants_lock:  # the check thread and the engine thread both ask
            return self._build_variant(variant)

    def _build_variant(self, variant: Variant) -> Reranker:
        assert self.base is not None
        if variant not in self._variants:
            if self._default_variant() == variant:
                self._variants[variant] = self.base
            else:
                changes: dict[str, Any] = {"max_passage_tokens": variant.max_passage_tokens}
                if self.pointwise:
                    changes.update(reasoning=variant.reasoning, think_budget=variant.think_budget or self.spec.think_budget,
                                   cascade=self.spec.cascade if variant.per_query else None)
                self._variants[variant] = build_reranker(self.spec.replace(**changes), engine=self.base.engine)
        return self._variants[variant]

    def _default_variant(self) -> Variant:
        return self.variant(None, None, None)

    # ---- the work (in the worker thread) ------------------------------------------------------
    def _compute(self, key: Hashable, units: list[Any]) -> list[Any]:
        assert isinstance(key, Variant)
        reranker = self._reranker(key)
        results = self._rank(reranker, units) if key.per_query else self._judge(reranker, units)
        # Only requests with the calibrated setting get probabilities (another think_budget is another setting).
        if self.calibration is not None and self.calibration.fits(reranker.settings):
            if key.per_query:
                self.calibration.apply(results)
            else:
                self.calibration.apply_judgments(results)
        return results

    def _judge(self, reranker: Any, pairs: list[Any]) -> list[Any]:
        metered = _Metered(reranker, self.metrics)
        if self._cache is None:
            return metered.judge(pairs)
        from thinkrank.rerankers.cached import CacheUse, judge_with_cache

        use = CacheUse()
        judgments = judge_with_cache(metered, pairs, self._cache, chunk_size=max(1, len(pairs)), use=use)
        self.metrics.judgments.labels("cached").inc(use.cached)
        return judgments

    def _rank(self, reranker: Any, requests: list[RerankRequest]) -> list[Any]:
        metered = _Metered(reranker, self.metrics)
        if self._cache is None:
            return metered.rerank_many(requests)
        from thinkrank.rerankers.cached import CacheUse, rerank_with_cache

        use = CacheUse()
        rankings = rerank_with_cache(metered, requests, self._cache, chunk_size=max(1, len(requests)), use=use)
        self.metrics.judgments.labels("cached").inc(
            sum(len(r.documents) for r in requests) - int(metered.counted))
        return rankings

    def _observe(self, stats: BatchStats) -> None:
        self.metrics.batch_documents.observe(stats.documents)
        self.metrics.batch_requests.observe(stats.requests)
        self.metrics.batch_seconds.observe(stats.seconds)


def short_model_name(model: str) -> str:
    """The name a server shows for ``model``: a local directory's or file's own name (never the
    whole filesystem path, which would leak into every response), a hub id as it is."""
    path = Path(model)
    return path.resolve().name if path.exists() else model


class _Metered:
    """A reranker whose computed results are counted in the metrics (cache hits are not)."""

    def __init__(self, reranker: Any, metrics: Metrics) -> None:
        self.reranker, self.metrics = reranker, metrics
        self.counted = 0

    @property
    def settings(self) -> dict[str, Any]:
        return self.reranker.settings

    def judge(self, pairs: list[Any], **options: Any) -> list[Any]:
        judgments = self.reranker.judge(pairs, **options)
        self.metrics.computed(judgments)
        self.counted += len(judgments)
        return judgments

    def rerank_many(self, requests: list[RerankRequest]) -> list[Any]:
        rankings = self.reranker.rerank_many(requests)
        for ranking in rankings:
            if not ranking.calls:  # a cascade: its judgments carry their own tokens
                self.metrics.computed(ranking.judgments)
            else:  # listwise windows or setwise comparisons
                self.metrics.judgments.labels("computed").inc(len(ranking))
                self.metrics.generated_tokens.inc(sum(c.completion_tokens for c in ranking.calls))
                self.metrics.prompt_tokens.inc(sum(c.prompt_tokens for c in ranking.calls))
            self.counted += len(ranking)
        return rankings
