"""Filter teacher traces into training data, counting what each stage keeps (paper §2.2).

Stages, in order: the answer parses (``true``/``false`` after the reasoning, from a chain that
closed or was forced closed); the trace has reasoning; the answer was not forced (unless
``keep_forced``); the teacher agrees with the label; optionally a trained model agrees with the
teacher (self-filter); optionally the classes are balanced.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from thinkrank.distill.answers import parse_answer
from thinkrank.distill.records import parse_label
from thinkrank.errors import InvalidInputError

Record = dict[str, Any]
SelfJudge = Callable[[Sequence[Record]], list[str]]
"""Answers ("true"/"false") of a trained model for trace records, in order."""

_REQUIRED = ("qid", "docid", "query", "passage", "label", "prompt", "reasoning", "answer_text")
_TEXT = ("query", "passage", "prompt")
_OPTIONAL_TEXT = ("reasoning", "answer_text")


@dataclass
class FilterConfig:
    """Which stages run.

    Attributes:
        require_reasoning: drop traces with an empty chain (they teach no reasoning).
        keep_forced: keep answers read after a chain was cut for budget (local teachers).
        agree_with_label: keep only traces whose answer equals the label (the paper's first mix).
        balance: negatives per positive after filtering (e.g. 1.0); None keeps the natural mix.
        seed: for the balancing draw.
    """

    require_reasoning: bool = True
    keep_forced: bool = False
    agree_with_label: bool = True
    balance: float | None = None
    seed: int = 0


@dataclass
class Stage:
    """The records left after one stage and what they are made of."""

    name: str
    kept: int
    dropped: int
    positives: int
    negatives: int
    by_source: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass
class FilterResult:
    records: list[Record]
    stages: list[Stage]

    def to_dict(self) -> dict[str, Any]:
        return {"kept": len(self.records), "stages": [s.to_dict() for s in self.stages]}


def validate_records(records: Sequence[Record]) -> None:
    """Raises :class:`InvalidInputError` naming the first record that is not a trace."""
    for record in records:
        missing = [k for k in _REQUIRED if k not in record]
        where = f"line {record['_line']}" if "_line" in record else "a record"
        if missing:
            raise InvalidInputError(
                f"{where} is not a trace record: missing {', '.join(missing)} (make traces with `thinkrank distill generate`)"
            )
        for key in _TEXT:
            if not isinstance(record[key], str) or not record[key].strip():
                raise InvalidInputError(f"{where}: {key!r} must be non-empty text, got {record[key]!r}")
        for key in _OPTIONAL_TEXT:  # null: the teacher wrote nothing there (an empty chain is dropped later)
            if record[key] is not None and not isinstance(record[key], str):
                raise InvalidInputError(f"{where}: {key!r} must be text or null, got {type(record[key]).__name__}")


def filter_traces(records: Sequence[Record], config: FilterConfig, self_judge: SelfJudge | None = None) -> FilterResult:
    """Run the stages over trace records; each kept record gains ``answer`` ("true"/"false").

    Raises:
        InvalidInputError: a record that is not a trace, or a bad label or balance.
    """
    validate_records(records)
    if config.balance is not None and config.balance <= 0:
        raise InvalidInputError(f"balance is negatives per positive and must be > 0, got {config.balance}")
    current = []
    for record in records:
        current.append({**record, "label": parse_label(record["label"], f"line {record.get('_line', '?')}"),
                        "reasoning": record["reasoning"] or "", "answer_text": record["answer_text"] or ""})
    stages = [_stage("input", current, 0)]

    def step(name: str, keep: Callable[[Record], bool]) -> None:
        nonlocal current
        before = len(current)
        current = [r for r in current if keep(r)]
        stages.append(_stage(name, current, before - len(current)))

    for record in current:
        # A forced verdict parses like any other; whether it is kept is its own stage below, so the
        # table shows how many were dropped for being forced (and --keep-forced keeps them).
        finished = _finish(record) in {"stop", "forced"}
        record["answer"] = parse_answer(str(record["answer_text"])) if finished else None
    step("answer parsed", lambda r: r["answer"] is not None)
    if config.require_reasoning:
        step("has reasoning", lambda r: bool(str(r["reasoning"]).strip()))
    if not config.keep_forced:
        step("not forced", lambda r: _finish(r) != "forced")
    if config.agree_with_label:
        step("agrees with label", lambda r: r["answer"] == ("true" if r["label"] else "false"))
    if self_judge is not None and current:
        verdicts = self_judge(current)
        for record, verdict in zip(current, verdicts):
            record["self_answer"] = verdict
        step("self-filter", lambda r: r.get("self_answer") == r["answer"])
    if config.balance is not None:
        before = len(current)
        current = balance_classes(current, config.balance, config.seed)
        stages.append(_stage("balanced", current, before - len(current)))
    return FilterResult(current, stages)


def _finish(record: Record) -> str:
    return str(record.get("finish_reason") or "stop")


# The option that relaxes each stage, for the message when nothing survives.
RELAX = {"answer parsed": "a larger --max-tokens for the teacher, or --force-answer (local teachers)",
         "has reasoning": "--no-require-reasoning", "not forced": "--keep-forced", "agrees with label": "--no-agree",
         "self-filter": "drop --self-filter", "balanced": "drop --balance"}


def empty_result_message(stages: Sequence[Stage]) -> str:
    """Why nothing survived: every stage's count, and the option that would relax each stage
    that dropped traces."""
    counts = " -> ".join(f"{s.name} {s.kept}" for s in stages)
    hints = [f"{s.name}: {RELAX[s.name]}" for s in stages[1:] if s.dropped and s.name in RELAX]
    return f"no trace survived the filters ({counts})" + (f"; to keep more: {'; '.join(hints)}" if hints else "")


def balance_classes(records: Sequence[Record], ratio: float, seed: int = 0) -> list[Record]:
    """Down-sample the larger class so negatives ≈ ``ratio`` × positives (classes by ``answer``);
    the kept records keep their input order."""
    pos = [i for i, r in enumerate(records) if r["answer"] == "true"]
    neg = [i for i, r in enumerate(records) if r["answer"] == "false"]
    want_neg = min(len(neg), round(len(pos) * ratio))
    want_pos = min(len(pos), round(len(neg) / ratio)) if want_neg == len(neg) else len(pos)
    rng = random.Random(seed)
    keep = set(rng.sample(pos, want_pos)) | set(rng.sample(neg, want_neg))
    return [r for i, r in enumerate(records) if i in keep]


def _stage(name: str, records: Sequence[Record], dropped: int) -> Stage:
    labels = Counter(bool(r["label"]) for r in records)
    sources = Counter(str(r.get("source", "unknown")) for r in records)
    return Stage(name, len(records), dropped, labels[True], labels[False], dict(sorted(sources.items())))
