"""thinkrank: reasoning rerankers that return a calibrated score and the reasoning behind it.

    >>> from thinkrank import Rank1
    >>> ranking = Rank1("jhu-clsp/rank1-7b").rerank("what is a cat", ["Cats are felines.", "Stocks fell."])
    >>> ranking[0].score, ranking[0].reasoning

Names are imported lazily so ``import thinkrank`` stays light (no torch until a model is used).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Rank1": "thinkrank.rerankers.pointwise",
    "Pair": "thinkrank.rerankers.pointwise",
    "Qwen3Reranker": "thinkrank.rerankers.pointwise",
    "TFRank": "thinkrank.rerankers.pointwise",
    "RankK": "thinkrank.rerankers.listwise",
    "ReasonRank": "thinkrank.rerankers.listwise",
    "RankR1": "thinkrank.rerankers.setwise",
    "parse_ranking": "thinkrank.rerankers.parsing",
    "RerankRequest": "thinkrank.rerankers.base",
    "Reranker": "thinkrank.rerankers.base",
    "RerankerSpec": "thinkrank.rerankers.spec",
    "build_reranker": "thinkrank.rerankers.spec",
    "CachedReranker": "thinkrank.rerankers.cached",
    "Document": "thinkrank.types",
    "Judgment": "thinkrank.types",
    "Ranking": "thinkrank.types",
    "WindowTrace": "thinkrank.types",
    "ComparisonTrace": "thinkrank.types",
    "load_engine": "thinkrank.engines",
    "ThinkrankError": "thinkrank.errors",
    "InvalidInputError": "thinkrank.errors",
    "MissingExtraError": "thinkrank.errors",
    "ModelLoadError": "thinkrank.errors",
    "build_rank1_prompt": "thinkrank.prompts.rank1",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'thinkrank' has no attribute {name!r}")
