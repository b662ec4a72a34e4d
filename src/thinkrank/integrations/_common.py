"""What the framework adapters share: rerank plain texts and map the judgments back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from thinkrank.errors import InvalidInputError
from thinkrank.rerankers.base import Reranker
from thinkrank.types import Document, Judgment, Ranking

SELECT_KEYS = ("recall", "alpha", "probability", "rule")


def rerank_texts(reranker: Reranker, query: str, texts: Sequence[str], top_n: int | None) -> Ranking:
    """Rerank ``texts`` for ``query``; each judgment's ``index`` is the text's position.

    Raises:
        InvalidInputError: a bad ``top_n``, an empty query or an empty text (naming its position).
    """
    check_top_n(top_n, "top_n")
    return reranker.rerank(query, [Document(id=str(i), text=t) for i, t in enumerate(texts)], top_n=top_n)


def check_top_n(value: int | None, name: str) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise InvalidInputError(f"{name} must be an int >= 1 or None (keep all), got {value!r}")


def check_reranker(reranker: object) -> None:
    if not callable(getattr(reranker, "rerank", None)):
        raise InvalidInputError(
            f"reranker must be a thinkrank reranker (Rank1, RankK, CachedReranker, …), got {type(reranker).__name__}"
        )


def check_select(select: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The adapters' ``select`` option, ``{"recall": R, "alpha": A, "rule": RULE}`` (alpha and
    rule optional) or ``{"probability": P}``, as
    :func:`thinkrank.calibration.select`'s checked keywords (None: no selection).

    Raises:
        InvalidInputError: not a dict, an unknown key, a mix of modes or a value out of range.
    """
    if select is None:
        return None
    from thinkrank.calibration.selection import selection_options

    example = "{'recall': 0.9, 'alpha': 0.1, 'rule': 'recall-probability'} or {'probability': 0.5}"
    if not isinstance(select, Mapping):
        raise InvalidInputError(f"select must be a dict such as {example}, got {select!r}")
    unknown = sorted(set(select) - set(SELECT_KEYS))
    if unknown:
        raise InvalidInputError(f"select: unknown key(s) {unknown}; expected {example}")
    return selection_options(**select, where="select")


def calibration_of(reranker: object) -> Any:
    """The calibration a reranker (or the reranker a ``CachedReranker`` wraps) was built with."""
    cal = getattr(reranker, "calibration", None)
    return cal if cal is not None else getattr(getattr(reranker, "reranker", None), "calibration", None)


def require_calibration(reranker: object) -> Any:
    cal = calibration_of(reranker)
    if cal is None:
        raise InvalidInputError(
            "select needs a calibrated reranker: build it with calibration=FILE (a file written by "
            "`thinkrank calibrate`, see docs/calibration.md), or leave select out"
        )
    return cal


def rerank_selected(reranker: Reranker, query: str, texts: Sequence[str], top_n: int | None,
                    select: dict[str, Any] | None) -> tuple[list[Judgment], dict[str, Any] | None]:
    """The judgments to return, best first, and what ``select`` kept (None without it). A
    selection sees every candidate (its cut and expected recall depend on all of them); ``top_n``
    then applies to the kept ones.

    Raises:
        InvalidInputError: as :func:`rerank_texts`, or ``select`` with an uncalibrated reranker.
    """
    if select is None:
        return list(rerank_texts(reranker, query, texts, top_n)), None
    cal = require_calibration(reranker)
    check_top_n(top_n, "top_n")
    chosen = rerank_texts(reranker, query, texts, None).select(cal, **select)
    summary = chosen.to_dict()
    del summary["doc_ids"]  # positions in this call: the returned documents are the kept ones
    return chosen.kept[:top_n] if top_n is not None else chosen.kept, summary
