"""First-stage retrieval: BM25 (``bm25s``) and dense (sentence-transformers), each producing a
:class:`thinkrank.datasets.Run`. Heavy libraries are imported when a retriever is built."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"BM25": "bm25", "bm25_run": "bm25", "DenseRetriever": "dense", "dense_run": "dense"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"thinkrank.retrieval.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'thinkrank.retrieval' has no attribute {name!r}")
