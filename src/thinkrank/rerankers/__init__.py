"""Rerankers: Rank1 (pointwise) and Rank-K (listwise), sharing one API and result type."""

from thinkrank.rerankers.base import RerankRequest, Reranker
from thinkrank.rerankers.listwise import RankK
from thinkrank.rerankers.pointwise import Pair, Rank1

__all__ = ["Pair", "Rank1", "RankK", "RerankRequest", "Reranker"]
