"""Cutting passages to a token limit without touching the prompt around them."""

from __future__ import annotations

from collections.abc import Sequence

from thinkrank.engines.base import Tokenizer


def truncate_passage(tokenizer: Tokenizer, passage: str, max_tokens: int | None) -> tuple[str, bool]:
    """``passage`` cut to at most ``max_tokens`` tokens, and whether it was cut.

    Only the passage is ever cut; the caller re-inserts it into the template, so the prompt's
    instructions and its tail (``<think>``) always survive.
    """
    if max_tokens is None:
        return passage, False
    # Tokenizing megabytes to keep a few thousand tokens is wasted work: no token is shorter
    # than one character, so a character cut at 16x the limit never drops a kept token early.
    head = passage[: max_tokens * 16]
    ids = tokenizer.encode(head)
    if len(ids) <= max_tokens and len(head) == len(passage):
        return passage, False
    return tokenizer.decode(ids[:max_tokens]).rstrip("\ufffd"), True


def widest_prompt(tokenizer: Tokenizer, frame: str, passages: Sequence[str], size: int) -> tuple[int, int]:
    """The prompt tokens of the largest call that shows ``size`` of ``passages`` (the ``frame``,
    the call's prompt with empty passages, around its ``size`` longest passages), and how many
    passages that is: callers add one token a passage for tokens merging at its edges."""
    longest = sorted((len(tokenizer.encode(text)) for text in passages), reverse=True)[:size]
    return len(tokenizer.encode(frame)) + sum(longest), len(longest)
