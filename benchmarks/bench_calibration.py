"""Held-out calibration and conformal selection on labelled evaluate runs.

For each run folder (``thinkrank evaluate --model ... --output DIR``):

1. Calibration: each method fitted with 5-fold cross-validation by query (every pair scored
   by a map that never saw its query): ECE (10 equal-mass bins), Brier score and log loss of
   the raw scores and of the held-out calibrated probabilities.
2. Conformal selection over ``--splits`` random splits of the queries: ``--fraction`` of them
   calibrate the threshold, the others test it. Coverage is the fraction of test queries (with
   a relevant candidate) whose kept documents reach the target recall; on average it should be
   ``>= 1 - alpha`` and ``<= 1 - alpha + 1/(n+1)`` (exactly ``1 - floor((n+1) alpha)/(n+1)``
   without ties, ``n`` calibration queries). The baseline is the fixed top-k with the same
   guarantee (:func:`~thinkrank.calibration.conformal_top_k` on the same calibration queries):
   what a capable user who wants a recall guarantee would otherwise keep.
3. Documents kept at **equal achieved recall**: per split, the smallest fixed k whose mean recall
   on the test queries reaches the adaptive cut's mean recall there (and, separately, the
   smallest k whose coverage reaches the adaptive cut's coverage). This k is chosen on the test
   queries' own labels, an oracle no user has, so it favours the fixed top-k.

Two adaptive rules are measured: ``score`` (one raw-score threshold, under ``adaptive``) and
``recall-probability`` (the default, under ``recall_probability``). For the second, each split
fits its own Platt map on its calibration queries alone (as ``thinkrank calibrate`` would on
them), so the test queries' labels touch neither the map nor the level.

    python benchmarks/bench_calibration.py runs/scifact-off runs/dl19-off:2 --recall 0.9 --alpha 0.1

``DIR:T`` counts grades ``>= T`` relevant (DL19: 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math

import numpy as np

from thinkrank.calibration import (
    METHODS,
    Calibration,
    conformal_cut,
    conformal_threshold,
    conformal_top_k,
    ece,
    load_labelled_run,
)
from thinkrank.calibration.fit import conformal_queries, held_out, query_folds
from thinkrank.calibration.maps import feature, fit_map
from thinkrank.calibration.metrics import summary


def calibration_rows(run, bins: int = 10, floor_draws: int = 200, seed: int = 0) -> list[dict]:
    """Each method's held-out metrics (as ``thinkrank calibrate`` reports them), and the ECE noise
    floor: the mean ECE that perfectly calibrated probabilities equal to the held-out ones would
    show on this many pairs (labels drawn as Bernoulli(p), ``floor_draws`` times)."""
    scores = np.array([s for q in run.queries for s in q.scores])
    y = np.array([label for q in run.queries for label in q.labels], dtype=float)
    query_of = np.repeat(np.arange(len(run.queries)), [len(q.scores) for q in run.queries])
    x, groups = feature(scores, run.family), query_folds(len(run.queries), 5, 0)
    rng = np.random.default_rng(seed)
    rows = [{"method": "raw score", **{k: round(v, 4) for k, v in summary(np.clip(scores, 0, 1), y, bins).items()}}]
    for method in METHODS:
        result = held_out(method, x, y, query_of, groups)
        if result.error is not None:
            rows.append({"method": method, "error": result.error})
            continue
        p = result.probabilities
        floor = np.mean([ece(p, rng.random(len(p)) < p, bins) for _ in range(floor_draws)])
        rows.append({"method": method, **{k: round(v, 4) for k, v in summary(p, y, bins).items()},
                     "ece_floor": round(float(floor), 4)})
    return rows


def score_shape(run) -> dict:
    """How polarised the raw scores are, and how far apart relevant and other candidates sit."""
    scores = np.array([s for q in run.queries for s in q.scores])
    y = np.array([label for q in run.queries for label in q.labels], dtype=bool)
    return {"share_below_0.05_or_above_0.95": round(float(np.mean((scores < 0.05) | (scores > 0.95))), 4),
            "mean_relevant": round(float(scores[y].mean()), 4) if y.any() else None,
            "mean_not_relevant": round(float(scores[~y].mean()), 4) if (~y).any() else None}


def recall(query, threshold: float, target: float) -> bool:
    needed = max(1, math.ceil(target * len(query.relevant) - 1e-9))
    return sum(score >= threshold for _, score in query.relevant) >= needed


def kept_by_threshold(scores: tuple[float, ...], threshold: float) -> int:
    return sum(s >= threshold for s in scores)


def conformal_rows(run, target: float, alpha: float, splits: int, seed: int, fraction: float) -> dict:
    rng = np.random.default_rng(seed)
    labelled = [q for q in run.queries if q.relevant]
    conformal = conformal_queries(run)
    n = len(labelled)
    adaptive_cov, fixed_cov, adaptive_kept, fixed_kept, adaptive_recall, fixed_recall = [], [], [], [], [], []
    equal_recall_k, equal_coverage_k = [], []
    by_probability: dict[str, list[float]] = {"coverage": [], "kept": [], "recall": [], "k_same_recall": [],
                                              "k_same_coverage": []}
    for _ in range(splits):
        order = rng.permutation(n)
        cut = int(round(n * fraction))
        cal_idx, test_idx = order[:cut], order[cut:]
        cal = [conformal[i] for i in cal_idx]
        lam = conformal_threshold(cal, target, alpha)
        k = conformal_top_k(cal, target, alpha)
        tests = [(conformal[i], labelled[i]) for i in test_idx]
        adaptive_cov.append(np.mean([recall(c, lam, target) for c, _ in tests]))
        adaptive_kept.append(np.mean([kept_by_threshold(q.scores, lam) for _, q in tests]))
        adaptive_recall.append(np.mean([sum(s >= lam for _, s in c.relevant) / len(c.relevant) for c, _ in tests]))
        depth = [min(k or c.candidates, c.candidates) for c, _ in tests]
        fixed_cov.append(np.mean([share_within(c, d) >= target - 1e-12 for (c, _), d in zip(tests, depth)]))
        fixed_kept.append(np.mean(depth))
        fixed_recall.append(np.mean([share_within(c, d) for (c, _), d in zip(tests, depth)]))
        equal_recall_k.append(smallest_k(tests, share_within, adaptive_recall[-1]))
        equal_coverage_k.append(smallest_k(tests, lambda c, d: share_within(c, d) >= target - 1e-12, adaptive_cov[-1]))
        fitted = split_calibration(run, [labelled[i] for i in cal_idx], cal)
        cut_ = conformal_cut(fitted, target, alpha, "recall-probability")
        depths = [len(cut_.keep(c.scores, fitted.probabilities(c.scores), target)) for c, _ in tests]
        shares = [share_within(c, d) for (c, _), d in zip(tests, depths)]
        by_probability["coverage"].append(float(np.mean([s >= target - 1e-12 for s in shares])))
        by_probability["kept"].append(float(np.mean(depths)))
        by_probability["recall"].append(float(np.mean(shares)))
        by_probability["k_same_recall"].append(smallest_k(tests, share_within, by_probability["recall"][-1]))
        by_probability["k_same_coverage"].append(smallest_k(
            tests, lambda c, d: share_within(c, d) >= target - 1e-12, by_probability["coverage"][-1]))
    cut = int(round(n * fraction))
    k = math.floor((cut + 1) * alpha)
    return {
        "target_recall": target, "alpha": alpha, "splits": splits, "queries_with_relevant": n,
        "calibration_queries": cut, "test_queries": n - cut,
        # Without ties the adaptive cut's expected coverage is exactly 1 - k/(n+1), k = floor((n+1) alpha).
        "expected_coverage": round(1 - k / (cut + 1), 4), "upper_bound": round(1 - alpha + 1 / (cut + 1), 4),
        "adaptive": {"coverage": round(float(np.mean(adaptive_cov)), 4), "coverage_sd": round(float(np.std(adaptive_cov)), 4),
                     "mean_kept": round(float(np.mean(adaptive_kept)), 3), "mean_recall": round(float(np.mean(adaptive_recall)), 4)},
        "fixed_top_k": {"coverage": round(float(np.mean(fixed_cov)), 4), "coverage_sd": round(float(np.std(fixed_cov)), 4),
                        "mean_kept": round(float(np.mean(fixed_kept)), 3), "mean_recall": round(float(np.mean(fixed_recall)), 4)},
        "equal_achieved": {"adaptive_mean_kept": round(float(np.mean(adaptive_kept)), 3),
                           "fixed_k_same_mean_recall": round(float(np.mean(equal_recall_k)), 3),
                           "fixed_k_same_coverage": round(float(np.mean(equal_coverage_k)), 3),
                           "splits_adaptive_keeps_fewer_than_same_recall_k":
                               round(float(np.mean(np.array(adaptive_kept) < np.array(equal_recall_k))), 4)},
        "recall_probability": {
            "coverage": round(float(np.mean(by_probability["coverage"])), 4),
            "coverage_sd": round(float(np.std(by_probability["coverage"])), 4),
            "mean_kept": round(float(np.mean(by_probability["kept"])), 3),
            "mean_recall": round(float(np.mean(by_probability["recall"])), 4),
            "fixed_k_same_mean_recall": round(float(np.mean(by_probability["k_same_recall"])), 3),
            "fixed_k_same_coverage": round(float(np.mean(by_probability["k_same_coverage"])), 3),
            "splits_keeps_fewer_than_same_recall_k": round(float(np.mean(
                np.array(by_probability["kept"]) < np.array(by_probability["k_same_recall"]))), 4),
            "splits_keeps_fewer_than_same_coverage_k": round(float(np.mean(
                np.array(by_probability["kept"]) < np.array(by_probability["k_same_coverage"]))), 4),
            "splits_keeps_fewer_than_conformal_top_k": round(float(np.mean(
                np.array(by_probability["kept"]) < np.array(fixed_kept))), 4)},
        "candidates": run.top_k,
    }


def share_within(query, depth: int) -> float:
    """The share of a conformal query's relevant candidates in its top ``depth``."""
    return sum(r <= depth for r, _ in query.relevant) / len(query.relevant)


def split_calibration(run, queries, conformal) -> Calibration:
    """A calibration fitted on one split's calibration queries alone: a Platt map of their pairs
    and their conformal queries."""
    scores = np.array([s for q in queries for s in q.scores])
    labels = np.array([label for q in queries for label in q.labels], dtype=float)
    mapping = fit_map("platt", feature(scores, run.family), labels)
    return Calibration(mapping, run.family, run.settings, run.relevance_threshold, conformal=list(conformal))


def smallest_k(tests, measure, reached: float) -> int:
    """The smallest fixed depth whose mean ``measure`` over the test queries is ``>= reached``."""
    depth = max(c.candidates for c, _ in tests)
    for k in range(1, depth + 1):
        if np.mean([measure(c, min(k, c.candidates)) for c, _ in tests]) >= reached - 1e-12:
            return k
    return depth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="evaluate output folders, DIR or DIR:THRESHOLD")
    parser.add_argument("--recall", type=float, nargs="+", default=[0.9])
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--splits", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fraction", type=float, default=0.5, help="share of the queries that calibrate each split")
    parser.add_argument("--queries", type=int, default=None,
                        help="only each run's first N queries (compare runs of different sizes on the same queries)")
    args = parser.parse_args()
    for spec in args.runs:
        path, _, threshold = spec.partition(":")
        run = load_labelled_run(path, relevance_threshold=int(threshold or 1))
        if args.queries is not None:
            run = dataclasses.replace(run, queries=run.queries[: args.queries])
        pairs = sum(len(q.scores) for q in run.queries)
        out = {"run": path, "relevance_threshold": run.relevance_threshold, "queries": len(run.queries), "pairs": pairs,
               "relevant": sum(q.relevant for q in run.queries), "raw_scores": score_shape(run),
               "calibration": calibration_rows(run),
               "conformal": [conformal_rows(run, t, args.alpha, args.splits, args.seed, args.fraction)
                             for t in args.recall]}
        print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
