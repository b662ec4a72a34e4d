"""Reading queries and documents for the CLI: JSONL records or plain text, one per line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thinkrank.errors import InvalidInputError
from thinkrank.io import json_object_line
from thinkrank.types import id_text


@dataclass
class QueryInput:
    text: str
    id: str | None = None
    instruction: str | None = None


@dataclass
class DocsInput:
    """Documents from a file; ``by_query`` when records carry a ``qid`` (candidates per query)."""

    shared: list[dict[str, Any]] = field(default_factory=list)
    by_query: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def for_query(self, query: QueryInput) -> list[dict[str, Any]]:
        if not self.by_query:
            return self.shared
        if query.id is None or query.id not in self.by_query:
            raise InvalidInputError(
                f"the docs file groups candidates by qid, but query {query.id or query.text!r} has none there; "
                "give each query an id that matches the docs' qid"
            )
        return self.by_query[query.id]


STDIN = Path("-")
"""``--docs -`` / ``--queries -``: read the records from standard input."""


def _lines(path: Path) -> list[tuple[int, str]]:
    if path == STDIN:
        return _numbered(_stdin_text())
    if not path.exists():
        raise InvalidInputError(f"file not found: {path}")
    if path.is_dir():
        raise InvalidInputError(f"{path} is a folder; give a file (JSONL or plain text, one record per line)")
    return _numbered(read_utf8(path))


def _name(path: Path) -> str:
    return "<stdin>" if path == STDIN else str(path)


def _numbered(text: str) -> list[tuple[int, str]]:
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _stdin_text() -> str:
    """Standard input as UTF-8 text; a byte that is not UTF-8 is reported with its line."""
    import sys

    data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode("utf-8", "surrogatepass")
    return decode_utf8(data, "<stdin>")


def read_utf8(path: Path) -> str:
    """The file's text; a byte that is not UTF-8 is reported with its line, not as a traceback."""
    return decode_utf8(path.read_bytes(), str(path))


def decode_utf8(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InvalidInputError(
            f"{name}:{line}: not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}); "
            "save the file as UTF-8"
        ) from None


def check_requests(requests: list[Any]) -> None:
    """Every query and document of ``requests`` (RerankRequests) usable, before a model loads:
    the same checks the rerankers make, but in milliseconds instead of after loading."""
    from thinkrank.types import as_documents, check_query

    for req in requests:
        where = f"query {req.query_id!r}" if req.query_id is not None else "the query"
        try:
            check_query(req.query)
            as_documents(req.documents)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{where}: {exc}") from None


def _is_jsonl(path: Path, lines: list[tuple[int, str]]) -> bool:
    return path.suffix in {".jsonl", ".json", ".ndjson"} or bool(lines and lines[0][1].lstrip().startswith("{"))


def _record(path: Path, n: int, line: str) -> dict[str, Any]:
    return json_object_line(line, f"{_name(path)}:{n}")


def read_docs(path: Path) -> DocsInput:
    """JSONL ``{"id", "text", "title"?, "qid"?}`` per line, or plain text (one document per line)."""
    lines = _lines(path)
    if not _is_jsonl(path, lines):
        return DocsInput(shared=[{"id": str(i), "text": line} for i, (_, line) in enumerate(lines)])
    out = DocsInput()
    for n, line in lines:
        rec = _record(path, n, line)
        if "text" not in rec:
            raise InvalidInputError(f"{_name(path)}:{n}: a document needs a 'text' field (got keys {sorted(rec)})")
        if not isinstance(rec["text"], str):
            raise InvalidInputError(f"{_name(path)}:{n}: 'text' must be a string, got {type(rec['text']).__name__}")
        raw_id = rec.get("id", rec.get("_id", rec.get("docid", len(out.shared))))
        doc = {"id": id_text(raw_id, f"{_name(path)}:{n}: document"), "text": rec["text"]}
        if rec.get("title"):
            doc["title"] = rec["title"]
        qid = rec.get("qid", rec.get("query_id"))
        if qid is None:
            out.shared.append(doc)
        else:
            out.by_query.setdefault(id_text(qid, f"{_name(path)}:{n}: 'qid'"), []).append(doc)
    if out.shared and out.by_query:
        raise InvalidInputError(f"{_name(path)}: some documents have a 'qid' and some do not; use one layout")
    return out


def read_queries(path: Path) -> list[QueryInput]:
    """JSONL ``{"id"?, "text" | "query", "instruction"?}`` per line, or plain text lines."""
    lines = _lines(path)
    if not _is_jsonl(path, lines):
        return [QueryInput(line, str(i)) for i, (_, line) in enumerate(lines)]
    queries = []
    for i, (n, line) in enumerate(lines):
        rec = _record(path, n, line)
        text = rec.get("text", rec.get("query"))
        if not isinstance(text, str):
            raise InvalidInputError(f"{_name(path)}:{n}: a query needs a 'text' (or 'query') string field")
        qid = rec.get("id", rec.get("_id", rec.get("qid", i)))
        queries.append(QueryInput(text, id_text(qid, f"{_name(path)}:{n}: query"), rec.get("instruction")))
    return queries
