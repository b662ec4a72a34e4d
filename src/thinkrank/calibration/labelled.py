"""A labelled evaluate run: every reranked candidate's raw score with its relevance label.

``thinkrank evaluate`` writes into its output folder the reranker's settings (``metrics.json``,
the same dict the judgment cache keys by), every query's judgments (``rankings.jsonl``) and the
judgments of the evaluated queries (``qrels.trec``); that is all a calibration needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thinkrank.datasets.qrels import Qrels, read_qrels
from thinkrank.errors import InvalidInputError
from thinkrank.io import iter_jsonl


@dataclass(frozen=True)
class LabelledQuery:
    """One query's candidates in ranking order (best first): raw scores and 0/1 labels."""

    query_id: str
    scores: tuple[float, ...]
    labels: tuple[int, ...]

    @property
    def relevant(self) -> int:
        return sum(self.labels)


@dataclass(frozen=True)
class LabelledRun:
    """What a calibration is fitted on.

    Attributes:
        settings: the reranker's settings (``mode``, ``model``, prompt, budgets, …).
        relevance_threshold: the lowest qrels grade counted relevant.
        unjudged: candidates without a judgment (counted not relevant, as trec_eval does).
    """

    settings: dict[str, Any]
    dataset: str
    run: str
    top_k: int
    relevance_threshold: int
    queries: tuple[LabelledQuery, ...]
    unjudged: int = 0

    @property
    def family(self) -> str:
        return str(self.settings.get("mode", "pointwise"))


def load_labelled_run(run_dir: str | Path, *, qrels: str | Path | Qrels | None = None,
                      relevance_threshold: int = 1) -> LabelledRun:
    """Read a ``thinkrank evaluate`` output folder and label its judgments with ``qrels``
    (default: the folder's ``qrels.trec``); grades ``>= relevance_threshold`` are relevant.

    Raises:
        InvalidInputError: the folder is not a finished reranked evaluate run, has no qrels,
            or a threshold that leaves no relevant (or no non-relevant) candidate.
    """
    folder = Path(run_dir)
    metrics_path, rankings_path = folder / "metrics.json", folder / "rankings.jsonl"
    if not metrics_path.is_file():
        raise InvalidInputError(f"{folder} holds no metrics.json: pass the --output folder of a finished `thinkrank evaluate`")
    meta = json.loads(metrics_path.read_text())
    settings = meta.get("reranker")
    if not settings or not rankings_path.is_file():
        raise InvalidInputError(
            f"{folder} is an evaluation without a reranker (no settings or rankings.jsonl); rerun `thinkrank evaluate` "
            "with --model to have judgments to calibrate"
        )
    if isinstance(qrels, dict):
        judged = qrels
    else:
        source = Path(qrels) if qrels is not None else folder / "qrels.trec"
        if not source.is_file():
            raise InvalidInputError(
                f"no relevance judgments at {source}: pass --qrels with the collection's qrels file "
                "(runs written before evaluate saved qrels.trec lack it)"
            )
        judged = read_qrels(source)
    queries, unjudged = [], 0
    for _, row in iter_jsonl(rankings_path):
        qid = str(row["query_id"])
        grades = judged.get(qid)
        if not grades:
            continue  # an unjudged query says nothing about relevance
        results = row["results"]
        unjudged += sum(r["doc_id"] not in grades for r in results)
        queries.append(LabelledQuery(
            qid, tuple(float(r["score"]) for r in results),
            tuple(int(grades.get(r["doc_id"], 0) >= relevance_threshold) for r in results),
        ))
    positives = sum(q.relevant for q in queries)
    pairs = sum(len(q.labels) for q in queries)
    if not queries:
        raise InvalidInputError(f"none of the queries in {rankings_path} has relevance judgments in the qrels given")
    if positives in (0, pairs):
        which = "relevant" if positives == 0 else "non-relevant"
        raise InvalidInputError(
            f"with relevance threshold {relevance_threshold}, no candidate of {folder} is {which}: a calibration needs "
            "both; change --relevance-threshold"
        )
    return LabelledRun(dict(settings), str(meta.get("dataset", "")), str(meta.get("run", "")),
                       int(meta.get("top_k", 0)), relevance_threshold, tuple(queries), unjudged)
