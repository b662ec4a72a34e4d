"""Reading a listwise model's ordering, such as ``[3] > [2] > [4] = [1] > [5]``, from what it wrote.

Rules (the same for every model; none of them ever raises on model output):

* **Where.** The answer is what follows the last ``</think>``. Text with an opening ``<think>``
  (or a prompt that opened one) and no ``</think>`` is a chain that never closed: no answer.
  Without think tags, the whole text is searched and everything before the ordering line is
  the reasoning.
* **Which line.** The last line of the answer that holds an ordering: two bracketed ids joined
  by ``>`` or ``=`` (``[3] > [1]``, ``[3]>[1]=[2]``, text around them allowed), a line that is
  only one bracketed id (``[2]``), or a line that is only bare numbers joined by ``>``/``=``
  (``3 > 1 > 2``). Lines that merely mention a passage ("[2] is about cats") are not orderings.
* **Groups.** ``>`` starts a new group, ``=`` ties an id to the one before; ids with neither
  between them are ordered (not tied). In a bracketed line only bracketed numbers are ids.
* **Bad ids.** Ids outside ``1..n`` are skipped; a repeated id ends the parse (what follows it
  is not trusted); ids the model left out follow in their previous (window) order, one group
  each. The result is always every id ``1..n`` exactly once.

Ids are **1-based passage numbers, as written in the prompt** (``[1]`` is the window's first
passage), not 0-based list indices.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from thinkrank.errors import InvalidInputError
from thinkrank.prompts.rank1 import THINK_CLOSE, THINK_OPEN


_BRACKETED = re.compile(r"\[\s*([0-9]+)\s*\]")
_BARE = re.compile(r"[0-9]+")
_PAIR = re.compile(r"\[\s*[0-9]+\s*\]\s*[>=]\s*\[\s*[0-9]+\s*\]")
_DECOR = r"[\s`*_]*"  # markdown around an answer: **[2]**, `3 > 1`
_END = rf"{_DECOR}(?:\.{_DECOR})?"  # one way to match a tail, so no backtracking blow-up
_LONE = re.compile(rf"{_DECOR}\[\s*[0-9]+\s*\]{_END}")
_BARE_LINE = re.compile(rf"{_DECOR}[0-9]+(?:\s*[>=]\s*[0-9]+)+{_END}")
_MAX_DIGITS = 9  # longer numbers are never valid ids (and int() refuses > 4300 digits)


@dataclass
class ModelAnswer:
    """What a listwise model said: its chain, its ordering line and the groups read from it.

    ``groups``: 1-based passage numbers, best group first, ties in one group; always a full
    permutation of ``1..n``. ``ordering``: the line the groups were read from ("" when the
    output held none, in which case ``groups`` is the previous order ``[[1], [2], …]``).
    """

    reasoning: str
    ordering: str
    groups: list[list[int]] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(self.ordering)


def split_reasoning(text: str, opened: bool = False, *, reasoning: str | None = None) -> tuple[str, str | None]:
    """``(reasoning, answer)`` from a reasoning model's output: the chain before the last
    ``</think>`` (a leading ``<think>`` removed) and what follows it. The one reader of think tags,
    for the listwise parser and the distillation teachers.

    ``answer`` is None when there are no think tags (the caller decides: the listwise parser
    searches the whole text, a teacher reads it all as the answer) and "" when a chain was opened
    but never closed (words inside it are not an answer).

    ``opened``: the prompt itself ended inside ``<think>`` (QwQ's chat template, a Rank1 prompt
    continued by a completions API). ``reasoning``: the chain when the server returned it apart
    from ``text`` (``reasoning_content``); ``text`` is then the answer, after a ``</think>`` it may
    still hold.
    """
    close = text.rfind(THINK_CLOSE)
    after = text[close + len(THINK_CLOSE):] if close >= 0 else text
    if reasoning and reasoning.strip():
        return reasoning.strip(), after.strip()
    if close >= 0:
        return _strip_open(text[:close]), after.strip()
    if opened or THINK_OPEN in text:
        return _strip_open(text), ""
    return "", None


def _strip_open(chain: str) -> str:
    chain = chain.strip()
    if chain.startswith(THINK_OPEN):
        chain = chain[len(THINK_OPEN):]
    return chain.strip()


def holds_ordering(line: str) -> bool:
    """Whether ``line`` is an ordering in the sense of the module rules."""
    return bool(_PAIR.search(line) or _LONE.fullmatch(line) or _BARE_LINE.fullmatch(line))


def read_answer(text: str, n: int, opened: bool = False) -> ModelAnswer:
    """Split ``text`` (a model's whole output) into reasoning and ordering, and read the groups.

    Raises:
        InvalidInputError: ``n`` < 0 (never for anything in ``text``).
    """
    if not isinstance(n, int) or n < 0:
        raise InvalidInputError(f"n (the number of passages in the window) must be an int >= 0, got {n!r}")
    text = text if isinstance(text, str) else ""
    reasoning, answer = split_reasoning(text, opened)
    lines = (text if answer is None else answer).splitlines()
    at = next((i for i in range(len(lines) - 1, -1, -1) if holds_ordering(lines[i])), None)
    if answer is None:
        reasoning = ("\n".join(lines[:at]) if at is not None else text).strip()
    if at is None:
        return ModelAnswer(reasoning, "", [[i] for i in range(1, n + 1)])
    line = lines[at].strip()
    return ModelAnswer(reasoning, line, parse_line(line, n))


def parse_line(line: str, n: int) -> list[list[int]]:
    """Groups of 1-based ids read from one ordering line, completed to a permutation of ``1..n``."""
    pattern = _BRACKETED if _BRACKETED.search(line) else _BARE
    groups: list[list[int]] = []
    seen: set[int] = set()
    gaps: list[str] = []
    last_end = 0
    for match in pattern.finditer(line):
        gaps.append(line[last_end:match.start()])
        last_end = match.end()
        digits = match.group(1) if match.groups() else match.group(0)
        digits = digits.lstrip("0") or "0"
        pid = int(digits) if len(digits) <= _MAX_DIGITS else 0
        if not 1 <= pid <= n:
            continue  # an id the window does not have: skip it, keep reading
        if pid in seen:
            break  # a repeated id: the rest of the line is not trusted
        tied = bool(groups) and all("=" in g and ">" not in g for g in gaps)
        if tied:
            groups[-1].append(pid)
        else:
            groups.append([pid])
        seen.add(pid)
        gaps = []
    groups.extend([i] for i in range(1, n + 1) if i not in seen)
    return groups


def parse_ranking(text: str, n: int) -> list[list[int]]:
    """The ordering a model wrote for ``n`` passages, as groups of 1-based passage numbers.

    ``parse_ranking("<think>…</think>\\n[3] > [2] > [4] = [1] > [5]", 5)`` is
    ``[[3], [2], [4, 1], [5]]``. Every id ``1..n`` appears exactly once, whatever the text:
    see the module docstring for where the ordering is looked for, how ties, unknown and
    repeated ids are read, and how missing ids are placed. An output without an ordering gives
    ``[[1], [2], …, [n]]`` (the previous order).

    Raises:
        InvalidInputError: ``n`` < 0 (never for anything in ``text``).
    """
    return read_answer(text, n).groups


def format_ordering(groups: Sequence[Sequence[int]]) -> str:
    """The model's answer format for ``groups``: ``[[3], [4, 1]]`` -> ``"[3] > [4] = [1]"``."""
    return " > ".join(" = ".join(f"[{i}]" for i in group) for group in groups if group)
