"""PyTerrier: a thinkrank reranker as a ``pt.Transformer``, for pipelines and ``pt.Experiment``.

    >>> import pyterrier as pt
    >>> rank1 = ThinkrankReranker("jhu-clsp/rank1-7b", think_budget=512, cache="judgments.sqlite")
    >>> pt.Experiment([bm25, bm25 % 20 >> rank1], topics, qrels, eval_metrics=["ndcg_cut_10"])

``ThinkrankReranker(model, **options)`` takes the options :func:`~thinkrank.build_reranker` does,
by name (``mode="listwise"``, ``reasoning=False``, ``engine="vllm"``, ``base_url=...``), or an
already built reranker (``Rank1``, ``RankK``, a ``CachedReranker``, ...). Every family a spec
builds works here: the transformer only calls ``rerank_many``.

Input: a result frame (``qid, query, docno, text``; ``title`` when present goes in front of the
text as Rank1 does). Output: the same rows with ``score`` and ``rank`` (0 = best, thinkrank's
order: ties keep their input order) and the judgment's ``reasoning``, ``answer``, ``p_true``,
``forced``, ``truncated`` and ``reasoning_tokens``, sorted by query then rank. Every query of the
frame goes to the reranker in one ``rerank_many`` call, so a pointwise model batches pairs across
queries. An empty frame gives an empty frame with the output columns (PyTerrier's inspection);
missing columns raise PyTerrier's ``InputValidationError``.

Caching: ``cache=`` puts thinkrank's :class:`~thinkrank.cache.JudgmentCache` in front (the same
keys as ``thinkrank evaluate``, so the two share a cache file), reasoning included. Pointwise
scores depend only on (settings, query, document), so ``pyterrier_caching.ScorerCache`` works
too; :meth:`ThinkrankReranker.judgment_keys` adds a ``judgment_key`` column holding thinkrank's own
key for ScorerCache to use (``key="judgment_key"``), so a changed setting or text is a miss.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from thinkrank.cache import JudgmentCache
from thinkrank.errors import InvalidInputError, require
from thinkrank.integrations._common import check_select, require_calibration
from thinkrank.rerankers.base import Reranker, RerankRequest
from thinkrank.rerankers.cached import CachedReranker, CacheUse, pair_key
from thinkrank.rerankers.pointwise import Pair
from thinkrank.rerankers.spec import RerankerSpec, build_reranker, spec_from_options
from thinkrank.types import Document, Judgment, Ranking, as_documents

require("pyterrier", "pyterrier")
require("pyterrier_alpha", "pyterrier")

import pandas as pd  # noqa: E402
import pyterrier as pt  # noqa: E402
import pyterrier_alpha as pta  # noqa: E402

# Judgment fields that become columns, with the dtype an empty frame gives them. A field a newer
# Judgment adds (e.g. a calibrated ``probability``) becomes a column when the Judgment has it.
_JUDGMENT_COLUMNS: dict[str, str] = {
    "reasoning": "object", "answer": "object", "p_true": "float64", "forced": "bool", "truncated": "bool",
    "reasoning_tokens": "int64", "probability": "float64",
}
JUDGMENT_COLUMNS = tuple(c for c in _JUDGMENT_COLUMNS if c in Judgment.__dataclass_fields__)
OUTPUT_COLUMNS = ("score", "rank", *JUDGMENT_COLUMNS)
"""The columns the transformer adds (or overwrites) on its input."""


class ThinkrankReranker(pt.Transformer):
    """A thinkrank reranker as a PyTerrier transformer.

    Args:
        model: hub id, local directory, ``.gguf`` or adapter directory (None: the mode's released
            model), or an already built thinkrank reranker (then give no other options but
            ``cache``).
        cache: a judgment cache file (or open :class:`JudgmentCache`); what it holds is read
            back, the rest computed and committed per engine batch.
        text_field: the column holding the passage text (default ``text``).
        chunk_size: with ``cache``: pairs (pointwise) or queries (listwise, cascade) computed together.
        select: keep only the rows a calibrated selection keeps per query (``{"recall": 0.9,
            "alpha": 0.1}`` or ``{"probability": 0.5}``, see docs/calibration.md), adding the
            query's ``selection_kept``, ``selection_candidates``, ``expected_recall`` and
            ``expected_precision`` columns. Needs a reranker built with ``calibration=FILE``
            (``ThinkrankReranker(Rank1(..., calibration=FILE), select=...)``).
        engine: an engine name (``"auto"``, ``"vllm"``, ...) or an already loaded Engine, shared
            with other rerankers.
        **options: the :class:`~thinkrank.rerankers.spec.RerankerSpec` fields (``mode``,
            ``reasoning``, ``think_budget``, ``cascade``, ``window``, ...) and engine options.

    Raises:
        InvalidInputError: an unknown option or a bad value (before any model loads).
    """

    def __init__(self, model: str | os.PathLike[str] | Reranker | None = None, *,
                 cache: str | Path | JudgmentCache | None = None, text_field: str = "text",
                 chunk_size: int | None = None, select: dict[str, Any] | None = None, **options: Any) -> None:
        if not isinstance(text_field, str) or not text_field:
            raise InvalidInputError(f"text_field must be a column name, got {text_field!r}")
        self.spec: RerankerSpec | None = None
        if isinstance(model, Reranker):
            if options:
                raise InvalidInputError(
                    f"options {sorted(options)} build a reranker, but model is already one ({type(model).__name__}); "
                    "give a model name with options, or the built reranker alone"
                )
            self.reranker = model
        else:
            engine = options.pop("engine", "auto")
            loaded = None if isinstance(engine, str) else engine
            self.spec = spec_from_options(model if model is not None or loaded is None else loaded.model_name,
                                          engine="auto" if loaded is not None else engine, **options)
            self.reranker = build_reranker(self.spec, engine=loaded)
        self.text_field = text_field
        self._select = check_select(select)
        self._calibration = require_calibration(self.reranker) if self._select is not None else None
        self.cache = cache if isinstance(cache, JudgmentCache) or cache is None else JudgmentCache(cache)
        # `is not None`: an empty cache has len() 0 and would be falsy.
        self._cached = CachedReranker(self.reranker, self.cache, chunk_size=chunk_size) if self.cache is not None else None
        self._use = CacheUse()

    @property
    def use(self) -> CacheUse:
        """Judgments (pointwise) or rankings (listwise, cascade) read from ``cache`` and computed,
        over every call."""
        return self._cached.use if self._cached else self._use

    @property
    def settings(self) -> dict[str, Any]:
        return self.reranker.settings

    def with_options(self, **changes: Any) -> ThinkrankReranker:
        """Another transformer on the same loaded engine with ``changes`` to the settings, e.g.
        a no-reasoning first stage and a reasoning second stage of one cascade pipeline.

        Raises:
            InvalidInputError: this transformer was given a built reranker (no settings to change),
                or a change is not a valid option.
        """
        if self.spec is None:
            raise InvalidInputError("with_options needs a transformer built from a model name and options")
        fields = {k: getattr(self.spec, k) for k in ("mode", "think_budget", "reasoning", "prompt", "instruction",
                                                      "max_passage_tokens", "temperature", "seed", "window", "stride",
                                                      "depth", "max_tokens", "reasoning_close", "cascade")}
        engine = getattr(self.reranker, "engine", None)
        # Without a loaded engine to share (a reranker that keeps none), the new one loads its own.
        loading = {} if engine is not None else {"engine": self.spec.engine, **self.spec.engine_options}
        return ThinkrankReranker(self.spec.model, engine=engine if engine is not None else loading.pop("engine"),
                                 cache=self.cache, text_field=self.text_field, **{**fields, **loading, **changes})

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        pta.validate.result_frame(inp, extra_columns=["query", self.text_field])
        if not len(inp):
            return _empty_output(inp)
        qids, requests, rows = self._requests(inp)
        rankings = (self._cached or self.reranker).rerank_many(requests)
        if self._cached is None:
            self._use.computed += sum(len(r) for r in rankings)
        if self._select is None:
            return _output(inp, qids, rows, rankings)
        chosen = [r.select(self._calibration, **self._select) for r in rankings]
        kept = [Ranking(r.query, c.kept, r.query_id, r.windows, r.comparisons) for r, c in zip(rankings, chosen)]
        columns = [{"selection_kept": len(c.kept), "selection_candidates": c.candidates,
                    "expected_recall": c.expected_recall, "expected_precision": c.expected_precision} for c in chosen]
        return _output(inp, qids, rows, kept, columns)

    def judgment_keys(self) -> pt.Transformer:
        """A transformer that adds ``judgment_key``: thinkrank's cache key of each row's
        judgment (settings, query, title and text). Put it before a
        ``pyterrier_caching.ScorerCache(path, self, key="judgment_key")``.

        Raises:
            InvalidInputError: a listwise reranker or a cascade, whose scores depend on the other
                candidates of the query (ScorerCache would score only the missing rows);
                use ``cache=`` for those.
        """
        settings = self.reranker.settings
        if self.reranker.judges != "pair":
            raise InvalidInputError(
                "ScorerCache caches one score per document, but a listwise or cascade score depends on the query's "
                "other candidates; use ThinkrankReranker(..., cache='judgments.sqlite') instead"
            )
        return _JudgmentKeys(self, settings)

    def __repr__(self) -> str:
        settings = self.reranker.settings
        return f"ThinkrankReranker({settings.get('model')!r}, mode={settings.get('mode')!r})"

    # ---- internals ---------------------------------------------------------------------------
    def _requests(self, inp: pd.DataFrame) -> tuple[list[Any], list[RerankRequest], list[list[int]]]:
        """One request per qid (in order of first appearance) and the frame positions of its rows.
        Every query is checked before any is reranked, so bad input loses no computation."""
        has_title = "title" in inp.columns
        qids, requests, rows = [], [], []
        for qid, positions in _groups(inp["qid"]):
            part = inp.iloc[positions]
            texts = part["query"].unique()
            if len(texts) != 1:
                raise InvalidInputError(f"qid {qid!r} has {len(texts)} different query texts; one qid is one query")
            documents = [
                {"id": str(d), "text": t, "title": _title(ti) if has_title else None}
                for d, t, ti in zip(part["docno"], part[self.text_field],
                                    part["title"] if has_title else [None] * len(part))
            ]
            try:
                checked = as_documents(documents)
            except InvalidInputError as exc:
                raise InvalidInputError(f"qid {qid!r}: {exc}") from None
            if not isinstance(texts[0], str) or not texts[0].strip():
                raise InvalidInputError(f"qid {qid!r}: the query must be a non-empty string, got {texts[0]!r}")
            qids.append(qid)
            requests.append(RerankRequest(texts[0], checked, str(qid)))
            rows.append(positions)
        return qids, requests, rows


class _JudgmentKeys(pt.Transformer):
    """Adds ``judgment_key``, the key thinkrank's judgment cache stores each row's judgment under."""

    def __init__(self, parent: ThinkrankReranker, settings: dict[str, Any]) -> None:
        self.parent = parent
        self.settings = settings

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        pta.validate.result_frame(inp, extra_columns=["query", self.parent.text_field])
        if not len(inp):
            return inp.assign(judgment_key=pd.Series(index=inp.index, dtype="object"))
        _, requests, rows = self.parent._requests(inp)
        keys = pd.Series(index=inp.index, dtype="object")
        for request, positions in zip(requests, rows):
            for position, document in zip(positions, request.documents):
                # _requests gave every request checked Documents
                keys.iloc[position] = pair_key(self.settings, Pair(request.query, cast(Document, document)))
        return inp.assign(judgment_key=keys)


def _groups(qids: pd.Series) -> list[tuple[Any, list[int]]]:
    groups: dict[Any, list[int]] = {}
    for position, qid in enumerate(qids):
        groups.setdefault(qid, []).append(position)
    return list(groups.items())


def _title(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _empty_output(inp: pd.DataFrame) -> pd.DataFrame:
    out = inp.drop(columns=[c for c in OUTPUT_COLUMNS if c in inp.columns]).copy()
    for column in OUTPUT_COLUMNS:
        out[column] = pd.Series(dtype="float64" if column == "score" else "int64" if column == "rank"
                                else _JUDGMENT_COLUMNS[column])
    return out


def _output(inp: pd.DataFrame, qids: Sequence[Any], rows: Sequence[list[int]],
            rankings: Sequence[Ranking], per_query: Sequence[dict[str, Any]] | None = None) -> pd.DataFrame:
    """The output rows: those of the rankings' judgments (every row, unless a selection left some
    out), with ``per_query``'s values as columns of each query's rows."""
    n = len(inp)
    order: list[tuple[int, int] | None] = [None] * n
    values: dict[str, list[Any]] = {c: [None] * n for c in OUTPUT_COLUMNS}
    for q, (positions, ranking) in enumerate(zip(rows, rankings)):
        for rank, judgment in enumerate(ranking):
            position = positions[judgment.index]
            order[position] = (q, rank)
            values["score"][position] = judgment.score
            values["rank"][position] = rank
            for column in JUDGMENT_COLUMNS:
                values[column][position] = getattr(judgment, column)
            for column, value in (per_query[q] if per_query else {}).items():
                values.setdefault(column, [None] * n)[position] = value
    placed = [p for p in range(n) if order[p] is not None]
    inp = inp.iloc[placed]
    out = inp.drop(columns=[c for c in values if c in inp.columns]).copy()
    for column, column_values in values.items():
        dtype = ("float64" if column == "score" else "int64" if column == "rank"
                 else _JUDGMENT_COLUMNS.get(column, "float64" if column.startswith("expected") else "int64"))
        out[column] = pd.Series([column_values[p] for p in placed], index=inp.index, dtype=dtype)
    # Sorted by query (first appearance) then rank, PyTerrier's convention for result frames.
    ranks = [rank for rank in order if rank is not None]  # the placed rows' (query, rank), in row order
    by = sorted(range(len(placed)), key=lambda i: ranks[i])
    return out.iloc[by].reset_index(drop=True)


__all__ = ["JUDGMENT_COLUMNS", "OUTPUT_COLUMNS", "ThinkrankReranker"]
