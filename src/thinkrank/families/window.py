"""What the listwise reranker asks of a query family: one small adapter per family.

:class:`~thinkrank.rerankers.listwise.RankK` slides windows over one query's candidates and asks
its :class:`WindowFamily` for everything that differs between released listwise families: the
window plan, how passages are cut, the chat for one window, how an output is read, and the
released sampling. Rank-K (:class:`RankKWindows`) and ReasonRank (:class:`ReasonRankWindows`)
implement it; a new query family adds one adapter and one line of :data:`WINDOW_FAMILIES`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from thinkrank.errors import InvalidInputError
from thinkrank.families import reasonrank
from thinkrank.families.base import Fallback, ModelInput
from thinkrank.families.sampling import Sampling


@dataclass(frozen=True)
class WindowRead:
    """One window's output as the listwise reranker uses it: ``groups`` (1-based ids, best group
    first, ties in one group, every id once), the chain, the text the order was read from,
    whether any id was read (``found``: otherwise the window kept its order) and the released
    fallback applied, if any (never silent: the reranker records and logs it)."""

    groups: list[list[int]]
    reasoning: str
    ordering: str
    found: bool
    fallback: Fallback | None = None


class WindowFamily(Protocol):
    """A query family as :class:`~thinkrank.rerankers.listwise.RankK` runs it."""

    name: str

    def sampling(self, model: str) -> Sampling:
        """The released budget and sampling for ``model`` (a hub id or path)."""
        ...

    def plan(self, n: int, window: int, stride: int, depth: int | None) -> list[tuple[int, int]]:
        """The ``[start, end)`` windows of one pass over ``n`` candidates, in the order they run."""
        ...

    def shown(self, tokenizer: Any, passage: str, max_tokens: int | None) -> tuple[str, bool]:
        """A passage as the window will hold it (cut, as released), and whether it was cut."""
        ...

    def build(self, query: str, passages: Sequence[str]) -> ModelInput:
        """The model input for one window of ``passages`` (as :meth:`shown` gave them)."""
        ...

    def read(self, text: str, n: int, opened: bool) -> WindowRead:
        """Read a window of ``n`` from the output ``text``; ``opened``: the prompt opened a chain."""
        ...

    def settings(self) -> dict[str, Any]:
        """What this family adds to the reranker's settings (empty for Rank-K, so its cache keys
        stay as they were)."""
        ...


class RankKWindows:
    """Rank-K (hltcoe/rank-k): one user message, thinkrank's plan, id-round-trip cut and reader."""

    name = "rank-k"

    def __init__(self, model: str, prompt: str | None = None) -> None:
        from thinkrank.prompts.rankk import check_template

        check_template(prompt)
        self.prompt = prompt

    def sampling(self, model: str) -> Sampling:
        from thinkrank.prompts.rankk import MAX_TOKENS

        return Sampling(max_tokens=MAX_TOKENS, temperature=0.0)

    def plan(self, n: int, window: int, stride: int, depth: int | None) -> list[tuple[int, int]]:
        from thinkrank.rerankers.listwise import plan_windows

        return plan_windows(n, window, stride, depth)

    def shown(self, tokenizer: Any, passage: str, max_tokens: int | None) -> tuple[str, bool]:
        from thinkrank.rerankers.truncation import truncate_passage

        return truncate_passage(tokenizer, passage, max_tokens)

    def build(self, query: str, passages: Sequence[str]) -> ModelInput:
        from thinkrank.prompts.rankk import build_rankk_prompt

        return ModelInput(messages=({"role": "user", "content": build_rankk_prompt(query, passages, self.prompt)},))

    def read(self, text: str, n: int, opened: bool) -> WindowRead:
        from thinkrank.rerankers.parsing import read_answer

        answer = read_answer(text, n, opened=opened)
        return WindowRead(answer.groups, answer.reasoning, answer.ordering, answer.found)

    def settings(self) -> dict[str, Any]:
        return {}


class ReasonRankWindows:
    """ReasonRank (8421BCD/ReasonRank): system + user turns in the model's prompt mode, the
    released window plan, the released passage cut (``tokenize`` then
    ``convert_tokens_to_string``, after ``ftfy``) and the released reader."""

    name = reasonrank.NAME

    def __init__(self, model: str, prompt: str | None = None) -> None:
        if prompt is not None:
            raise InvalidInputError("a custom prompt applies to the rank-k family only; reasonrank uses its released "
                                    "prompt (drop prompt, or use family='rank-k')")
        self.mode = reasonrank.mode_for_model(model)
        self._cut: tuple[int, Callable[[str], str]] | None = None

    def sampling(self, model: str) -> Sampling:
        return reasonrank.SAMPLING[reasonrank.mode_for_model(model)]

    def plan(self, n: int, window: int, stride: int, depth: int | None) -> list[tuple[int, int]]:
        return reasonrank.plan_windows(n, window, stride, n if depth is None else depth)

    def shown(self, tokenizer: Any, passage: str, max_tokens: int | None) -> tuple[str, bool]:
        # The released order: strip, ftfy, cut, then [n] -> (n); the cut applies to the fixed text.
        whole = reasonrank.passage_content(passage)
        if max_tokens is None:
            return whole, False
        cut = reasonrank.passage_content(passage, self._truncation(tokenizer, max_tokens))
        return cut, cut != whole

    def _truncation(self, tokenizer: Any, max_tokens: int) -> Callable[[str], str]:
        from thinkrank.families.truncation import token_truncation

        if self._cut is None or self._cut[0] != max_tokens:
            self._cut = (max_tokens, token_truncation(getattr(tokenizer, "hf", tokenizer), max_tokens))
        return self._cut[1]

    def build(self, query: str, passages: Sequence[str]) -> ModelInput:
        # Passages arrive as shown() made them (fixed, cut, ids rewritten), so they are not made
        # again: a second strip could eat whitespace the released cut left at a passage's end.
        return reasonrank.window_chat(query, passages, mode=self.mode)

    def read(self, text: str, n: int, opened: bool) -> WindowRead:
        reading = reasonrank.read_window(text, n)
        fallback = reading.answer.fallback
        found = len(reading.missing) < n and (fallback is None or fallback.reason != "unparsable")
        return WindowRead([[i + 1] for i in reading.answer.order], reading.reasoning, reading.answer_text, found,
                          fallback)

    def settings(self) -> dict[str, Any]:
        return {"prompt": None, "family": self.name, "prompt_mode": self.mode, "cut": "tokenize/convert_tokens_to_string"}


WINDOW_FAMILIES: dict[str, type[RankKWindows] | type[ReasonRankWindows]] = {
    "rank-k": RankKWindows,
    reasonrank.NAME: ReasonRankWindows,
}
"""The query families the listwise reranker serves, by CLI name."""


def window_family(name: str, model: str, prompt: str | None = None) -> WindowFamily:
    """The adapter for query family ``name`` running ``model``.

    Raises:
        InvalidInputError: a name that is not a query family (naming the ones there are), or a
            setting the family does not take.
    """
    if name not in WINDOW_FAMILIES:
        raise InvalidInputError(f"unknown listwise family {name!r}: use one of {', '.join(WINDOW_FAMILIES)}")
    return WINDOW_FAMILIES[name](model, prompt)
