"""Test collections and run files: load them, convert them, hand them to retrieval and evaluation.

    >>> from thinkrank.datasets import load_collection, read_run
    >>> dl19 = load_collection("../shared/data/dl19")
    >>> bm25 = dl19.run("bm25").top_k(100)

Names are imported lazily: the Hub/ir_datasets adapters pull in their libraries only when used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Collection": "collection", "load_collection": "collection", "read_corpus": "collection",
    "read_queries": "collection",
    "Run": "runs", "read_run": "runs", "read_trec_run": "runs", "write_trec_run": "runs",
    "read_json_run": "runs", "write_json_run": "runs",
    "Qrels": "qrels", "read_qrels": "qrels", "read_trec_qrels": "qrels", "read_beir_qrels": "qrels",
    "write_trec_qrels": "qrels",
    "RankLLMRequests": "rank_llm", "Request": "rank_llm", "Candidate": "rank_llm", "read_rank_llm": "rank_llm",
    "write_rank_llm": "rank_llm", "requests_from_run": "rank_llm",
    "DatasetUnavailableError": "hub", "MissingTableError": "hub", "load_table": "hub",
    "load_bright": "bright", "BRIGHT_DOMAINS": "bright",
    "NevIR": "nevir", "NevIRPair": "nevir", "load_nevir": "nevir",
    "FollowIR": "followir", "load_followir": "followir", "changed_documents": "followir", "base_qid": "followir",
    "FOLLOWIR_REPOS": "followir",
    "load_ir_dataset": "irds",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"thinkrank.datasets.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'thinkrank.datasets' has no attribute {name!r}")
