"""Rerankers in front of a :class:`~thinkrank.cache.JudgmentCache`: nothing is computed twice.

Pointwise judgments are cached per (query, document) pair; listwise and setwise rankings, which
depend on the whole candidate list, per (query, ordered candidates), with their window or
comparison traces. A key is the SHA-256 of the
reranker's ``settings`` (model, engine, prompt template, budgets, …), the query, its
instruction and the document title and text, so a change to any of them is a miss.

:func:`judge_with_cache` judges only the missing pairs, in fixed chunks (the engine sorts a
chunk's pairs by length before batching them), and commits every engine batch as it finishes:
a killed process loses at most the batch in flight. A rerun judges exactly what is missing, in
the same chunks; the transformers engine then forms the same batches from what is left of a
chunk and prefills each row as before, and sampling seeds follow each pair's place in its chunk
(results are identical to an uninterrupted run).
A pair judge takes ``judge(pairs, *, on_judged=None, seed_offsets=None)`` (:class:`~thinkrank.Rank1`
and the wrappers around it); what it does not report through ``on_judged`` is committed when the
call returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thinkrank.cache import JudgmentCache, digest
from thinkrank.errors import InvalidInputError
from thinkrank.families.base import Kind
from thinkrank.rerankers.base import RequestLike, Reranker, RerankRequest, as_request, instance_kind
from thinkrank.rerankers.pointwise import Pair
from thinkrank.types import ComparisonTrace, Judgment, Ranking, WindowTrace, as_documents, check_query
from thinkrank.validation import check_top_n

Progress = Callable[[int, int], None]


def pair_key(settings: dict[str, Any], pair: Pair) -> str:
    """The cache key of one pointwise judgment."""
    doc = pair.document
    return digest(["pointwise", settings, pair.query, pair.instruction, doc.title, doc.text])


def request_key(settings: dict[str, Any], request: RerankRequest) -> str:
    """The cache key of one listwise ranking: the query and its candidates, in order."""
    docs = [[d.title, d.text] for d in as_documents(request.documents)]
    return digest(["listwise", settings, request.query, request.instruction, docs])




@dataclass
class CacheUse:
    """How calls used the cache: results ``cached`` before the call, and ``computed`` now."""

    cached: int = 0
    computed: int = 0


def judge_with_cache(reranker: Any, pairs: Sequence[Pair], cache: JudgmentCache, *, chunk_size: int = 64,
                     progress: Progress | None = None, use: CacheUse | None = None) -> list[Judgment]:
    """Judge ``pairs`` with a pointwise reranker (``.judge``, ``.settings``), computing only the
    pairs not in ``cache``; judgments in input order.

    The pairs are cut into fixed chunks of ``chunk_size``; the missing pairs of each chunk are
    judged together in one ``judge(pairs, on_judged=..., seed_offsets=...)`` call, and committed
    per engine batch as the reranker reports them (the rest when the call returns). ``progress(done, total)`` counts pairs; ``use`` (when given) is increased by what
    was cached and computed.
    """
    _check_chunk_size(chunk_size)
    settings = reranker.settings
    keys = [pair_key(settings, p) for p in pairs]
    found = cache.get(keys)
    use = use if use is not None else CacheUse()
    use.cached += sum(k in found for k in keys)
    done = sum(k in found for k in keys)
    if progress:
        progress(done, len(pairs))
    for start in range(0, len(pairs), chunk_size):
        missing = [i for i in range(start, min(start + chunk_size, len(pairs))) if keys[i] not in found]
        todo = _first_of_each(missing, keys)
        if todo:
            def commit(positions: list[int], judged: Sequence[Judgment], todo: list[int] = todo) -> None:
                items = [(keys[todo[p]], judgment_value(j)) for p, j in zip(positions, judged)]
                cache.put("pointwise", settings, items)
                found.update(items)
                use.computed += len(items)

            chunk = [pairs[i] for i in todo]
            with _offset_progress(reranker, progress, done, len(pairs)):
                # Seeds follow each pair's place in its chunk, so a resumed chunk samples as before.
                judged = reranker.judge(chunk, on_judged=commit, seed_offsets=[i - start for i in todo])
                unreported = [p for p, i in enumerate(todo) if keys[i] not in found]
                if unreported:  # a judge that reported only some: commit the rest now
                    commit(unreported, [judged[p] for p in unreported])
        done += len(missing)
        if progress and missing:
            progress(done, len(pairs))
    return [judgment_from_value(found[k], p.document.id, p.index) for k, p in zip(keys, pairs)]


def rerank_with_cache(reranker: Any, requests: Sequence[RequestLike], cache: JudgmentCache, *,
                      chunk_size: int = 1, progress: Progress | None = None,
                      use: CacheUse | None = None) -> list[Ranking]:
    """Rerank with a listwise reranker, one cached ranking per (query, ordered candidates).

    Missing queries are reranked ``chunk_size`` at a time (their windows batched together)
    and committed per chunk; ``progress(done, total)`` counts queries. Rankings are whole
    (no ``top_n``), in request order.
    """
    _check_chunk_size(chunk_size)
    reqs = [as_request(r, i) for i, r in enumerate(requests)]
    for req in reqs:
        check_query(req.query)
    settings = reranker.settings
    keys = [request_key(settings, r) for r in reqs]
    found = cache.get(keys)
    use = use if use is not None else CacheUse()
    use.cached += sum(k in found for k in keys)
    missing = _first_of_each((i for i, k in enumerate(keys) if k not in found), keys)
    if progress:
        progress(len(reqs) - len(missing), len(reqs))
    for start in range(0, len(missing), chunk_size):
        todo = missing[start : start + chunk_size]
        rankings = reranker.rerank_many([reqs[i] for i in todo])
        items = [(keys[i], ranking_value(r)) for i, r in zip(todo, rankings)]
        cache.put("listwise", settings, items)
        found.update(items)
        use.computed += len(items)
        if progress:
            resolved = sum(k in found for k in keys)
            progress(resolved, len(reqs))
    return [ranking_from_value(found[k], r) for k, r in zip(keys, reqs)]


class CachedReranker(Reranker):
    """A reranker with a :class:`JudgmentCache` in front: pointwise rerankers are cached per
    pair, listwise ones per query. ``use`` counts cached and computed results over all calls.

        >>> cached = CachedReranker(Rank1("jhu-clsp/rank1-7b"), "judgments.sqlite")
        >>> cached.rerank("what is a cat", docs)  # a rerun reads every judgment back
    """

    def __init__(self, reranker: Reranker, cache: JudgmentCache | str | Path, *, chunk_size: int | None = None,
                 progress: Progress | None = None) -> None:
        self.reranker = reranker
        self.cache = cache if isinstance(cache, JudgmentCache) else JudgmentCache(cache)
        # A reranker whose judgments stand alone is cached per pair (``judge``); one whose results
        # depend on the query's other candidates (listwise, a cascade) per query.
        self.pointwise = reranker.judges == "pair"
        self.chunk_size = chunk_size or default_chunk_size(reranker)
        self.progress = progress
        self.use = CacheUse()

    @property
    def settings(self) -> dict[str, Any]:
        return self.reranker.settings

    @instance_kind
    def kind(self) -> Kind:
        return self.reranker.kind

    @property
    def judges(self) -> Kind:
        return self.reranker.judges

    def check(self, request: RequestLike) -> None:
        self.reranker.check(request)

    def rerank_many(self, requests: Sequence[RequestLike], top_n: int | None = None) -> list[Ranking]:
        check_top_n(top_n)
        calibration = getattr(self.reranker, "calibration", None)  # probabilities are never cached
        if not self.pointwise:
            rankings = rerank_with_cache(self.reranker, requests, self.cache, chunk_size=self.chunk_size,
                                         progress=self.progress, use=self.use)
            if calibration is not None:
                calibration.apply(rankings)
            return [r.truncate(top_n) for r in rankings]
        reqs = [as_request(r, i) for i, r in enumerate(requests)]
        per_query = [
            [Pair(check_query(q.query), d, i, q.instruction) for i, d in enumerate(as_documents(q.documents))]
            for q in reqs
        ]
        judgments = judge_with_cache(self.reranker, [p for ps in per_query for p in ps], self.cache,
                                     chunk_size=self.chunk_size, progress=self.progress, use=self.use)
        if calibration is not None:
            calibration.apply_judgments(judgments)
        judged = iter(judgments)
        return [Ranking(q.query, [next(judged) for _ in ps], q.query_id).truncate(top_n) for q, ps in zip(reqs, per_query)]


DEFAULT_PAIRS_PER_CHUNK = 64


def default_chunk_size(reranker: Reranker) -> int:
    """How many results are computed together by default: per query (listwise, a cascade), one
    query; per pair, 64 pairs, which the engine sorts by length before batching them (less
    padding than a chunk of one batch). Commits still follow each engine batch (see
    :func:`judge_with_cache`)."""
    return DEFAULT_PAIRS_PER_CHUNK if reranker.judges == "pair" else 1


def _check_chunk_size(chunk_size: int) -> None:
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise InvalidInputError(f"chunk_size must be an int >= 1, got {chunk_size!r}")


# A calibrated probability is not cached: it follows from the score and whichever calibration is applied.
_JUDGMENT_FIELDS = set(Judgment.__dataclass_fields__) - {"doc_id", "index", "probability"}


def judgment_value(judgment: Judgment) -> dict[str, Any]:
    return {k: v for k, v in judgment.to_dict().items() if k in _JUDGMENT_FIELDS}


def judgment_from_value(value: dict[str, Any], doc_id: str, index: int) -> Judgment:
    # Fields a newer Judgment added get their defaults; ones it dropped are ignored.
    return Judgment(doc_id=doc_id, index=index, **{k: v for k, v in value.items() if k in _JUDGMENT_FIELDS})


def ranking_value(ranking: Ranking) -> dict[str, Any]:
    return {
        "judgments": [{"index": j.index, **judgment_value(j)} for j in ranking.judgments],
        "windows": [w.to_dict() for w in ranking.windows],
        # setwise only: a listwise value stays as it was
        **({"comparisons": [c.to_dict() for c in ranking.comparisons]} if ranking.comparisons else {}),
    }


def ranking_from_value(value: dict[str, Any], request: RerankRequest) -> Ranking:
    docs = as_documents(request.documents)
    judgments = [judgment_from_value(v, docs[v["index"]].id, v["index"]) for v in value["judgments"]]
    return Ranking(request.query, judgments, request.query_id, [WindowTrace(**w) for w in value["windows"]],
                   [ComparisonTrace(**c) for c in value.get("comparisons", ())])


@contextmanager
def _offset_progress(reranker: Any, progress: Progress | None, base: int, total: int) -> Iterator[None]:
    """Point the reranker's own progress callback, which counts within one call, at the count
    within the whole job while one chunk runs; restore it afterwards."""
    if progress is None or not hasattr(reranker, "progress"):
        yield
        return
    saved = reranker.progress
    reranker.progress = lambda done, _total: progress(base + done, total)
    try:
        yield
    finally:
        reranker.progress = saved


def _first_of_each(indices: Iterable[int], keys: Sequence[str]) -> list[int]:
    """The first index of each distinct key, in order: one computation per key."""
    seen: set[str] = set()
    first = []
    for i in indices:
        if keys[i] not in seen:
            seen.add(keys[i])
            first.append(i)
    return first
