"""Ray Data: rerank many queries over a Ray cluster, one engine per actor, through the judgment cache.

    >>> from functools import partial
    >>> reranker = RayReranker(partial(Rank1, "jhu-clsp/rank1-7b", engine="vllm"), cache="judgments.sqlite",
    ...                        workers=8, num_gpus=1, address="auto")
    >>> rankings = reranker.rerank_many(requests)        # same Rankings as Rank1(...).rerank_many

The work is cut into the same fixed chunks a single-process run through the cache uses (64
pairs pointwise, 1 query listwise; ``chunk_size``), one chunk per Ray Data row. ``map_batches``
runs them on a pool of ``workers`` actors; each actor builds its reranker once with
``factory()`` (so one engine, one model copy, per actor) and judges a chunk with
:func:`~thinkrank.cache.judge_with_cache` / :func:`~thinkrank.cache.rerank_with_cache`: it reads
what the cache already holds, computes the rest, and commits the chunk before returning it.
Because every chunk is judged whole, exactly as one process would judge it, greedy results are
identical to a single-process run.

Faults: Ray Data restarts a dead actor and retries its chunk (``max_restarts=-1``,
``max_task_retries=-1``). A chunk committed before the kill is read back from the cache on the
retry, not recomputed; a chunk killed half way was never committed, so it is judged once, on the
retry. A killed driver loses nothing committed either: run the same job again and only the
missing chunks are computed. Without a cache, retried chunks are recomputed.

The cache is one SQLite file that every actor writes (WAL mode, one transaction per chunk): on
one machine any path works; on several nodes it must be on a filesystem all of them share (NFS,
Lustre), or leave ``cache`` out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from functools import partial
from typing import Any, get_args

from thinkrank.cache import JudgmentCache
from thinkrank.rerankers.cached import (
    CacheUse,
    judge_with_cache,
    judgment_from_value,
    judgment_value,
    rerank_with_cache,
    ranking_from_value,
    ranking_value,
)
from thinkrank.errors import InvalidInputError, require
from thinkrank.families.base import Kind
from thinkrank.rerankers.base import Reranker, RequestLike, RerankRequest, as_request, instance_kind
from thinkrank.rerankers.pointwise import Pair
from thinkrank.types import Document, Ranking, as_documents, check_query

require("ray", "ray")
import ray  # noqa: E402

Progress = Callable[[int, int], None]
Factory = Callable[[], Reranker]


class RayReranker(Reranker):
    """A reranker whose work runs on Ray actors, each with its own engine.

    Args:
        factory: builds the reranker inside each actor, e.g. ``functools.partial(Rank1, model,
            **options)``; it must pickle (a module-level callable or a partial of one).
        cache: judgment cache file shared by the actors (None: no cache; retried chunks recompute).
        workers: actors, i.e. model copies; ``num_gpus`` / ``num_cpus``: resources of each.
        address: the Ray cluster: None or ``"local"`` starts a local Ray (as many logical CPUs as
            the workers need), ``"auto"`` joins the running cluster, ``"ray://host:10001"`` a
            remote one.
        judges: what one result of ``factory``'s reranker stands on (``Reranker.judges``):
            ``"pair"`` (judged pair by pair) or ``"query"``/``"set"`` (a whole query's
            candidates, e.g. listwise or Rank1 with a cascade). Default: asked of a reranker
            class or a ``functools.partial`` of one, with the partial's options; give it for any
            other factory.
        chunk_size: pairs (per pair, default 64) or queries (per query, default 1) per chunk.
        progress: ``progress(done, total)`` in pairs or queries, as chunks finish.

    Raises:
        InvalidInputError: a bad ``workers``, resource or ``chunk_size`` value, or an unknown mode.
        MissingExtraError: Ray is not installed (``thinkrank[ray]``).
    """

    def __init__(self, factory: Factory, *, cache: str | Path | None = None, workers: int = 2,
                 address: str | None = None, num_gpus: float = 0.0, num_cpus: float = 1.0,
                 judges: Kind | None = None, chunk_size: int | None = None,
                 progress: Progress | None = None) -> None:
        if not isinstance(workers, int) or workers < 1:
            raise InvalidInputError(f"workers must be an int >= 1, got {workers!r}")
        if num_gpus < 0 or num_cpus < 0:
            raise InvalidInputError(f"num_gpus and num_cpus must be >= 0, got {num_gpus} and {num_cpus}")
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise InvalidInputError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
        self.factory, self.workers, self.address = factory, workers, address
        self.num_gpus, self.num_cpus = float(num_gpus), float(num_cpus)
        self.cache_path = str(Path(cache).resolve()) if cache is not None else None
        if self.cache_path:
            JudgmentCache(self.cache_path).close()  # a bad file fails here, before Ray starts
        self._judges: Kind = _judges(factory) if judges is None else _check_kind(judges)
        self.pointwise = self._judges == "pair"
        self.chunk_size = chunk_size or (64 if self.pointwise else 1)
        self.progress = progress
        self.use = CacheUse()
        self._settings: dict[str, Any] | None = None
        self._kind: Kind | None = None
        self._started_ray = False

    @instance_kind
    def kind(self) -> Kind:
        """What one model call of the factory's reranker judges: its class's ``kind`` (a Reranker
        class or a partial of one), else asked of a reranker one Ray task builds."""
        if self._kind is None:
            cls = _reranker_class(self.factory)
            if cls is not None:
                self._kind = cls.kind
            else:
                self._connect()
                task = ray.remote(num_gpus=self.num_gpus, num_cpus=self.num_cpus)(_kind_of)
                self._kind = ray.get(task.remote(self.factory))
        return self._kind

    @property
    def judges(self) -> Kind:
        return self._judges

    @property
    def settings(self) -> dict[str, Any]:
        """The reranker's settings, as the actors report them (known after the first run; before
        it, one Ray task builds the reranker to read them)."""
        if self._settings is None:
            self._connect()
            task = ray.remote(num_gpus=self.num_gpus, num_cpus=self.num_cpus)(_settings_of)
            self._settings = ray.get(task.remote(self.factory))
        return self._settings

    def rerank_many(self, requests: Sequence[RequestLike], top_n: int | None = None) -> list[Ranking]:
        reqs = [as_request(r, i) for i, r in enumerate(requests)]
        # Bad input fails here, before any Ray work; pairs carry the query as a single process would.
        queries = [check_query(r.query) for r in reqs]
        docs = [as_documents(r.documents) for r in reqs]
        if not reqs:
            return []
        if self.pointwise:
            units = [_pair_row(q, r.instruction, d, i) for q, r, ds in zip(queries, reqs, docs) for i, d in enumerate(ds)]
        else:
            units = [_request_row(r, ds) for r, ds in zip(reqs, docs)]
        results = self._run(units)
        if self.pointwise:
            judged = iter(judgment_from_value(v, v["doc_id"], v["index"]) for v in results)
            return [Ranking(r.query, [next(judged) for _ in ds], r.query_id).truncate(top_n)
                    for r, ds in zip(reqs, docs)]
        return [ranking_from_value(v, r).truncate(top_n) for v, r in zip(results, reqs)]

    def close(self) -> None:
        """Shut Ray down if this reranker started it."""
        if self._started_ray and ray.is_initialized():
            ray.shutdown()
        self._started_ray = False

    # ---- internals ------------------------------------------------------------------------
    def _connect(self) -> None:
        if ray.is_initialized():
            return
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "WARNING"}
        if self.address in (None, "local"):
            # Logical CPUs for every worker even on a small machine (the model threads share cores).
            options["num_cpus"] = max(os.cpu_count() or 1, int(self.workers * self.num_cpus + 0.999) + 1)
        else:
            options["address"] = self.address
        ray.init(**options)
        self._started_ray = True

    def _run(self, units: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Judge ``units`` (pair or request rows) in fixed chunks on the actor pool; results in order."""
        self._connect()
        data = require("ray.data", "ray")
        data.DataContext.get_current().enable_progress_bars = False
        chunks = [units[i : i + self.chunk_size] for i in range(0, len(units), self.chunk_size)]
        rows = [{"chunk": k, "payload": json.dumps(c, ensure_ascii=False)} for k, c in enumerate(chunks)]
        dataset = data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            _ChunkJudge, batch_size=1, num_gpus=self.num_gpus, num_cpus=self.num_cpus,
            # One chunk in flight per actor: a chunk queued behind a busy actor would wait while another idles.
            compute=data.ActorPoolStrategy(size=self.workers, max_tasks_in_flight_per_actor=1),
            fn_constructor_kwargs={"factory": self.factory, "cache_path": self.cache_path, "pointwise": self.pointwise},
        )
        done: dict[int, list[dict[str, Any]]] = {}
        finished = 0
        if self.progress:
            self.progress(0, len(units))
        for row in dataset.iter_rows():
            chunk = int(row["chunk"])
            done[chunk] = json.loads(row["result"])
            self._settings = json.loads(row["settings"])
            self.use.cached += int(row["cached"])
            self.use.computed += int(row["computed"])
            finished += len(chunks[chunk])
            if self.progress:
                self.progress(finished, len(units))
        return [v for k in range(len(chunks)) for v in done[k]]


class _ChunkJudge:
    """A Ray Data actor: builds the reranker once, then judges one chunk per call through the cache."""

    def __init__(self, factory: Factory, cache_path: str | None, pointwise: bool) -> None:
        self.reranker: Any = factory()  # a pair judge has ``judge`` beside the Reranker API
        self.cache_path = cache_path
        self.pointwise = pointwise
        self.settings = json.dumps(self.reranker.settings)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"chunk": [], "result": [], "settings": [], "cached": [], "computed": []}
        for chunk, payload in zip(batch["chunk"], batch["payload"]):
            use = CacheUse()
            units = json.loads(payload)
            values = self._pointwise(units, use) if self.pointwise else self._listwise(units, use)
            out["chunk"].append(int(chunk))
            out["result"].append(json.dumps(values, ensure_ascii=False))
            out["settings"].append(self.settings)
            out["cached"].append(use.cached)
            out["computed"].append(use.computed)
        return out

    def _pointwise(self, units: list[dict[str, Any]], use: CacheUse) -> list[dict[str, Any]]:
        pairs = [Pair(u["query"], Document(u["id"], u["text"], u["title"]), u["index"], u["instruction"]) for u in units]
        if self.cache_path is None:
            judgments = self.reranker.judge(pairs)
            use.computed += len(judgments)
        else:
            # Opened per chunk: Ray Data may call the actor from another thread than the one that built it.
            with JudgmentCache(self.cache_path) as cache:
                judgments = judge_with_cache(self.reranker, pairs, cache, chunk_size=max(len(pairs), 1), use=use)
        return [{**judgment_value(j), "doc_id": j.doc_id, "index": j.index} for j in judgments]

    def _listwise(self, units: list[dict[str, Any]], use: CacheUse) -> list[dict[str, Any]]:
        requests = [RerankRequest(u["query"], u["documents"], u["query_id"], u["instruction"]) for u in units]
        if self.cache_path is None:
            rankings = self.reranker.rerank_many(requests)
            use.computed += len(rankings)
        else:
            with JudgmentCache(self.cache_path) as cache:
                rankings = rerank_with_cache(self.reranker, requests, cache, chunk_size=max(len(requests), 1), use=use)
        return [ranking_value(r) for r in rankings]


def _pair_row(query: str, instruction: str | None, document: Document, index: int) -> dict[str, Any]:
    return {"query": query, "instruction": instruction, "id": document.id, "text": document.text,
            "title": document.title, "index": index}


def _request_row(request: RerankRequest, documents: list[Document]) -> dict[str, Any]:
    return {"query": request.query, "instruction": request.instruction, "query_id": request.query_id,
            "documents": [{"id": d.id, "text": d.text, "title": d.title} for d in documents]}


def _settings_of(factory: Factory) -> dict[str, Any]:
    return factory().settings


def _kind_of(factory: Factory) -> Kind:
    return factory().kind


def _reranker_class(factory: Factory) -> type[Reranker] | None:
    """The Reranker class ``factory`` builds, when it is one or a ``functools.partial`` of one."""
    if isinstance(factory, partial) and isinstance(factory.func, type) and issubclass(factory.func, Reranker):
        return factory.func
    if isinstance(factory, type) and issubclass(factory, Reranker):
        return factory
    return None


def _judges(factory: Factory) -> Kind:
    """What ``factory``'s reranker judges, asked of its class with the options it will get."""
    cls = _reranker_class(factory)
    if cls is not None:
        return cls.judges_for(**factory.keywords) if isinstance(factory, partial) else cls.judges_for()
    raise InvalidInputError(
        "cannot tell what the factory's reranker judges (it is not a Reranker class or a functools.partial of one); "
        "pass judges='pair' (pair by pair) or judges='query' (a whole query at a time)"
    )


def _check_kind(judges: Any) -> Kind:
    if judges not in get_args(Kind):
        raise InvalidInputError(f"judges must be one of {', '.join(get_args(Kind))}, got {judges!r}")
    return judges
