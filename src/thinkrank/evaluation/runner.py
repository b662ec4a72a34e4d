"""Evaluate a first-stage run, optionally reranked, on a test collection; write what it gives.

    >>> from thinkrank.datasets import load_collection
    >>> dl19 = load_collection("../shared/data/dl19")
    >>> with JudgmentCache("runs/dl19/judgments.sqlite") as cache:
    ...     result = evaluate(dl19, dl19.run("bm25"), top_k=100, reranker=Rank1(...), cache=cache)
    >>> write_outputs(result, "runs/dl19")

Reranking goes through :class:`~thinkrank.rerankers.cached.CachedReranker`, so an interrupted evaluation
rerun with the same cache computes only what is missing.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thinkrank.cache import JudgmentCache
from thinkrank.datasets.collection import Collection
from thinkrank.datasets.runs import Run, write_trec_run
from thinkrank.errors import InvalidInputError
from thinkrank.evaluation.metrics import DEFAULT_MEASURES, PairedTest, RunMetrics, evaluate_run, paired_test
from thinkrank.io import AtomicWriter, probe_writable, write_text_atomic
from thinkrank.rerankers.base import Reranker, RerankRequest
from thinkrank.rerankers.cached import CachedReranker, CacheUse
from thinkrank.types import Document, Ranking


@dataclass
class Evaluation:
    """One evaluation: the first-stage candidates, the reranked run (when a reranker was
    given), their metrics on the judged queries, and paired tests between the two.

    Attributes:
        qids: the evaluated queries, in order; ``queries``/``instructions`` their texts.
        first_stage: the run cut to ``top_k`` on ``qids``; ``reranked``: the reranker's run
            over the same candidates (None without a reranker); ``rankings``: its judgments
            with reasoning, per query.
        first_metrics / reranked_metrics: None when the collection has no judgments.
        tests: measure -> paired test of reranked against first stage (needs 2+ queries).
        documents: every candidate document, by id; ``qrels``: the judgments of ``qids``.
        use: judgments read from the cache and computed; ``seconds``: wall time of reranking.
    """

    dataset: str
    run_name: str
    top_k: int
    qids: list[str]
    queries: dict[str, str]
    first_stage: Run
    measures: tuple[str, ...]
    qrels: dict[str, dict[str, int]]
    documents: dict[str, Document]
    instructions: dict[str, str] = field(default_factory=dict)
    first_metrics: RunMetrics | None = None
    settings: dict[str, Any] | None = None
    reranked: Run | None = None
    rankings: dict[str, Ranking] = field(default_factory=dict)
    reranked_metrics: RunMetrics | None = None
    tests: dict[str, PairedTest] = field(default_factory=dict)
    use: CacheUse = field(default_factory=CacheUse)
    seconds: float = 0.0
    comparison: dict[str, Any] | None = None  # against another reranker: shown in the report (thinkrank compare)
    calibration: dict[str, Any] | None = None  # the calibration applied (thinkrank evaluate --calibration)
    selection: dict[str, Any] | None = None  # what --select kept, per query


def select_queries(collection: Collection, run: Run, limit: int | None = None,
                   qids: Sequence[str] | None = None) -> list[str]:
    """The queries to evaluate: ``qids`` as given, else the collection's judged queries (all its
    queries when it has no judgments) that ``run`` ranks, in collection order, the first
    ``limit`` of them.

    Raises:
        InvalidInputError: an id the collection or the run lacks, a bad ``limit``, or no query
            in common between run and collection.
    """
    if qids is not None:
        unknown = [q for q in qids if q not in collection.queries or q not in run]
        if unknown:
            raise InvalidInputError(
                f"query ids {unknown[:5]} are not in both collection {collection.name!r} and run {run.name!r}; "
                f"ids look like {list(run)[:3]}"
            )
        return list(dict.fromkeys(qids))
    if limit is not None and limit < 1:
        raise InvalidInputError(f"the number of queries must be >= 1, got {limit}")
    pool = collection.judged() if collection.qrels else collection
    chosen = [q for q in pool.queries if q in run and run[q]]
    if not chosen:
        raise InvalidInputError(
            f"run {run.name!r} ranks none of the {'judged ' if collection.qrels else ''}queries of {collection.name!r} "
            f"(run ids {list(run)[:3]}, collection ids {list(pool.queries)[:3]}); is it a run of this collection?"
        )
    return chosen[:limit]


def evaluate(collection: Collection, run: Run, *, top_k: int = 100, reranker: Reranker | None = None,
             cache: JudgmentCache | None = None, qids: Sequence[str] | None = None,
             measures: Sequence[str] = DEFAULT_MEASURES, chunk_size: int | None = None,
             progress: Callable[[int, int], None] | None = None, permutations: int = 10_000) -> Evaluation:
    """Evaluate ``run``'s top ``top_k`` on ``qids`` (default: :func:`select_queries`) and, with a
    ``reranker``, rerank those candidates (through ``cache`` when given) and evaluate that too.

    Raises:
        InvalidInputError: a bad ``top_k``, a query id or document the collection lacks.
    """
    if top_k < 1:
        raise InvalidInputError(f"top_k must be >= 1, got {top_k}")
    qids = select_queries(collection, run, qids=qids)
    first = run.subset(qids).top_k(top_k)
    candidates = {q: collection.candidates(first, q) for q in qids}
    qrels = {q: dict(collection.qrels[q]) for q in qids if q in collection.qrels}
    result = Evaluation(
        dataset=collection.name, run_name=run.name, top_k=top_k, qids=list(qids),
        queries={q: collection.queries[q] for q in qids}, first_stage=first, measures=tuple(measures), qrels=qrels,
        documents={d.id: d for docs in candidates.values() for d in docs},
        instructions={q: collection.instructions[q] for q in qids if q in collection.instructions},
    )
    result.first_metrics = _metrics(first, qrels, collection, measures)
    if reranker is None:
        return result
    # `is not None`: an empty cache has len() 0 and would be falsy.
    cached = CachedReranker(reranker, cache, chunk_size=chunk_size, progress=progress) if cache is not None else None
    requests = [RerankRequest(result.queries[q], candidates[q], q, result.instructions.get(q)) for q in qids]
    start = time.perf_counter()
    rankings = (cached or reranker).rerank_many(requests)
    result.seconds = time.perf_counter() - start
    # Read after reranking: a distributed reranker (integrations.ray) learns them from its workers.
    result.settings = reranker.settings
    # A reranker that keeps its own cache counts (integrations.ray) reports them.
    own = getattr(reranker, "use", None)
    result.use = cached.use if cached else own if isinstance(own, CacheUse) else CacheUse(
        computed=sum(len(r) for r in rankings))
    result.rankings = dict(zip(qids, rankings))
    result.reranked = Run({q: [(j.doc_id, j.score) for j in r] for q, r in result.rankings.items()},
                          run_tag(result.settings.get("model", "thinkrank")))
    result.reranked_metrics = _metrics(result.reranked, qrels, collection, measures)
    if result.first_metrics and result.reranked_metrics and len(result.reranked_metrics.per_query) >= 2:
        result.tests = {m: paired_test(result.first_metrics, result.reranked_metrics, m, permutations=permutations)
                        for m in result.first_metrics.measures}
    return result


def _metrics(run: Run, qrels: dict[str, dict[str, int]], collection: Collection,
             measures: Sequence[str]) -> RunMetrics | None:
    if not qrels:
        return None
    # Judged queries the run leaves empty count 0 in both runs, so the paired test compares like with like.
    return evaluate_run(run, qrels, measures, exclude=collection.excluded or None, missing_as_zero=True)


def run_tag(model: str) -> str:
    """A one-word run tag from a model name: ``"jhu-clsp/rank1-7b"`` -> ``"rank1-7b"``."""
    name = Path(str(model).rstrip("/")).name or "thinkrank"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "thinkrank"


# ---- outputs -------------------------------------------------------------------------------------
def metrics_dict(result: Evaluation) -> dict[str, Any]:
    """What ``metrics.json`` holds: the setup, both runs' metrics and the paired tests.

    Only things that follow from the inputs go here (no timings or paths), so an interrupted
    and resumed evaluation writes the same file as an uninterrupted one.
    """

    def scores(m: RunMetrics | None) -> dict[str, Any] | None:
        return None if m is None else {"aggregate": m.aggregate, "per_query": m.per_query, "missing": m.missing}

    return {
        "dataset": result.dataset, "run": result.run_name, "top_k": result.top_k, "queries": result.qids,
        "measures": list(result.first_metrics.measures if result.first_metrics else result.measures),
        "reranker": result.settings,
        "first_stage": scores(result.first_metrics),
        "reranked": scores(result.reranked_metrics),
        "paired_tests": {m: vars(t) for m, t in result.tests.items()},
        **({"windows": window_counts(result)} if any(r.windows for r in result.rankings.values()) else {}),
        **({"comparisons": comparison_counts(result)} if any(r.comparisons for r in result.rankings.values()) else {}),
        **({"cascade": cascade_counts(result)} if (result.settings or {}).get("cascade") else {}),
        **({"calibration": result.calibration} if result.calibration is not None else {}),
        **({"selection": result.selection} if result.selection is not None else {}),
    }


RESULT_FILES = ("first-stage.trec", "reranked.trec", "rankings.jsonl", "qrels.trec", "metrics.json", "report.html")
"""What :func:`write_outputs` writes; a folder's previous copies are stale once a new run starts."""


def prepare_output(output: str | Path) -> list[str]:
    """Make the output folder, check it is writable, and remove the previous run's results
    (:data:`RESULT_FILES`), so a run that is killed never leaves an older ``metrics.json`` that
    looks current. The judgment cache and any other file stay. Returns the names removed.

    Raises:
        InvalidInputError: the folder cannot be made or written to (before any judging).
    """
    out = Path(output)
    try:
        probe_writable(out)
    except OSError as exc:
        raise InvalidInputError(
            f"cannot write the results into {out} ({exc.strerror or exc}); choose another --output folder"
        ) from None
    removed = []
    for name in RESULT_FILES:
        if (out / name).is_file():
            (out / name).unlink()
            removed.append(name)
    return removed


def window_counts(result: Evaluation) -> dict[str, Any]:
    """Listwise windows run and those whose output held no usable ordering (they kept their
    previous order), with the queries they belong to."""
    unparsed = {q: r.unparsed_windows for q, r in result.rankings.items() if r.unparsed_windows}
    return {"total": sum(len(r.windows) for r in result.rankings.values()), "unparsed": sum(unparsed.values()),
            "unparsed_by_query": unparsed}


def comparison_counts(result: Evaluation) -> dict[str, Any]:
    """Setwise comparisons run and those whose answer was unexpected (they kept the parent), with
    the queries they belong to; like :func:`window_counts` for windows."""
    unexpected = {q: r.unexpected_comparisons for q, r in result.rankings.items() if r.unexpected_comparisons}
    return {"total": sum(len(r.comparisons) for r in result.rankings.values()), "unexpected": sum(unexpected.values()),
            "unexpected_by_query": unexpected}


def cascade_counts(result: Evaluation) -> dict[str, Any]:
    """What a cascade spent: per query (and in all) the candidates, the chains generated, their
    tokens and the estimated tokens saved (:func:`~thinkrank.rerankers.cascade.cascade_stats`)."""
    from dataclasses import asdict

    from thinkrank.rerankers.cascade import cascade_stats

    per_query = {q: asdict(cascade_stats(r)) for q, r in result.rankings.items()}
    total = {k: sum(s[k] for s in per_query.values()) for k in ("candidates", "chains", "chain_tokens", "tokens_saved")}
    return {**total, "per_query": per_query}


def write_outputs(result: Evaluation, output: str | Path, *, report: bool = True) -> dict[str, Path]:
    """Write ``first-stage.trec``, ``reranked.trec`` and ``rankings.jsonl`` (with a reranker),
    ``qrels.trec`` (the evaluated queries' judgments, so ``thinkrank calibrate`` needs only this
    folder), ``report.html`` and, last, ``metrics.json`` into ``output``; returns name -> path. Each file
    is written under a temporary name and renamed into place, so none is ever half-written,
    and ``metrics.json`` exists only once every other result is complete."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"first_stage": write_trec_run(result.first_stage, out / "first-stage.trec", tag=run_tag(result.run_name))}
    if result.reranked is not None:
        paths["reranked"] = write_trec_run(result.reranked, out / "reranked.trec")
        paths["rankings"] = out / "rankings.jsonl"
        with AtomicWriter(paths["rankings"]) as handle:
            for qid, ranking in result.rankings.items():
                handle.write(json.dumps({"query_id": qid, **ranking.to_dict()}, ensure_ascii=False) + "\n")
    if result.qrels:
        lines = "".join(f"{q} 0 {d} {int(g)}\n" for q, docs in result.qrels.items() for d, g in docs.items())
        paths["qrels"] = write_text_atomic(out / "qrels.trec", lines)
    if report:
        from thinkrank.evaluation.report import write_report

        paths["report"] = write_report(result, out / "report.html")
    paths["metrics"] = write_text_atomic(out / "metrics.json",
                                         json.dumps(metrics_dict(result), indent=2, ensure_ascii=False) + "\n")
    return paths
