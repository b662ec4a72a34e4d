"""rank_llm request JSONL: one query with its scored candidates per line.

A line is ``{"query": {"text", "qid"}, "candidates": [{"docid", "score", "doc": {...}}]}``,
the shape of ``rank_llm.data.Request``. The document text is read from ``doc``'s ``text``,
``segment``, ``contents``, ``content`` or ``body`` field, with an optional ``title``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from thinkrank.datasets.runs import Run
from thinkrank.errors import InvalidInputError
from thinkrank.io import iter_jsonl, open_text
from thinkrank.types import Document

_TEXT_KEYS = ("text", "segment", "contents", "content", "body")


@dataclass
class Candidate:
    doc: Document
    score: float


@dataclass
class Request:
    """One query and its first-stage candidates, in the order given."""

    qid: str
    query: str
    candidates: list[Candidate] = field(default_factory=list)


@dataclass
class RankLLMRequests:
    """The requests of one file; :meth:`run` and :meth:`corpus` view them as a run and documents."""

    requests: list[Request]

    def run(self, name: str = "rank_llm") -> Run:
        return Run({r.qid: [(c.doc.id, c.score) for c in r.candidates] for r in self.requests}, name)

    def queries(self) -> dict[str, str]:
        return {r.qid: r.query for r in self.requests}

    def corpus(self) -> dict[str, Document]:
        return {c.doc.id: c.doc for r in self.requests for c in r.candidates}


def read_rank_llm(path: str | Path) -> RankLLMRequests:
    """Read rank_llm request JSONL.

    Raises:
        InvalidInputError: ``file:line`` (and candidate index) of a line that lacks a query, a
            qid, a candidate docid/score or a document text.
    """
    requests = []
    for number, obj in iter_jsonl(path):
        where = f"{path}:{number}"
        query = obj.get("query")
        if not isinstance(query, dict) or not isinstance(query.get("text"), str) or query.get("qid") is None:
            raise InvalidInputError(f"{where}: expected \"query\": {{\"text\": ..., \"qid\": ...}}")
        candidates = obj.get("candidates", [])
        if not isinstance(candidates, list):
            raise InvalidInputError(f"{where}: \"candidates\" must be a list")
        requests.append(Request(str(query["qid"]), query["text"], [_candidate(c, f"{where} candidate {i}") for i, c in enumerate(candidates)]))
    return RankLLMRequests(requests)


def _candidate(obj: object, where: str) -> Candidate:
    if not isinstance(obj, dict) or obj.get("docid") is None:
        raise InvalidInputError(f"{where}: expected {{\"docid\", \"score\", \"doc\"}}")
    score = obj.get("score", 0.0)
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        raise InvalidInputError(f"{where}: score {score!r} is not a number")
    doc = obj.get("doc") or {}
    text = next((doc[k] for k in _TEXT_KEYS if isinstance(doc.get(k), str)), None) if isinstance(doc, dict) else None
    if text is None:
        raise InvalidInputError(f"{where}: \"doc\" needs a text field (one of {', '.join(_TEXT_KEYS)})")
    return Candidate(Document(id=str(obj["docid"]), text=text, title=doc.get("title") or None), float(score))


def write_rank_llm(requests: list[Request], path: str | Path) -> Path:
    """Write requests as rank_llm JSONL (``doc`` as ``{"title"?, "text"}``); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_text(path, "w") as out:
        for r in requests:
            cands = [{"docid": c.doc.id, "score": c.score,
                      "doc": ({"title": c.doc.title} if c.doc.title else {}) | {"text": c.doc.text}} for c in r.candidates]
            out.write(json.dumps({"query": {"text": r.query, "qid": r.qid}, "candidates": cands}, ensure_ascii=False) + "\n")
    return path


def requests_from_run(run: Run, queries: dict[str, str], corpus: dict[str, Document], k: int | None = None) -> list[Request]:
    """rank_llm requests for every query of ``run`` (its top ``k``), with texts from ``corpus``.

    Raises:
        InvalidInputError: a query or document the run names that ``queries``/``corpus`` lack.
    """
    out = []
    for qid in run:
        if qid not in queries:
            raise InvalidInputError(f"run {run.name!r} has query {qid!r}, which is not among the queries")
        docs = run[qid] if k is None else run[qid][:k]
        missing = [d for d, _ in docs if d not in corpus]
        if missing:
            raise InvalidInputError(f"run {run.name!r} ranks {missing[:3]} for query {qid!r}, not in the corpus")
        out.append(Request(qid, queries[qid], [Candidate(corpus[d], s) for d, s in docs]))
    return out
