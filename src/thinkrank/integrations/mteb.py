"""MTEB v2: a thinkrank reranker as a cross-encoder MTEB evaluates on retrieval/reranking tasks.

    >>> import mteb
    >>> model = ThinkrankCrossEncoder(Rank1("jhu-clsp/rank1-7b"))
    >>> results = mteb.evaluate(model, mteb.get_task("SciFact"), cache=None)   # needs top_ranked

MTEB v2 (``mteb.models.models_protocols.CrossEncoderProtocol``) calls
``predict(inputs1, inputs2, *, task_metadata, hf_split, hf_subset, prompt_type)`` with two
data loaders of the same length, queries and documents, one pair per row, and expects one score
per pair. Its ``SearchCrossEncoderWrapper`` builds them from a task's ``top_ranked`` candidates:
a document's ``text`` is already ``title + " " + text`` and a query's ``text`` already carries
its instruction. (The reference Rank1 code subclasses a fork of MTEB v1, whose
``predict(sentences)`` took a list of triples; v2 no longer calls that.)

All queries go to the reranker in one ``rerank_many`` call, so a pointwise reranker batches
every pair and a listwise one every window; each query's documents keep MTEB's order.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from thinkrank.errors import InvalidInputError, require
from thinkrank.integrations._common import check_reranker
from thinkrank.rerankers.base import Reranker, RerankRequest

require("mteb", "mteb")

import numpy as np  # noqa: E402
from mteb.models.model_meta import ModelMeta  # noqa: E402


class ThinkrankCrossEncoder:
    """A thinkrank reranker behind MTEB v2's ``CrossEncoderProtocol``.

    Args:
        reranker: any thinkrank reranker (``Rank1``, ``RankK``, a ``CachedReranker``, …).
        name: the model name MTEB records (``org/name``; default from the reranker's settings).
        revision: the revision MTEB records.

    Raises:
        InvalidInputError: ``reranker`` is not a reranker.
    """

    def __init__(self, reranker: Reranker, name: str | None = None, revision: str | None = None) -> None:
        check_reranker(reranker)
        self.reranker = reranker
        model = str(getattr(reranker, "settings", {}).get("model", "thinkrank"))
        self.mteb_model_meta = ModelMeta.create_empty(
            overwrites=dict(name=name or _meta_name(model), revision=revision or "thinkrank",
                            model_type=["cross-encoder"], framework=[], modalities=["text"])
        )

    def predict(self, inputs1: Iterable[dict[str, Any]], inputs2: Iterable[dict[str, Any]], *,
                task_metadata: Any = None, hf_split: str | None = None, hf_subset: str | None = None,
                prompt_type: Any = None, **kwargs: Any) -> np.ndarray:
        """One relevance score per (query, document) row of the two loaders."""
        queries = [t for batch in inputs1 for t in batch["text"]]
        documents = [t for batch in inputs2 for t in batch["text"]]
        if len(queries) != len(documents):
            raise InvalidInputError(f"MTEB gave {len(queries)} queries but {len(documents)} documents; they pair up")
        scores = np.zeros(len(queries), dtype=np.float64)
        # One request per query, its documents keyed by row (a document seen twice stays two rows);
        # all requests in one call, so every pair (or window) is batched together.
        groups = _group(queries)
        requests = [RerankRequest(q, [{"id": str(r), "text": documents[r]} for r in rows]) for q, rows in groups.items()]
        for ranking in self.reranker.rerank_many(requests):
            for judgment in ranking:
                scores[int(judgment.doc_id)] = judgment.score
        return scores


def _group(queries: list[str]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for row, query in enumerate(queries):
        groups.setdefault(query, []).append(row)
    return groups


def _meta_name(model: str) -> str:
    parts = [p for p in model.replace("\\", "/").split("/") if p]
    return "/".join(parts[-2:]) if len(parts) >= 2 else f"thinkrank/{parts[-1] if parts else 'reranker'}"


__all__ = ["ThinkrankCrossEncoder"]
