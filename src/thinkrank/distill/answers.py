"""Read a teacher's output: split reasoning from answer, and parse the answer to true/false.

Reasoning models return their chain in one of two ways, and both are handled:

* a separate ``reasoning_content`` (DeepSeek, vLLM's reasoning parser; ``reasoning`` on some
  servers) with the answer in ``content``;
* everything in ``content`` (or a completion's ``text``) as ``<think>chain</think> answer``;
  the opening tag may be missing when the prompt already ended in ``<think>``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from thinkrank.distill.records import Trace
from thinkrank.errors import EngineError
from thinkrank.prompts.rank1 import THINK_CLOSE, THINK_OPEN

_WORD = re.compile(r"(?<![a-z])(true|false)(?![a-z])")
_MARKUP = re.compile(r"[*_`\"'\[\]{}()<>]|\\boxed|\\text")


def parse_answer(text: str) -> str | None:
    """``"true"``, ``"false"``, or None when the text does not give exactly one of them.

    Case, punctuation and markup are ignored (``"**True**."``, ``"Answer: false"``,
    ``"\\boxed{true}"``); a text naming both answers is ambiguous and gives None.
    """
    words = set(_WORD.findall(_MARKUP.sub(" ", text.lower())))
    return words.pop() if len(words) == 1 else None


def split_reasoning(content: str, reasoning: str | None = None) -> tuple[str, str]:
    """``(chain, answer_text)`` from a message's content and its separate reasoning, if any."""
    content = content or ""
    if reasoning and reasoning.strip():
        answer = content.rsplit(THINK_CLOSE, 1)[-1] if THINK_CLOSE in content else content
        return reasoning.strip(), answer.strip()
    if THINK_CLOSE in content:
        chain, answer = content.rsplit(THINK_CLOSE, 1)
        chain = chain.split(THINK_OPEN, 1)[-1]
        return chain.strip(), answer.strip()
    if content.lstrip().startswith(THINK_OPEN):
        # A chain that opened and never closed (cut for budget): it has no answer, and words
        # such as "true" inside it must not be read as one.
        return content.split(THINK_OPEN, 1)[1].strip(), ""
    return "", content.strip()


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
        chain, answer = split_reasoning(message.get("content") or "", reasoning if isinstance(reasoning, str) else None)
    elif isinstance(choice.get("text"), str):
        # A completion continues the prompt's "<think>": without a close, the chain never ended.
        text = choice["text"]
        chain, answer = split_reasoning(text) if THINK_CLOSE in text else (text.strip(), "")
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
