"""The records that flow through distillation: labelled pairs in, teacher traces out, as JSONL.

A pair is one (query, passage) with its label and where it came from. A trace is a pair plus
what the teacher wrote for it. Both are plain JSON objects, one per line, so each stage can be
inspected, edited or produced by other tools.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from thinkrank.errors import InvalidInputError
from thinkrank.io import AtomicWriter, iter_jsonl, write_text_atomic
from thinkrank.types import id_text

SOURCES_HELP = "positive, negative, or hard:A-B (a rank band of the run)"


@dataclass(frozen=True)
class LabeledPair:
    """A (query, passage) pair with its label.

    ``source`` says how it was drawn: ``positive`` (from qrels), ``negative`` (sampled),
    ``hard:1-5`` (ranks 1–5 of a run, not a qrels positive), …; ``rank`` is its rank in that run.
    """

    qid: str
    docid: str
    query: str
    passage: str
    label: bool
    source: str = "unknown"
    rank: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Trace:
    """What a teacher wrote for one prompt.

    ``reasoning`` is the chain (the text inside ``<think>…</think>`` or the API's
    ``reasoning_content``); ``answer_text`` what came after it (``"true"``, ``"**False**."`` …,
    parsed later). ``finish_reason`` is the API's (``stop``, ``length``) or ``forced`` when a
    local engine's chain ran out of budget and the answer was read after closing it.
    """

    reasoning: str
    answer_text: str
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pair_from_dict(obj: dict[str, Any], where: str) -> LabeledPair:
    """A :class:`LabeledPair` from a JSON object; ``where`` (``file:line``) names it in errors.

    ``label`` may be a boolean, 0/1, or ``"true"``/``"false"``.

    Raises:
        InvalidInputError: a missing or empty field, or a label that is not a truth value.
    """
    missing = [k for k in ("qid", "docid", "query", "passage", "label") if obj.get(k) is None]
    if missing:
        raise InvalidInputError(f"{where}: missing {', '.join(missing)} (a pair needs qid, docid, query, passage, label)")
    for key in ("query", "passage"):
        if not isinstance(obj[key], str) or not obj[key].strip():
            raise InvalidInputError(f"{where}: {key!r} must be non-empty text")
    rank = obj.get("rank")
    return LabeledPair(
        qid=id_text(obj["qid"], f"{where}: 'qid'"), docid=id_text(obj["docid"], f"{where}: 'docid'"), query=obj["query"], passage=obj["passage"],
        label=parse_label(obj["label"], where), source=str(obj.get("source") or "unknown"),
        rank=int(rank) if rank is not None else None,
    )


def parse_label(value: Any, where: str) -> bool:
    """``True``/``False`` from a boolean, 0/1 or the strings true/false/1/0.

    Raises:
        InvalidInputError: anything else.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise InvalidInputError(f"{where}: label must be true/false (or 1/0), got {value!r}")


def read_pairs(path: str | Path) -> list[LabeledPair]:
    """Read a pairs JSONL (``{qid, docid, query, passage, label, source?, rank?}`` per line).

    Raises:
        InvalidInputError: a missing file, a bad line (named ``file:line``), or no pairs at all.
    """
    pairs = [pair_from_dict(obj, f"{path}:{n}") for n, obj in iter_jsonl(path)]
    if not pairs:
        raise InvalidInputError(f"{path} holds no pairs; make some with `thinkrank distill sample`")
    return pairs


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Every JSON object of a JSONL file, with its line number under ``"_line"``."""
    return [{**obj, "_line": n} for n, obj in iter_jsonl(path)]


def write_jsonl(records: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write ``records`` as JSONL, atomically (see :class:`~thinkrank.io.AtomicWriter`); returns
    the count. Atomic so that an interrupted run never leaves half a file where a complete one was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with AtomicWriter(path) as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON (atomically); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def iter_pair_dicts(pairs: Iterable[LabeledPair]) -> Iterator[dict[str, Any]]:
    for pair in pairs:
        yield pair.to_dict()
