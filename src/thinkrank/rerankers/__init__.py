"""Rerankers: Rank1 (pointwise), Rank-K (listwise) and Rank-R1 (setwise), sharing one API and result type;
built from a :class:`RerankerSpec` by :func:`build_reranker`, cached by :class:`CachedReranker`."""

from thinkrank.rerankers.base import RerankRequest, Reranker
from thinkrank.rerankers.cached import CachedReranker, CacheUse
from thinkrank.rerankers.listwise import RankK
from thinkrank.rerankers.pointwise import Pair, Rank1
from thinkrank.rerankers.setwise import RankR1
from thinkrank.rerankers.spec import RerankerSpec, build_reranker

__all__ = ["CacheUse", "CachedReranker", "Pair", "Rank1", "RankK", "RankR1", "RerankRequest", "Reranker",
           "RerankerSpec", "build_reranker"]
