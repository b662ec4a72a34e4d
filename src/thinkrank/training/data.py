"""SFT examples: read prompt/completion JSONL and turn each into tokens the way Rank1 reads them.

The loss covers the completion only. Tokens are split exactly where inference splits them, so
the model learns the token sequence it will actually be given and asked to continue:

* with a chain, Rank1 encodes the prompt alone and the model writes ``chain</think>``; the
  answer is read right after. So: ``encode(prompt) + encode(chain</think>) + encode(" true") + eos``.
* with reasoning off, Rank1 encodes ``prompt + "\\n</think>"`` as one text and reads the next
  token. So ``"\\n</think>"`` joins the (unscored) input and only ``" true" + eos`` is learned.
  (Encoding them apart would differ: BPEs merge ``">\\n"`` across the boundary.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thinkrank.errors import InvalidInputError
from thinkrank.io import iter_jsonl
from thinkrank.prompts.rank1 import FORCED_CLOSE, THINK_CLOSE

IGNORE = -100  # label of tokens without loss (PyTorch's cross-entropy ignore_index)


@dataclass(frozen=True)
class SFTExample:
    """A prompt (ending in ``<think>``), the completion to learn, and its answer."""

    prompt: str
    completion: str
    answer: str | None = None


def read_sft(path: str | Path) -> list[SFTExample]:
    """Read prompt/completion JSONL (``{"prompt", "completion", "answer"?}`` per line).

    Raises:
        InvalidInputError: a missing file, a line without text in prompt or completion, or no examples.
    """
    out = []
    for number, obj in iter_jsonl(path):
        prompt, completion = obj.get("prompt"), obj.get("completion")
        if not isinstance(prompt, str) or not prompt or not isinstance(completion, str) or not completion:
            raise InvalidInputError(f"{path}:{number}: each line needs non-empty 'prompt' and 'completion' text")
        out.append(SFTExample(prompt, completion, obj.get("answer") or answer_of(completion)))
    if not out:
        raise InvalidInputError(f"{path} holds no training examples")
    return out


def answer_of(completion: str) -> str | None:
    """The ``true``/``false`` after the last ``</think>`` of a completion, if that is what it ends with."""
    tail = completion.rsplit(THINK_CLOSE, 1)[-1].strip().lower()
    return tail if tail in ("true", "false") else None


def without_reasoning(example: SFTExample) -> SFTExample:
    """The same example for a direct reranker: completion ``"\\n</think> true|false"``.

    Raises:
        InvalidInputError: the example's answer is not true/false.
    """
    if example.answer not in ("true", "false"):
        raise InvalidInputError(f"--reasoning off needs completions ending in '</think> true|false'; got {example.completion[-60:]!r}")
    return SFTExample(example.prompt, f"{FORCED_CLOSE} {example.answer}", example.answer)


def tokenize(tokenizer: Any, example: SFTExample, add_eos: bool = True) -> dict[str, Any]:
    """``{"input_ids", "labels", "answer_at"}`` for one example; labels are ``IGNORE`` on the input
    part. ``answer_at`` is the index of the answer's first token, the one Rank1 scores (-1 when the
    completion has no true/false answer): the trainer reports its loss apart from the rest."""
    completion = example.completion
    cut = completion.rfind(THINK_CLOSE)
    body, tail = (completion[: cut + len(THINK_CLOSE)], completion[cut + len(THINK_CLOSE):]) if cut >= 0 else ("", completion)
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"] if text else []  # noqa: E731
    if body.strip() == THINK_CLOSE:
        context = tokenizer(example.prompt + body, add_special_tokens=True)["input_ids"]
        target = encode(tail)
    else:
        context = tokenizer(example.prompt, add_special_tokens=True)["input_ids"]
        target = encode(body) + encode(tail)
    answered = (example.answer or answer_of(completion)) in ("true", "false")
    answer_at = len(context) + len(target) - len(encode(tail)) if answered else -1
    if add_eos and tokenizer.eos_token_id is not None:
        target = target + [tokenizer.eos_token_id]
    return {"input_ids": list(context) + list(target), "labels": [IGNORE] * len(context) + list(target),
            "answer_at": answer_at}


@dataclass
class TokenizedData:
    """Tokenized examples and how many were left out for exceeding ``cutoff_len``."""

    rows: list[dict[str, Any]]
    too_long: int
    longest: int


def tokenize_all(tokenizer: Any, examples: Sequence[SFTExample], cutoff_len: int) -> TokenizedData:
    """Tokenize every example; those longer than ``cutoff_len`` tokens are left out.

    Raises:
        InvalidInputError: every example is too long.
    """
    rows, too_long, longest = [], 0, 0
    for example in examples:
        row = tokenize(tokenizer, example)
        longest = max(longest, len(row["input_ids"]))
        if len(row["input_ids"]) > cutoff_len:
            too_long += 1
            continue
        rows.append(row)
    if not rows:
        raise InvalidInputError(f"all {len(examples)} examples are longer than cutoff_len={cutoff_len} tokens (longest: {longest}); raise --cutoff-len")
    return TokenizedData(rows, too_long, longest)


class PadCollator:
    """Right-pads a batch: ``input_ids`` with the pad id, ``labels`` with ``IGNORE``, plus the mask
    and each row's ``answer_at``."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            labels[i, :n] = torch.tensor(r["labels"])
            mask[i, :n] = 1
        answer_at = torch.tensor([r.get("answer_at", -1) for r in rows], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels, "answer_at": answer_at}
