"""Read a teacher's output: split reasoning from answer, and parse the answer to true/false.

Reasoning models return their chain in one of two ways, and both are handled:

* a separate ``reasoning_content`` (DeepSeek, vLLM's reasoning parser; ``reasoning`` on some
  servers) with the answer in ``content``;
* everything in ``content`` (or a completion's ``text``) as ``<think>chain</think> answer``;
  the opening tag may be missing when the prompt already ended in ``<think>``.

Both are split by :func:`thinkrank.rerankers.parsing.split_reasoning`, the listwise parser's
reader of think tags too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from thinkrank.distill.records import Trace
from thinkrank.errors import EngineError
from thinkrank.rerankers.parsing import split_reasoning

_WORD = re.compile(r"(?<![a-z])(true|false)(?![a-z])")
_MARKUP = re.compile(r"[*_`\"'\[\]{}()<>]|\\boxed|\\text")


def parse_answer(text: str) -> str | None:
    """``"true"``, ``"false"``, or None when the text does not give exactly one of them.

    Case, punctuation and markup are ignored (``"**True**."``, ``"Answer: false"``,
    ``"\\boxed{true}"``); a text naming both answers is ambiguous and gives None.
    """
    words = set(_WORD.findall(_MARKUP.sub(" ", text.lower())))
    return words.pop() if len(words) == 1 else None


def trace_from_response(body: Mapping[str, Any]) -> Trace:
    """A :class:`Trace` from a chat completion or completion response body (a JSON object).

    Raises:
        EngineError: a body with no choices, or a choice with neither message nor text.
    """
    choices = body.get("choices") or []
    if not choices:
        raise EngineError(f"the teacher's response has no choices: {str(dict(body))[:200]}")
    choice = choices[0]
    message = choice.get("message")
    if message is not None:
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        content = message.get("content") or ""
        chain, read = split_reasoning(content, reasoning=reasoning if isinstance(reasoning, str) else None)
        answer = content.strip() if read is None else read  # no think tags: all of it is the answer
    elif isinstance(choice.get("text"), str):
        # A completion continues the prompt's "<think>": without a close, the chain never ended.
        chain, answer = split_reasoning(choice["text"], opened=True)
    else:
        raise EngineError(f"the teacher's response choice has neither 'message' nor 'text': {str(choice)[:200]}")
    usage = body.get("usage") or {}
    return Trace(
        reasoning=chain,
        answer_text=answer,
        finish_reason=str(choice.get("finish_reason") or "stop"),
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        extra={"response_id": body.get("id")} if body.get("id") else {},
    )
