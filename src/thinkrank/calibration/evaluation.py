"""What calibration and selection did on a labelled evaluation: per query how many documents
were kept and the recall and precision they reached (counted against the qrels), beside the
estimates the calibrated probabilities gave."""

from __future__ import annotations

from typing import Any

from thinkrank.calibration.file import Calibration
from thinkrank.calibration.selection import conformal_top_k, select
from thinkrank.types import Ranking


def calibration_info(cal: Calibration) -> dict[str, Any]:
    """The calibration as ``metrics.json`` records it."""
    return {"method": cal.method, "relevance_threshold": cal.relevance_threshold, "fitted_on": cal.fitted_on,
            "metrics": cal.metrics}


def selection_summary(rankings: dict[str, Ranking], qrels: dict[str, dict[str, int]], cal: Calibration,
                      selection: dict[str, Any]) -> dict[str, Any]:
    """Select on every ranking; per query and overall: kept, expected and achieved recall and
    precision. ``coverage`` counts the queries with a relevant candidate whose achieved recall
    reaches the target (conformal mode). On the queries the calibration was fitted on this is
    an in-sample figure: measure coverage on other queries (docs/calibration.md)."""
    per_query: dict[str, Any] = {}
    for qid, ranking in rankings.items():
        chosen = select(ranking, cal, **selection)
        relevant = {d for d, g in qrels.get(qid, {}).items() if g >= cal.relevance_threshold}
        among = sum(j.doc_id in relevant for j in ranking)
        hit = sum(d in relevant for d in chosen.doc_ids)
        per_query[qid] = {**chosen.to_dict(), "relevant_candidates": among,
                          "recall": hit / among if among else None,
                          "precision": hit / len(chosen.kept) if chosen.kept else None}
    judged = [v for v in per_query.values() if v["recall"] is not None]
    out: dict[str, Any] = {
        **selection, "queries": len(per_query),
        "mean_kept": sum(v["kept"] for v in per_query.values()) / max(len(per_query), 1),
        "mean_recall": sum(v["recall"] for v in judged) / len(judged) if judged else None,
    }
    if "recall" in selection:
        target, alpha = selection["recall"], selection.get("alpha", 0.1)
        out["coverage"] = sum(v["recall"] >= target - 1e-12 for v in judged) / len(judged) if judged else None
        k = conformal_top_k(cal.conformal, target, alpha)
        out["fixed_top_k"] = {"k": k, "coverage": _top_k_coverage(rankings, qrels, cal, k, target)}
    out["per_query"] = per_query
    return out


def _top_k_coverage(rankings: dict[str, Ranking], qrels: dict[str, dict[str, int]], cal: Calibration,
                    k: int | None, target: float) -> float | None:
    reached = []
    for qid, ranking in rankings.items():
        relevant = {d for d, g in qrels.get(qid, {}).items() if g >= cal.relevance_threshold}
        among = sum(j.doc_id in relevant for j in ranking)
        if among:
            hit = sum(j.doc_id in relevant for j in ranking.judgments[: k if k is not None else len(ranking)])
            reached.append(hit / among >= target - 1e-12)
    return sum(reached) / len(reached) if reached else None
