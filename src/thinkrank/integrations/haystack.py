"""Haystack: a ranker component that reranks ``Document``s with a thinkrank reranker.

    >>> from haystack import Pipeline
    >>> pipe = Pipeline()
    >>> pipe.add_component("retriever", InMemoryBM25Retriever(document_store=store, top_k=20))
    >>> pipe.add_component("ranker", ThinkrankRanker("jhu-clsp/rank1-7b", top_k=5))
    >>> pipe.connect("retriever.documents", "ranker.documents")
    >>> out = pipe.run({"retriever": {"query": q}, "ranker": {"query": q}})
    >>> out["ranker"]["documents"][0].score, out["ranker"]["documents"][0].meta["reasoning"]

Haystack's ranker conventions: ``top_k`` and ``score_threshold`` (at init, overridable per run),
``meta_fields_to_embed`` joined to the content with ``embedding_separator``, the score in
``Document.score``, copies of the input documents returned best first, the model loaded in
``warm_up`` (called by the pipeline, or by the first ``run``), and ``to_dict``/``from_dict`` so a
pipeline with this component saves to YAML and loads back.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from thinkrank.errors import InvalidInputError, require
from thinkrank.integrations._common import (
    check_select,
    check_top_n,
    require_calibration,
    rerank_selected,
)
from thinkrank.rerankers.spec import MODES

require("haystack", "haystack")

from haystack import Document, component, default_from_dict, default_to_dict  # noqa: E402


@component
class ThinkrankRanker:
    """A Haystack ranker over a thinkrank reranker, built from serialisable settings.

    Args:
        model: hub id, local directory, ``.gguf`` file or adapter directory (default: the mode's
            released model).
        mode: ``"pointwise"`` (Rank1 and the pair families), ``"listwise"`` (Rank-K, ReasonRank) or
            ``"setwise"`` (Rank-R1).
        top_k: most documents returned; ``score_threshold``: drop documents scoring below it.
        meta_fields_to_embed: meta fields put before the content (``embedding_separator`` between).
        include_reasoning: put the model's reasoning in ``meta["reasoning"]``.
        reranker_options: keyword arguments of ``Rank1``/``RankK``/``RankR1`` (``family``, ``engine``, ``think_budget``,
            ``device``, ``calibration`` …); JSON values so the component serialises.
        select: keep only the documents a calibrated selection keeps (``{"recall": 0.9, "alpha":
            0.1}`` or ``{"probability": 0.5}``, see docs/calibration.md; ``top_k`` and
            ``score_threshold`` then apply to them), with the summary in each one's
            ``meta["selection"]``. Needs ``reranker_options={"calibration": FILE}``.

    Raises:
        InvalidInputError: an unknown mode, a bad ``top_k``, ``score_threshold`` or ``select``
            (or ``select`` without a calibration, when the model loads).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        mode: str = "pointwise",
        top_k: int = 10,
        score_threshold: float | None = None,
        meta_fields_to_embed: list[str] | None = None,
        embedding_separator: str = "\n",
        include_reasoning: bool = True,
        reranker_options: dict[str, Any] | None = None,
        select: dict[str, Any] | None = None,
    ) -> None:
        if mode not in MODES:
            raise InvalidInputError(f"mode must be one of {MODES}, got {mode!r}")
        check_top_n(top_k, "top_k")
        self._select = check_select(select)
        self.select = dict(select) if select is not None else None
        self.model, self.mode, self.top_k, self.score_threshold = model, mode, top_k, score_threshold
        self.meta_fields_to_embed = list(meta_fields_to_embed or [])
        self.embedding_separator = embedding_separator
        self.include_reasoning = include_reasoning
        self.reranker_options = dict(reranker_options or {})
        self._reranker: Any = None

    def warm_up(self) -> None:
        """Load the model (once)."""
        if self._reranker is not None:
            return
        if self.mode == "setwise":
            from thinkrank.rerankers.setwise import RankR1 as cls
        elif self.mode == "listwise":
            from thinkrank.rerankers.listwise import RankK as cls  # type: ignore[assignment]
        else:
            from thinkrank.rerankers.pointwise import Rank1 as cls  # type: ignore[assignment]
        # None: the class's own default model.
        model = () if self.model is None else (self.model,)
        self._reranker = cls(*model, **self.reranker_options)
        if self._select is not None:
            require_calibration(self._reranker)

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(
            self, model=self.model, mode=self.mode, top_k=self.top_k, score_threshold=self.score_threshold,
            meta_fields_to_embed=self.meta_fields_to_embed, embedding_separator=self.embedding_separator,
            include_reasoning=self.include_reasoning, reranker_options=self.reranker_options, select=self.select,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ThinkrankRanker:
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(
        self, query: str, documents: list[Document], top_k: int | None = None, score_threshold: float | None = None
    ) -> dict[str, list[Document]]:
        """``documents`` reranked for ``query``: copies with ``score`` set, best first, at most
        ``top_k``, none below ``score_threshold`` (both default to the component's)."""
        top_k = self.top_k if top_k is None else top_k
        check_top_n(top_k, "top_k")
        score_threshold = self.score_threshold if score_threshold is None else score_threshold
        if not documents:
            return {"documents": []}
        self.warm_up()
        texts = [self._text(d, i) for i, d in enumerate(documents)]
        judgments, selection = rerank_selected(self._reranker, query, texts, top_k, self._select)
        out = []
        for judgment in judgments:
            if score_threshold is not None and judgment.score < score_threshold:
                continue
            source = documents[judgment.index]
            meta = {**source.meta, "reasoning": judgment.reasoning} if self.include_reasoning else dict(source.meta)
            if judgment.probability is not None:  # a reranker built with calibration=...
                meta["probability"] = judgment.probability
            if selection is not None:
                meta["selection"] = dict(selection)
            out.append(dataclasses.replace(source, score=judgment.score, meta=meta))
        return {"documents": out}

    def _text(self, document: Document, position: int) -> str:
        if not document.content:
            raise InvalidInputError(f"document {position} (id {document.id!r}) has no text content to rerank")
        fields = [str(document.meta[k]) for k in self.meta_fields_to_embed if document.meta.get(k) is not None]
        return self.embedding_separator.join([*fields, document.content])
