"""What a reranker family declares: how a released model family is spoken to and read.

A family is data plus pure functions; it never calls a model. The rerankers (pair, query, set)
do the calls through an engine and ask the family for inputs and for the meaning of outputs, so
that adding a family touches one module of :mod:`thinkrank.families` and its tests, not the CLI,
the server, the cache key or the integrations.

Three kinds of family, by what one model call judges (:data:`Kind`):

* ``"pair"``: one (query, document) pair per call, scored from exact log-probabilities of a few
  answer tokens (Rank1, Qwen3-Reranker, TFRank, ERank);
* ``"query"``: a window of one query's documents per call, answered with an ordering
  (Rank-K, ReasonRank), slid over the candidates;
* ``"set"``: a set of documents per call, answered with the one most relevant (Rank-R1), used
  as the comparison of a sort.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["pair", "query", "set"]
"""What one model call judges: a pair, a window of one query's documents, or a set to pick from."""


@dataclass(frozen=True)
class Source:
    """Where a family's bytes come from: the released code the fixtures were made with."""

    repository: str  # "owner/name" on GitHub, or a model repository "hf:owner/name"
    commit: str  # the full commit hash read
    path: str  # file and function, e.g. "evaluation/task_prompts.py:format_instruction"


@dataclass(frozen=True)
class ModelInput:
    """Exactly what the model is given for one call.

    Either ``prompt`` (raw text, given to the engine as is; families whose released code
    hand-writes the chat markup give it this way, byte for byte) or ``messages`` (chat turns,
    rendered with the model's own chat template, then followed by ``assistant_prefix``, text the
    released code writes at the start of the assistant's turn, e.g. ``"<think>\\n"``).
    """

    prompt: str | None = None
    messages: tuple[dict[str, str], ...] | None = None
    assistant_prefix: str = ""

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("a ModelInput has exactly one of prompt and messages")

    def render(self, apply_chat_template: Callable[[Sequence[dict[str, str]]], str]) -> str:
        """The text the model continues: the raw prompt, or the messages through
        ``apply_chat_template`` (the model's chat template, ready for the assistant's turn)
        followed by the assistant prefix."""
        if self.prompt is not None:
            return self.prompt
        return apply_chat_template(list(self.messages or ())) + self.assistant_prefix

    def request_fields(self) -> dict[str, Any]:
        """This input as a ``GenerationRequest``'s ``prompt``/``messages``/``assistant_prefix``:
        chat turns travel as messages, so each engine renders them its own way (a chat API
        receives them as turns)."""
        return {"prompt": self.prompt or "", "messages": self.messages, "assistant_prefix": self.assistant_prefix}


@dataclass(frozen=True)
class Fallback:
    """The released code's default used where an output could not be read (a 0.5 score, the
    window's order kept, the parent kept): thinkrank applies it too, but says so per judgment or
    window, never silently. ``reason`` is a short machine-readable word ("no-answer",
    "unparsable", "duplicate-id", …), ``detail`` the text shown to users."""

    reason: str
    detail: str = ""


@dataclass(frozen=True)
class PairAnswer:
    """A pair family's reading of one judgment: the score and, where the output could not be
    read as released, the fallback applied. ``parts`` keeps named partial scores a family
    merges (e.g. TFRank's expected grade and P(yes)). ``answer`` is the likelier of the family's
    answer tokens ("yes"/"no"), None where a fallback stands in for the reading."""

    score: float
    fallback: Fallback | None = None
    parts: dict[str, float] = field(default_factory=dict)
    answer: str | None = None


@dataclass(frozen=True)
class WindowAnswer:
    """A query family's reading of one window: ``order`` lists window positions (0-based),
    best first, covering every position once (missing ones appended as released); ``ties[i]``
    says ``order[i]`` ties with ``order[i - 1]``."""

    order: tuple[int, ...]
    ties: tuple[bool, ...] = ()
    fallback: Fallback | None = None


@dataclass(frozen=True)
class SetAnswer:
    """A set family's reading of one comparison: the chosen position (0-based), or None with a
    fallback (the released code then keeps the current best, "the parent")."""

    chosen: int | None
    fallback: Fallback | None = None
