"""Cutting passages to a token limit without touching the prompt around them."""

from __future__ import annotations

import re

from thinkrank.engines.base import Tokenizer

_SENTENCE_END = re.compile(r"[.!?。！？][\"')\]]*(?=\s|$)")


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


def cut_to_last_sentence(text: str) -> str:
    """``text`` up to its last complete sentence; with no sentence end, up to its last whole word.

    Used when a chain runs out of budget: the paper closes such a chain after its last full
    sentence before asking for the answer.
    """
    ends = list(_SENTENCE_END.finditer(text))
    if ends:
        return text[: ends[-1].end()]
    space = max(text.rfind(" "), text.rfind("\n"))
    return text[:space] if space > 0 else ""
