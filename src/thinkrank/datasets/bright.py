"""BRIGHT (xlangai/BRIGHT): reasoning-intensive retrieval, one split per domain.

Tables: ``examples`` (``id, query, reasoning, gold_ids, gold_ids_long, excluded_ids``),
``documents`` and ``long_documents`` (``id, content``), each split by domain. The
``<model>_reason`` configs (``gpt4_reason``, …) are ``examples`` with LLM-expanded queries.
``excluded_ids`` are documents BRIGHT removes from a run before scoring; they land in
:attr:`Collection.excluded` (``["N/A"]`` means none).
"""

from __future__ import annotations

from thinkrank.datasets.collection import Collection
from thinkrank.datasets.hub import Source, load_table
from thinkrank.errors import InvalidInputError
from thinkrank.types import Document

BRIGHT_REPO = "xlangai/BRIGHT"
BRIGHT_DOMAINS = (
    "biology", "earth_science", "economics", "psychology", "robotics", "stackoverflow", "sustainable_living",
    "leetcode", "pony", "aops", "theoremqa_theorems", "theoremqa_questions",
)


def load_bright(domain: str, source: Source = BRIGHT_REPO, *, long_documents: bool = False,
                queries_config: str = "examples") -> Collection:
    """Load one BRIGHT domain as a :class:`Collection` (binary qrels from ``gold_ids``).

    Args:
        domain: one of :data:`BRIGHT_DOMAINS`.
        source: Hub id, a local snapshot folder, or ``{config: table}`` (see :mod:`thinkrank.datasets.hub`).
        long_documents: use ``long_documents`` and ``gold_ids_long``.
        queries_config: ``examples`` or a reasoning config such as ``gpt4_reason``.

    Raises:
        InvalidInputError: an unknown domain, or a row without the BRIGHT fields.
        DatasetUnavailableError: the Hub is unreachable and the dataset is not cached.
    """
    if domain not in BRIGHT_DOMAINS:
        raise InvalidInputError(f"unknown BRIGHT domain {domain!r}; choose one of {', '.join(BRIGHT_DOMAINS)}")
    name = f"BRIGHT {domain}"
    docs_config, gold_key = ("long_documents", "gold_ids_long") if long_documents else ("documents", "gold_ids")
    corpus = {}
    for i, row in enumerate(load_table(source, docs_config, domain, name)):
        _need(row, ("id", "content"), f"{name} {docs_config} row {i}")
        corpus[str(row["id"])] = Document(id=str(row["id"]), text=row["content"])
    queries, qrels, excluded = {}, {}, {}
    for i, row in enumerate(load_table(source, queries_config, domain, name)):
        _need(row, ("id", "query", gold_key), f"{name} {queries_config} row {i}")
        qid = str(row["id"])
        queries[qid] = row["query"]
        qrels[qid] = {str(d): 1 for d in row[gold_key]}
        dropped = {str(d) for d in row.get("excluded_ids") or ()} - {"N/A"}
        if dropped:
            excluded[qid] = dropped
    return Collection(corpus, queries, qrels, excluded=excluded, name=name)


def _need(row: dict, keys: tuple[str, ...], where: str) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise InvalidInputError(f"{where}: missing {missing} (fields: {sorted(row)}); is this BRIGHT data?")
