"""LlamaIndex: a node postprocessor that reranks ``NodeWithScore``s with a thinkrank reranker.

    >>> from llama_index.core.query_engine import RetrieverQueryEngine
    >>> rerank = ThinkrankRerank(reranker=Rank1("jhu-clsp/rank1-7b"), top_n=3, include_reasoning=True)
    >>> engine = RetrieverQueryEngine.from_args(retriever, node_postprocessors=[rerank])
    >>> for hit in engine.query("what do cats eat").source_nodes:
    ...     print(hit.score, hit.node.metadata["reasoning"])

As LlamaIndex's own rerankers do, the model reads each node's content with its embedding
metadata (``MetadataMode.EMBED``) and the score becomes ``NodeWithScore.score``. The score and,
on request, the reasoning also go to a copy of each node's metadata (``relevance_score``,
``reasoning``), excluded from what the LLM and the embedder see so they never leak into prompts.
"""

from __future__ import annotations

from typing import Any

from thinkrank.errors import InvalidInputError, require
from thinkrank.integrations._common import (
    check_reranker,
    check_select,
    check_top_n,
    require_calibration,
    rerank_selected,
)

require("llama_index.core", "llamaindex")

from llama_index.core.bridge.pydantic import Field, model_validator  # noqa: E402
from llama_index.core.postprocessor.types import BaseNodePostprocessor  # noqa: E402
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle  # noqa: E402

_KEYS = ("relevance_score", "reasoning", "probability", "selection")


class ThinkrankRerank(BaseNodePostprocessor):
    """A LlamaIndex node postprocessor that reranks with a thinkrank reranker.

    Args:
        reranker: any thinkrank reranker (``Rank1``, ``RankK``, a ``CachedReranker``, …).
        top_n: how many nodes to keep, best first (None keeps all).
        include_reasoning: also put the model's reasoning in the node's ``metadata["reasoning"]``.
        select: keep only the nodes a calibrated selection keeps (``{"recall": 0.9, "alpha": 0.1}``
            or ``{"probability": 0.5}``, see docs/calibration.md; ``top_n`` then applies to them),
            with the summary in each one's ``metadata["selection"]``. Needs a reranker built with
            ``calibration=FILE``.

    Raises:
        InvalidInputError: ``reranker`` is not a reranker, a bad ``top_n``, or no query.
    """

    reranker: Any = Field(exclude=True, description="a thinkrank reranker")
    top_n: int | None = Field(default=2, description="nodes to keep (None: all)")
    include_reasoning: bool = Field(default=False, description="put the reasoning in the metadata")
    select: dict[str, Any] | None = Field(default=None, description="keep a calibrated selection")

    @model_validator(mode="after")
    def _check(self) -> ThinkrankRerank:
        check_reranker(self.reranker)
        check_top_n(self.top_n, "top_n")
        if check_select(self.select) is not None:
            require_calibration(self.reranker)
        return self

    @classmethod
    def class_name(cls) -> str:
        return "ThinkrankRerank"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise InvalidInputError("ThinkrankRerank needs the query: call postprocess_nodes(nodes, query_str=...)")
        if not nodes:
            return []
        texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
        judgments, selection = rerank_selected(self.reranker, query_bundle.query_str, texts, self.top_n,
                                               check_select(self.select))
        out = []
        for judgment in judgments:
            node = nodes[judgment.index].node.model_copy()  # the index's stored node stays as it was
            node.metadata = {**node.metadata, "relevance_score": judgment.score}
            if judgment.probability is not None:  # a reranker built with calibration=...
                node.metadata["probability"] = judgment.probability
            if selection is not None:
                node.metadata["selection"] = dict(selection)
            if self.include_reasoning:
                node.metadata["reasoning"] = judgment.reasoning
            node.excluded_llm_metadata_keys = [*node.excluded_llm_metadata_keys, *_KEYS]
            node.excluded_embed_metadata_keys = [*node.excluded_embed_metadata_keys, *_KEYS]
            out.append(NodeWithScore(node=node, score=judgment.score))
        return out
