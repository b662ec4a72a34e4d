"""LangChain: rerank retrieved ``Document``s with a thinkrank reranker, in process.

    >>> from langchain_classic.retrievers import ContextualCompressionRetriever
    >>> compressor = ThinkrankCompressor(reranker=Rank1("jhu-clsp/rank1-7b"), top_n=3, include_reasoning=True)
    >>> retriever = ContextualCompressionRetriever(base_compressor=compressor, base_retriever=bm25)
    >>> docs = retriever.invoke("what do cats eat")   # best first
    >>> docs[0].metadata["relevance_score"], docs[0].metadata["reasoning"]

Like LangChain's own rerankers (``CohereRerank``, ``CrossEncoderReranker``) the score goes to
``metadata["relevance_score"]``; the documents come back as copies, the input ones untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from thinkrank.errors import require
from thinkrank.integrations._common import (
    check_reranker,
    check_select,
    check_top_n,
    require_calibration,
    rerank_selected,
)

require("langchain_core", "langchain")

from langchain_core.callbacks import Callbacks  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.documents.compressor import BaseDocumentCompressor  # noqa: E402
from pydantic import ConfigDict, model_validator  # noqa: E402


class ThinkrankCompressor(BaseDocumentCompressor):
    """A LangChain document compressor that reranks with a thinkrank reranker.

    Args:
        reranker: any thinkrank reranker (``Rank1``, ``RankK``, a ``CachedReranker``, …).
        top_n: how many documents to keep, best first (None keeps all).
        include_reasoning: also put the model's reasoning in ``metadata["reasoning"]``.
        select: keep only the documents a calibrated selection keeps (``{"recall": 0.9, "alpha":
            0.1}`` or ``{"probability": 0.5}``, see docs/calibration.md; ``top_n`` then applies to
            them), with the summary in each one's ``metadata["selection"]``. Needs a reranker
            built with ``calibration=FILE``.

    Raises:
        InvalidInputError: ``reranker`` is not a reranker, or a bad ``top_n``; at rerank time an
            empty query or an empty document.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    reranker: Any
    top_n: int | None = 3
    include_reasoning: bool = False
    select: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> ThinkrankCompressor:
        check_reranker(self.reranker)
        check_top_n(self.top_n, "top_n")
        if check_select(self.select) is not None:
            require_calibration(self.reranker)
        return self

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """The best ``top_n`` of ``documents`` for ``query``, best first, scored in their metadata."""
        if not documents:
            return []
        judgments, selection = rerank_selected(self.reranker, query, [d.page_content for d in documents],
                                               self.top_n, check_select(self.select))
        out = []
        for judgment in judgments:
            source = documents[judgment.index]
            metadata = {**source.metadata, "relevance_score": judgment.score}
            if judgment.probability is not None:  # a reranker built with calibration=...
                metadata["probability"] = judgment.probability
            if selection is not None:
                metadata["selection"] = dict(selection)
            if self.include_reasoning:
                metadata["reasoning"] = judgment.reasoning
            out.append(Document(page_content=source.page_content, metadata=metadata, id=source.id))
        return out
