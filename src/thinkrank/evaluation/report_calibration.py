"""The report's calibration pictures, as SVG coordinates: a reliability diagram of the raw scores
and of the calibrated probabilities, the score histograms of relevant and non-relevant
candidates, and documents kept against recall reached (the recall-probability rule at every
level, one score cut for all queries at every score, and every fixed top-k).

All are drawn from this evaluation's own queries and qrels: when the calibration was fitted on
the same queries they are in-sample pictures (docs/calibration.md has held-out figures)."""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

import numpy as np

from thinkrank.calibration.metrics import reliability_bins
from thinkrank.calibration.selection import cut_keys

if TYPE_CHECKING:
    from thinkrank.evaluation.runner import Evaluation

SIZE = 200  # every plot is SIZE x SIZE viewBox units, y upwards from the bottom edge
HISTOGRAM_BINS = 20
CURVE_LEVELS = 200  # the recall-probability curve is drawn at this many levels (quantiles of the queries' own)
DEFAULT_TARGET = 0.9  # the recall target of that curve when the evaluation selected with none


def _labelled(result: Evaluation, threshold: int) -> list[list[tuple[float, float | None, int]]]:
    """Per query with judgments: (score, probability, relevant) in ranking order."""
    out = []
    for qid, ranking in result.rankings.items():
        grades = result.qrels.get(qid)
        if grades:
            out.append([(j.score, j.probability, int(grades.get(j.doc_id, 0) >= threshold)) for j in ranking])
    return out


def _point(x: float, y: float) -> str:
    return f"{x * SIZE:.1f},{(1 - y) * SIZE:.1f}"


def calibration_figures(result: Evaluation) -> dict[str, Any] | None:
    """The three pictures' coordinates, or None without a calibration or judged rankings."""
    if result.calibration is None:
        return None
    queries = _labelled(result, int(result.calibration["relevance_threshold"]))
    pairs = [p for q in queries for p in q]
    if not pairs or all(prob is None for _, prob, _ in pairs):
        return None
    scores = [s for s, _, _ in pairs]
    probs = [p for _, p, _ in pairs]
    labels = [y for _, _, y in pairs]
    series: tuple[tuple[str, list[Any]], ...] = (("raw", scores), ("calibrated", probs))
    reliability: dict[str, list[dict[str, Any]]] = {
        name: [{"x": b.mean_probability, "y": b.fraction_relevant, "n": b.count,
                "at": _point(b.mean_probability, b.fraction_relevant)} for b in reliability_bins(values, labels)]
        for name, values in series
    }
    histogram = _histograms(scores, labels)
    return {"size": SIZE, "reliability": reliability,
            "reliability_lines": {k: " ".join(b["at"] for b in v) for k, v in reliability.items()},
            "histogram": histogram, "kept": _kept_curves(queries, _target(result)), "pairs": len(pairs),
            "queries": len(queries)}


def _target(result: Evaluation) -> float:
    """The recall target of the evaluation's conformal selection, else :data:`DEFAULT_TARGET`."""
    chosen = (result.selection or {}).get("recall")
    return float(chosen) if isinstance(chosen, (int, float)) else DEFAULT_TARGET


def _histograms(scores: list[float], labels: list[int]) -> dict[str, Any]:
    """Share of each class's candidates per score bin (each class sums to 1)."""
    bars: dict[str, list[dict[str, float]]] = {}
    tallest = 0.0
    for name, cls in (("relevant", 1), ("not_relevant", 0)):
        counts = [0] * HISTOGRAM_BINS
        for s, y in zip(scores, labels):
            if y == cls:
                counts[min(int(s * HISTOGRAM_BINS), HISTOGRAM_BINS - 1)] += 1
        total = sum(counts) or 1
        bars[name] = [{"share": c / total} for c in counts]
        tallest = max([tallest] + [b["share"] for b in bars[name]])
    width = SIZE / HISTOGRAM_BINS
    for offset, name in ((0.0, "not_relevant"), (0.5, "relevant")):
        for i, bar in enumerate(bars[name]):
            h = bar["share"] / (tallest or 1) * SIZE
            bar.update(x=(i + offset) * width, y=SIZE - h, w=width / 2, h=h)
    return {**bars, "tallest": tallest}


def _kept_curves(queries: list[list[tuple[float, float | None, int]]], target: float) -> dict[str, Any]:
    """Mean documents kept per query against mean recall, over the queries with a relevant
    candidate: the recall-probability rule for ``target`` at levels spread over its queries' own
    values, one global score cut at every distinct score, and every fixed top-k."""
    judged = [q for q in queries if any(y for _, _, y in q)]
    if not judged:
        return {"cut": "", "top_k": "", "by_probability": "", "depth": 0, "target": target}
    depth = max(len(q) for q in judged)

    def mean_recall(kept: list[int]) -> float:
        return sum(sum(y for _, _, y in q[:k]) / sum(y for _, _, y in q) for q, k in zip(judged, kept)) / len(judged)

    cuts = sorted({s for q in judged for s, _, _ in q}, reverse=True)
    cut_points = []
    for c in cuts:
        kept = [sum(s >= c for s, _, _ in q) for q in judged]
        cut_points.append((sum(kept) / len(judged) / depth, mean_recall(kept)))
    top_points = [(k / depth, mean_recall([min(k, len(q)) for q in judged])) for k in range(1, depth + 1)]
    return {"cut": " ".join(_point(x, y) for x, y in [(0.0, 0.0)] + cut_points),
            "top_k": " ".join(_point(x, y) for x, y in [(0.0, 0.0)] + top_points),
            "by_probability": " ".join(_point(x, y) for x, y in _probability_points(judged, target, depth, mean_recall)),
            "depth": depth, "target": target}


def _probability_points(judged: list[list[tuple[float, float | None, int]]], target: float, depth: int,
                        mean_recall: Any) -> list[tuple[float, float]]:
    """The recall-probability rule's (mean kept / depth, mean recall) as its level rises (empty
    when a judgment has no probability)."""
    if any(p is None for q in judged for _, p, _ in q):
        return []
    keys = [cut_keys([float(p or 0.0) for _, p, _ in q], [s for s, _, _ in q], target) for q in judged]
    ordered = sorted(k for q in keys for k in q)
    levels = [ordered[round(i)] for i in np.linspace(0, len(ordered) - 1, CURVE_LEVELS)]
    points = [(0.0, 0.0)]
    for level in dict.fromkeys(levels):
        # A query keeps the shortest top whose key is above the level: as many as its keys at or below it.
        kept = [min(bisect.bisect_right(q, level), len(q) - 1) for q in keys]
        points.append((sum(kept) / len(kept) / depth, mean_recall(kept)))
    return points
