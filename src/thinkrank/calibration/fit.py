"""Fit a calibration to a labelled run, validated by query-level cross-validation.

The queries (never single pairs: the candidates of one query are not independent) are shuffled
with ``seed`` and cut into ``folds`` groups. Each group is predicted by a map fitted on the
others; the metrics are those of these held-out predictions, so every pair is scored by a map
that never saw its query. ``method="auto"`` picks the method with the lowest held-out Brier
score (a proper score that, unlike log loss, stays finite when an isotonic map says 0 or 1).
The map saved is then fitted on all queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from thinkrank.calibration.file import Calibration, ConformalQuery
from thinkrank.calibration.labelled import LabelledRun
from thinkrank.calibration.maps import METHODS, feature, fit_map
from thinkrank.calibration.metrics import summary
from thinkrank.errors import InvalidInputError

DEFAULT_METHOD = "auto"


@dataclass(frozen=True)
class HeldOut:
    """Out-of-fold probabilities of one method, pair by pair in the run's order."""

    method: str
    probabilities: np.ndarray
    error: str | None = None  # the method could not be fitted on some fold


def query_folds(n_queries: int, folds: int, seed: int) -> list[np.ndarray]:
    """Query positions in ``folds`` groups of (nearly) equal size, shuffled with ``seed``.

    Raises:
        InvalidInputError: fewer than 2 folds, or more folds than queries.
    """
    if folds < 2:
        raise InvalidInputError(f"folds must be >= 2 (held-out metrics need a query left out), got {folds}")
    if n_queries < folds:
        raise InvalidInputError(f"{n_queries} labelled queries cannot be cut into {folds} folds; lower --folds")
    order = np.random.default_rng(seed).permutation(n_queries)
    return [np.sort(g) for g in np.array_split(order, folds)]


def held_out(method: str, x: np.ndarray, y: np.ndarray, query_of: np.ndarray, groups: list[np.ndarray]) -> HeldOut:
    """Each fold predicted by ``method`` fitted on the other folds."""
    out = np.empty(len(x))
    try:
        for group in groups:
            test = np.isin(query_of, group)
            out[test] = fit_map(method, x[~test], y[~test])(x[test])
    except InvalidInputError as exc:
        return HeldOut(method, out, str(exc))
    return HeldOut(method, out)


def fit_calibration(run: LabelledRun, *, method: str = DEFAULT_METHOD, folds: int = 5, seed: int = 0,
                    bins: int = 10) -> Calibration:
    """Fit ``method`` (``"platt"``, ``"temperature"``, ``"isotonic"`` or ``"auto"``) to ``run``.

    Raises:
        InvalidInputError: an unknown method, too few queries for ``folds``, or a method that
            cannot fit these scores.
    """
    if method != "auto" and method not in METHODS:
        raise InvalidInputError(f"unknown calibration method {method!r}; expected auto, {', '.join(METHODS)}")
    scores = np.array([s for q in run.queries for s in q.scores])
    y = np.array([label for q in run.queries for label in q.labels], dtype=float)
    query_of = np.repeat(np.arange(len(run.queries)), [len(q.scores) for q in run.queries])
    x = feature(scores, run.family)
    groups = query_folds(len(run.queries), folds, seed)
    candidates = METHODS if method == "auto" else (method,)
    results = {m: held_out(m, x, y, query_of, groups) for m in candidates}
    scored = {m: summary(r.probabilities, y, bins) for m, r in results.items() if r.error is None}
    if not scored:
        raise InvalidInputError(f"calibration method {method} failed: {results[method].error}")
    chosen = min(scored, key=lambda m: scored[m]["brier"]) if method == "auto" else method
    before = summary(np.clip(scores, 0.0, 1.0), y, bins)
    after = scored[chosen]
    return Calibration(
        map=fit_map(chosen, x, y), family=run.family, settings=run.settings,
        relevance_threshold=run.relevance_threshold,
        metrics={**{f"{k}_before": v for k, v in before.items()}, **{f"{k}_after": v for k, v in after.items()},
                 "bins": bins},
        fitted_on={"dataset": run.dataset, "run": run.run, "top_k": run.top_k, "queries": len(run.queries),
                   "pairs": len(y), "relevant": int(y.sum()), "unjudged_as_not_relevant": run.unjudged},
        cross_validation={"folds": folds, "seed": seed, "by": "query", "chosen_by": "brier" if method == "auto" else None,
                          "methods": {m: scored.get(m, {"error": r.error}) for m, r in results.items()}},
        conformal=conformal_queries(run),
    )


def conformal_queries(run: LabelledRun) -> list[ConformalQuery]:
    """The queries with a relevant candidate: candidates, (rank, score) of the relevant ones, and
    every candidate's score."""
    return [ConformalQuery(len(q.scores), tuple((r, s) for r, (s, label) in enumerate(zip(q.scores, q.labels), 1) if label),
                           tuple(q.scores))
            for q in run.queries if q.relevant]
