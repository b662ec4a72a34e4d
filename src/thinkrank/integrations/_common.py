"""What the framework adapters share: rerank plain texts and map the judgments back."""

from __future__ import annotations

from collections.abc import Sequence

from thinkrank.errors import InvalidInputError
from thinkrank.rerankers.base import Reranker
from thinkrank.types import Document, Ranking


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
