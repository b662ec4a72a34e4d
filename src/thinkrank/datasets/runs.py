"""Runs: ranked candidates per query, read from and written to TREC and JSON run files."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from thinkrank.errors import InvalidInputError
from thinkrank.io import iter_lines, open_text
from thinkrank.types import trec_line


@dataclass
class Run:
    """Ranked ``(docid, score)`` lists per query id, best first.

    Each list is sorted by descending score; ties keep the order they were given in (a TREC
    file's order), so a run read and written again keeps its ranking. ``name`` is the run tag.
    """

    rankings: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    name: str = "run"

    def __post_init__(self) -> None:
        self.rankings = {str(q): sorted(((str(d), float(s)) for d, s in docs), key=lambda x: -x[1])
                         for q, docs in self.rankings.items()}

    @classmethod
    def from_scores(cls, scores: Mapping[str, Mapping[str, float]], name: str = "run") -> Run:
        """A run from ``{qid: {docid: score}}`` (the run JSON shape)."""
        return cls({q: list(d.items()) for q, d in scores.items()}, name)

    def __len__(self) -> int:
        return len(self.rankings)

    def __iter__(self) -> Iterator[str]:
        return iter(self.rankings)

    def __contains__(self, qid: object) -> bool:
        return qid in self.rankings

    def __getitem__(self, qid: str) -> list[tuple[str, float]]:
        try:
            return self.rankings[qid]
        except KeyError:
            raise KeyError(f"query {qid!r} is not in run {self.name!r}") from None

    @property
    def qids(self) -> list[str]:
        return list(self.rankings)

    def doc_ids(self, qid: str) -> list[str]:
        return [d for d, _ in self[qid]]

    def top_k(self, k: int) -> Run:
        """The best ``k`` documents of every query."""
        if k < 0:
            raise InvalidInputError(f"k must be >= 0, got {k}")
        return Run({q: docs[:k] for q, docs in self.rankings.items()}, self.name)

    def subset(self, qids: Iterable[str]) -> Run:
        """Only the given queries (those the run has)."""
        return Run({q: self.rankings[q] for q in qids if q in self.rankings}, self.name)

    def without(self, excluded: Mapping[str, Iterable[str]]) -> Run:
        """Drop ``excluded[qid]`` documents from each query (BRIGHT's ``excluded_ids``)."""
        out = {}
        for q, docs in self.rankings.items():
            drop = set(excluded.get(q, ()))
            out[q] = [(d, s) for d, s in docs if d not in drop]
        return Run(out, self.name)

    def to_dict(self) -> dict[str, dict[str, float]]:
        """``{qid: {docid: score}}``, best first (the run JSON shape, what ir-measures takes)."""
        return {q: dict(docs) for q, docs in self.rankings.items()}


def read_trec_run(path: str | Path, name: str | None = None) -> Run:
    """Read a TREC run file (``qid Q0 docid rank score tag`` per line).

    The run's name is ``name`` when given, else the file's tag.

    Raises:
        InvalidInputError: ``file:line`` of a line without six fields or with a bad score, or a
            document listed twice for one query.
    """
    rankings: dict[str, list[tuple[str, float]]] = {}
    seen: set[tuple[str, str]] = set()
    tag = None
    for number, line in iter_lines(path):
        parts = line.split()
        if len(parts) != 6:
            raise InvalidInputError(
                f"{path}:{number}: a TREC run line needs 6 fields 'qid Q0 docid rank score tag', got {len(parts)}: {line[:80]!r}"
            )
        qid, _, docid, _, score, tag = parts
        value = _score(score, f"{path}:{number}")
        if (qid, docid) in seen:
            raise InvalidInputError(f"{path}:{number}: document {docid!r} is listed twice for query {qid!r}")
        seen.add((qid, docid))
        rankings.setdefault(qid, []).append((docid, value))
    return Run(rankings, name or tag or Path(path).stem)


def _score(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidInputError(f"{where}: score {text!r} is not a number") from None
    if math.isnan(value):
        raise InvalidInputError(f"{where}: score is NaN")
    return value


def write_trec_run(run: Run, path: str | Path, tag: str | None = None) -> Path:
    """Write ``run`` as a TREC run file (ranks from 1, scores at full precision); returns the
    path. Parent folders are made.

    Raises:
        InvalidInputError: a bad tag, or an id with whitespace or control characters.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tag = tag or run.name
    if not tag or any(c.isspace() for c in tag):
        raise InvalidInputError(f"the run tag must be one word without spaces, got {tag!r}")
    # Every line is checked before the file is opened, so a bad id leaves no half-written file.
    lines = [trec_line(qid, docid, rank, score, tag) for qid, docs in run.rankings.items()
             for rank, (docid, score) in enumerate(docs, 1)]
    with open_text(path, "w") as out:
        out.writelines(line + "\n" for line in lines)
    return path


def read_json_run(path: str | Path, name: str | None = None) -> Run:
    """Read a run JSON ``{qid: {docid: score}}`` (Rank1/Rank-K run files).

    Raises:
        InvalidInputError: not JSON, or not an object of objects of numbers.
    """
    try:
        with open_text(path) as handle:
            data = json.load(handle)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    except (OSError, EOFError) as exc:  # a damaged .gz file
        raise InvalidInputError(f"{path}: cannot be read ({exc}); is the file complete?") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path}: a run JSON is an object {{qid: {{docid: score}}}}, got {type(data).__name__}")
    rankings = {}
    for qid, docs in data.items():
        if not isinstance(docs, dict):
            raise InvalidInputError(f"{path}: query {qid!r} maps to {type(docs).__name__}, expected {{docid: score}}")
        for docid, score in docs.items():
            if isinstance(score, bool) or not isinstance(score, (int, float)) or math.isnan(score):
                raise InvalidInputError(f"{path}: query {qid!r} document {docid!r} has score {score!r}, expected a number")
        rankings[qid] = list(docs.items())
    return Run(rankings, name or Path(path).stem)


def write_json_run(run: Run, path: str | Path) -> Path:
    """Write ``run`` as ``{qid: {docid: score}}`` JSON; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_text(path, "w") as out:
        json.dump(run.to_dict(), out, ensure_ascii=False)
    return path


def read_run(path: str | Path, name: str | None = None) -> Run:
    """Read a run in any supported format, chosen by extension.

    ``.json`` is run JSON, ``.jsonl`` is rank_llm request JSONL, anything else is a TREC run.
    """
    suffixes = Path(path).suffixes
    ext = suffixes[-2] if suffixes and suffixes[-1] == ".gz" and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    if ext == ".json":
        return read_json_run(path, name)
    if ext == ".jsonl":
        from thinkrank.datasets.rank_llm import read_rank_llm

        return read_rank_llm(path).run(name or Path(path).stem)
    return read_trec_run(path, name)
