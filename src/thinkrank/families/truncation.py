"""The passage cut the released listwise and setwise code shares (ReasonRank, llm-rankers).

Both cut a text to its first ``n`` tokens with ``tokenizer.tokenize`` and join them back with
``tokenizer.convert_tokens_to_string`` (a Hugging Face tokenizer), where thinkrank's own cut
encodes and decodes ids; the two can differ at the cut, so a family that must be byte-identical
uses this one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from thinkrank.errors import InvalidInputError


def token_truncation(tokenizer: Any, max_tokens: int) -> Callable[[str], str]:
    """A function cutting a text to its first ``max_tokens`` tokens, as the released code does.

    Raises:
        InvalidInputError: ``max_tokens`` is not an int >= 1, or ``tokenizer`` lacks
            ``tokenize``/``convert_tokens_to_string`` (a Hugging Face tokenizer has both).
    """
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise InvalidInputError(f"max_tokens must be an int >= 1, got {max_tokens!r}")
    if not (hasattr(tokenizer, "tokenize") and hasattr(tokenizer, "convert_tokens_to_string")):
        raise InvalidInputError(
            "the released passage cut needs a Hugging Face tokenizer (tokenize and convert_tokens_to_string), "
            f"got {type(tokenizer).__name__}"
        )

    def cut(text: str) -> str:
        return str(tokenizer.convert_tokens_to_string(tokenizer.tokenize(text)[:max_tokens]))

    return cut
