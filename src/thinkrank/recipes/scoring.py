"""Scoring with Rank1 (reasoning off) through a judgment cache, and the BM25 score interpolation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from thinkrank.cache import JudgmentCache
from thinkrank.datasets.collection import Collection
from thinkrank.datasets.runs import Run
from thinkrank.evaluation.metrics import evaluate_run
from thinkrank.evaluation.runner import Evaluation, evaluate
from thinkrank.recipes.config import RecipeConfig

MEASURES = ("nDCG@10", "R@10")


def reranker(model: str | Path, config: RecipeConfig) -> Any:
    """Rank1 as the recipe scores with it: reasoning off, passages cut like the training prompts."""
    from thinkrank.rerankers.pointwise import Rank1

    return Rank1(str(model), "transformers", reasoning=False, max_passage_tokens=config.passage_tokens,
                 device=config.device or "cpu", dtype=config.dtype)


def rerank(model: str | Path, collection: Collection, run: Run, qids: Sequence[str], depths: Sequence[int],
           config: RecipeConfig, cache: Path) -> dict[int, Evaluation]:
    """``model``'s reranking of ``run``'s top ``depth`` for each depth. The deepest is scored
    first; the shallower ones are read back from ``cache`` (pointwise scores do not depend on
    the other candidates), and an interrupted scoring resumes from it."""
    ranker = reranker(model, config)
    out = {}
    with JudgmentCache(cache) as store:
        for depth in sorted(set(depths), reverse=True):
            out[depth] = evaluate(collection, run, top_k=depth, reranker=ranker, cache=store, qids=list(qids),
                                  measures=MEASURES, progress=_progress(config, f"{Path(model).name} top {depth}"))
    return out


def _progress(config: RecipeConfig, desc: str) -> Any:
    if not config.progress:
        return None
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    bar = tqdm(desc=desc, unit="doc")

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def fuse(first: Run, model: Run, weight: float, name: str = "fused") -> Run:
    """Per query, ``weight`` × BM25 + (1 − ``weight``) × model score, each min-max normalised
    over the query's candidates (a constant list counts 0). Candidates are ``model``'s."""
    out = {}
    for qid in model:
        scores = dict(model[qid])
        bm25 = {d: s for d, s in first[qid] if d in scores}
        a, b = _minmax(bm25), _minmax(scores)
        fused = {d: weight * a.get(d, 0.0) + (1 - weight) * b[d] for d in scores}
        # Ties keep BM25's order (the run order within the same fused score).
        order = {d: i for i, (d, _) in enumerate(first[qid])}
        out[qid] = sorted(fused.items(), key=lambda x: (-x[1], order.get(x[0], len(order))))
    return Run(out, name)


def _minmax(scores: dict[str, float]) -> dict[str, float]:
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    return {d: (s - lo) / (hi - lo) if hi > lo else 0.0 for d, s in scores.items()}


def fit_weight(first: Run, model: Run, qrels: dict[str, dict[str, int]], weights: Sequence[float],
               measure: str = "nDCG@10") -> tuple[float, dict[str, float]]:
    """The BM25 weight of :func:`fuse` that maximises ``measure`` (mean over ``model``'s queries;
    the first of equals wins), and every weight's value."""
    values = {}
    for w in weights:
        fused = fuse(first, model, w)
        values[f"{w:g}"] = evaluate_run(fused, qrels, [measure], missing_as_zero=True).aggregate[measure]
    best = max(weights, key=lambda w: (values[f"{w:g}"], -weights.index(w)))
    return best, values
