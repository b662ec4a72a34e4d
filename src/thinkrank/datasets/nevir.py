"""NevIR: pairs of (query, passage) that differ by a negation.

Each pair has ``q1, q2, doc1, doc2``: doc1 answers q1, doc2 answers q2. As a collection the
ids follow NevIR's MTEB version: queries ``{id}_q1``/``{id}_q2``, documents
``{id}_doc1``/``{id}_doc2``, and each query's candidates are the pair's two documents.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from thinkrank.datasets.collection import Collection
from thinkrank.datasets.hub import Source, load_table
from thinkrank.datasets.runs import Run
from thinkrank.errors import InvalidInputError
from thinkrank.io import iter_jsonl
from thinkrank.types import Document

NEVIR_REPO = "orionweller/NevIR"
_FIELDS = ("q1", "q2", "doc1", "doc2")


@dataclass(frozen=True)
class NevIRPair:
    id: str
    q1: str
    q2: str
    doc1: str
    doc2: str

    @property
    def qids(self) -> tuple[str, str]:
        return f"{self.id}_q1", f"{self.id}_q2"

    @property
    def docids(self) -> tuple[str, str]:
        return f"{self.id}_doc1", f"{self.id}_doc2"


@dataclass
class NevIR:
    """The pairs of one NevIR split."""

    pairs: list[NevIRPair]

    def collection(self) -> Collection:
        """Queries, documents and qrels (q1->doc1, q2->doc2), with run ``candidates``: both documents per query."""
        corpus, queries, qrels, candidates = {}, {}, {}, {}
        for p in self.pairs:
            (q1, q2), (d1, d2) = p.qids, p.docids
            corpus[d1], corpus[d2] = Document(d1, p.doc1), Document(d2, p.doc2)
            queries[q1], queries[q2] = p.q1, p.q2
            qrels[q1], qrels[q2] = {d1: 1, d2: 0}, {d2: 1, d1: 0}
            candidates[q1] = candidates[q2] = [(d1, 0.0), (d2, 0.0)]
        return Collection(corpus, queries, qrels, runs={"candidates": Run(candidates, "candidates")}, name="NevIR")


def load_nevir(source: Source = NEVIR_REPO, split: str = "test") -> NevIR:
    """Load NevIR pairs from a ``pairs.jsonl``-style file, a Hub id / snapshot folder, or tables.

    Raises:
        InvalidInputError: ``file:line`` (or row) of a record without ``q1, q2, doc1, doc2``,
            or a repeated id.
        DatasetUnavailableError: the Hub is unreachable and the dataset is not cached.
    """
    if isinstance(source, (str, Path)) and Path(source).is_file():
        rows = ((f"{source}:{n}", obj) for n, obj in iter_jsonl(source))
    else:
        rows = ((f"NevIR {split} row {i}", obj) for i, obj in enumerate(load_table(source, None, split, f"NevIR {split}")))
    pairs: list[NevIRPair] = []
    seen: set[str] = set()
    for i, (where, row) in enumerate(rows):
        missing = [k for k in _FIELDS if not isinstance(row.get(k), str) or not row[k].strip()]
        if missing:
            raise InvalidInputError(f"{where}: missing or empty {missing}; a NevIR pair needs id, q1, q2, doc1, doc2")
        pair_id = str(row.get("id", i))
        if pair_id in seen:
            raise InvalidInputError(f"{where}: pair id {pair_id!r} appears twice")
        seen.add(pair_id)
        pairs.append(NevIRPair(pair_id, row["q1"], row["q2"], row["doc1"], row["doc2"]))
    return NevIR(pairs)
