"""FollowIR and mFollowIR: queries asked twice, with the original and a changed instruction.

The MTEB versions (``jhu-clsp/core17-instructions-mteb`` …) have tables ``corpus`` (``_id,
title, text``), ``queries`` (``_id, text``; ids ``{qid}-og`` and ``{qid}-changed``),
``instruction`` (``query-id, instruction``), ``default`` (qrels ``query-id, corpus-id, score``
for both versions), ``qrel_diff`` (``query-id, corpus-ids``: documents relevant under the
original instruction and not under the changed one) and ``top_ranked`` (candidates).
mFollowIR suffixes each config with a language: ``corpus-fas``, ``qrel_diff-rus``, …
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from thinkrank.datasets.collection import Collection
from thinkrank.datasets.hub import MissingTableError, Source, load_table
from thinkrank.datasets.qrels import Qrels
from thinkrank.datasets.runs import Run
from thinkrank.errors import InvalidInputError
from thinkrank.types import Document

FOLLOWIR_REPOS = {
    "core17": "jhu-clsp/core17-instructions-mteb",
    "robust04": "jhu-clsp/robust04-instructions-mteb",
    "news21": "jhu-clsp/news21-instructions-mteb",
    "mfollowir": "jhu-clsp/mFollowIR-parquet-mteb",
    "mfollowir-cross-lingual": "jhu-clsp/mFollowIR-cross-lingual-parquet-mteb",
}
OG, CHANGED = "-og", "-changed"


def base_qid(qid: str) -> str:
    """``"310-og"`` and ``"310-changed"`` -> ``"310"``."""
    for suffix in (OG, CHANGED):
        if qid.endswith(suffix):
            return qid[: -len(suffix)]
    return qid


@dataclass
class FollowIR:
    """One FollowIR task: both query versions in one collection, and the changed documents."""

    collection: Collection
    changed_docs: dict[str, list[str]] = field(default_factory=dict)

    def original(self) -> Collection:
        """Only the ``-og`` queries (original instructions)."""
        return self.collection.subset(q for q in self.collection.queries if q.endswith(OG))

    def changed(self) -> Collection:
        """Only the ``-changed`` queries."""
        return self.collection.subset(q for q in self.collection.queries if q.endswith(CHANGED))


def changed_documents(original: Mapping[str, Mapping[str, int]], changed: Mapping[str, Mapping[str, int]]) -> dict[str, list[str]]:
    """Per query, the documents relevant (grade > 0) in ``original`` and not in ``changed``.

    Query ids may carry the ``-og``/``-changed`` suffixes; the result is keyed by the bare id.
    """
    changed_by_base = {base_qid(q): docs for q, docs in changed.items()}
    out: dict[str, list[str]] = {}
    for qid, docs in original.items():
        after = changed_by_base.get(base_qid(qid), {})
        flipped = [d for d, g in docs.items() if g > 0 and after.get(d, 0) <= 0]
        if flipped:
            out[base_qid(qid)] = flipped
    return out


def load_followir(task: str = "core17", source: Source | None = None, *, language: str | None = None) -> FollowIR:
    """Load a FollowIR task (``core17``, ``robust04``, ``news21``, ``mfollowir`` with ``language``).

    Args:
        task: a key of :data:`FOLLOWIR_REPOS` (names the Hub repository when ``source`` is None).
        source: Hub id, local snapshot folder or ``{config: table}`` instead of the default repo.
        language: mFollowIR's ``fas``, ``rus`` or ``zho`` (config suffix).

    Raises:
        InvalidInputError: an unknown task, or rows without the expected fields.
        DatasetUnavailableError: the Hub is unreachable and the dataset is not cached.
    """
    if source is None:
        if task not in FOLLOWIR_REPOS:
            raise InvalidInputError(f"unknown FollowIR task {task!r}; choose one of {', '.join(FOLLOWIR_REPOS)}")
        source = FOLLOWIR_REPOS[task]
    if task.startswith("mfollowir") and language is None:
        raise InvalidInputError("mFollowIR needs language='fas', 'rus' or 'zho'")
    name = f"FollowIR {task}" + (f" {language}" if language else "")

    def table(config: str, split: str) -> Iterable[dict]:
        return load_table(source, f"{config}-{language}" if language else config, split, name)

    corpus = {}
    for row in _rows(table("corpus", "corpus"), ("_id", "text"), name):
        corpus[str(row["_id"])] = Document(str(row["_id"]), row["text"], row.get("title") or None)
    queries = {str(r["_id"]): r["text"] for r in _rows(table("queries", "queries"), ("_id", "text"), name)}
    instructions = {str(r["query-id"]): r["instruction"]
                    for r in _rows(table("instruction", "instruction"), ("query-id", "instruction"), name)}
    qrels: Qrels = {}
    for r in _rows(table("default", "test"), ("query-id", "corpus-id", "score"), name):
        qrels.setdefault(str(r["query-id"]), {})[str(r["corpus-id"])] = int(r["score"])
    diff = _optional(lambda: {str(r["query-id"]): [str(d) for d in r["corpus-ids"]]
                              for r in _rows(table("qrel_diff", "qrel_diff"), ("query-id", "corpus-ids"), name)})
    if diff is None:
        diff = changed_documents({q: d for q, d in qrels.items() if q.endswith(OG)},
                                 {q: d for q, d in qrels.items() if q.endswith(CHANGED)})
    top = _optional(lambda: _top_ranked(table("top_ranked", "top_ranked")))
    runs = {"top_ranked": top} if top else {}
    return FollowIR(Collection(corpus, queries, qrels, runs, instructions, name=name), diff)


def _rows(rows: Iterable[dict], keys: tuple[str, ...], name: str) -> Iterable[dict]:
    for i, row in enumerate(rows):
        missing = [k for k in keys if k not in row]
        if missing:
            raise InvalidInputError(f"{name} row {i}: missing {missing} (fields: {sorted(row)})")
        yield row


def _optional(load):  # qrel_diff and top_ranked are absent from some snapshots; the rest is not
    try:
        return load()
    except MissingTableError:
        return None


def _top_ranked(rows: Iterable[dict]) -> Run:
    ranked: dict[str, list[tuple[str, float]]] = {}
    for row in rows:
        if "corpus-ids" in row:
            ranked[str(row["query-id"])] = [(str(d), 0.0) for d in row["corpus-ids"]]
        else:  # the older layout: one (qid, pid) row per candidate
            ranked.setdefault(str(row["qid"]), []).append((str(row["pid"]), 0.0))
    return Run(ranked, "top_ranked")
