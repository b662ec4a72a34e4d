"""Relevance judgments: TREC qrels files and BEIR ``qrels/<split>.tsv`` files."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from thinkrank.errors import InvalidInputError
from thinkrank.io import iter_lines, open_text

Qrels = dict[str, dict[str, int]]
"""``{qid: {docid: grade}}``; a grade <= 0 means judged not relevant."""


def read_trec_qrels(path: str | Path) -> Qrels:
    """Read TREC qrels (``qid iteration docid grade`` per line).

    Raises:
        InvalidInputError: ``file:line`` of a line without four fields or with a non-integer grade.
    """
    qrels: Qrels = {}
    for number, line in iter_lines(path):
        parts = line.split()
        if len(parts) != 4:
            raise InvalidInputError(
                f"{path}:{number}: a TREC qrels line needs 4 fields 'qid 0 docid grade', got {len(parts)}: {line[:80]!r}"
            )
        qid, _, docid, grade = parts
        qrels.setdefault(qid, {})[docid] = _grade(grade, f"{path}:{number}")
    return qrels


def read_beir_qrels(path: str | Path) -> Qrels:
    """Read BEIR qrels TSV (header ``query-id corpus-id score``, then one judgment per line).

    Raises:
        InvalidInputError: ``file:line`` of a line without three tab-separated fields or a bad grade.
    """
    qrels: Qrels = {}
    for number, line in iter_lines(path):
        parts = line.split("\t")
        if len(parts) != 3:
            raise InvalidInputError(
                f"{path}:{number}: a BEIR qrels line needs 3 tab-separated fields 'query-id corpus-id score', got {len(parts)}"
            )
        if number == 1 and not parts[2].strip().lstrip("-").isdigit():
            continue  # the header
        qid, docid, grade = (p.strip() for p in parts)
        qrels.setdefault(qid, {})[docid] = _grade(grade, f"{path}:{number}")
    return qrels


def read_qrels(path: str | Path) -> Qrels:
    """Read qrels: ``.tsv`` files as BEIR, anything else as TREC."""
    return read_beir_qrels(path) if ".tsv" in Path(path).suffixes else read_trec_qrels(path)


def write_trec_qrels(qrels: Mapping[str, Mapping[str, int]], path: str | Path) -> Path:
    """Write ``qrels`` as a TREC qrels file; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_text(path, "w") as out:
        for qid, docs in qrels.items():
            for docid, grade in docs.items():
                out.write(f"{qid} 0 {docid} {int(grade)}\n")
    return path


def _grade(text: str, where: str) -> int:
    try:
        return int(float(text)) if "." in text else int(text)
    except (ValueError, OverflowError):  # OverflowError: "1e400"-sized grades become inf
        raise InvalidInputError(f"{where}: relevance grade {text!r} is not an integer") from None
