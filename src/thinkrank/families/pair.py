"""What a pointwise ("pair") family declares: one (query, document) judgment per model call,
scored from the exact log-probabilities of a few answer tokens.

A :class:`PairFamily` is data plus two pure functions, ``build`` and ``score``; it never calls a
model. A reranker runs it as follows:

1. ``family.build(query, document, instruction)`` gives the :class:`~thinkrank.families.base.ModelInput`;
2. if ``family.generation.max_tokens`` is 0, nothing is generated: every :class:`Reading` is at
   ``"prompt-end"`` and is read with ``engine.next_token_logprobs``;
3. otherwise the engine continues the prompt with ``generation`` (budget, stop strings,
   temperature); readings at ``"after-stop"`` are the exact log-probabilities right after the stop
   string (``GenerationRequest.answer_token_ids``), readings at ``"prompt-end"`` those of the
   first generated position (``next_token_logprobs`` of the prompt itself). When the
   continuation did not stop, ``generation.close`` (when set) gives the text appended to the
   prompt to force the answer (Rank1's rule); when it is None the after-stop readings are absent;
4. ``family.score(readings, text)`` turns ``{reading name: {answer token text: log-prob}}``
   (absent readings left out) and the generated text (None when nothing was generated) into a
   :class:`~thinkrank.families.base.PairAnswer`, with an explicit fallback where the released code
   falls back.

Answer tokens are given as text and must each be a single token of the model's tokenizer
(``thinkrank.engines.base.single_token_id`` checks it), so every score is exact, never read
from a top-k list.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from thinkrank.families.base import Kind, ModelInput, PairAnswer, Source

Position = Literal["prompt-end", "after-stop"]
"""Where answer tokens are read: as the token right after the prompt, or right after the stop
string that ended the generated text."""

Readings = Mapping[str, Mapping[str, float]]
"""``{reading name: {answer token text: exact log-probability}}``; a reading the engine could not
make (e.g. no stop string was written) is absent."""


@dataclass(frozen=True)
class Reading:
    """A set of answer tokens whose exact log-probabilities are read at one position."""

    name: str
    tokens: tuple[str, ...]
    at: Position


@dataclass(frozen=True)
class GenerationSettings:
    """How the model continues the prompt before the answer is read, as released.

    ``max_tokens`` 0: no generation (the answer is the token right after the prompt).
    ``reasoning``: whether the model writes a reasoning chain. ``close``: for a chain that did not
    stop by itself (budget, end-of-sequence), the text to append to the prompt to force the answer
    (Rank1's rule); None when the released code has no such rule.
    """

    reasoning: bool
    max_tokens: int
    stop: tuple[str, ...] = ()
    temperature: float = 0.0
    close: Callable[[str], str] | None = None


@dataclass(frozen=True)
class PairFamily:
    """One released pointwise family. See the module docstring for how a reranker uses it."""

    name: str  # the CLI name, e.g. "qwen3-reranker"
    source: Source
    default_model: str | None  # hub id of the released model the defaults are for; None: none published
    default_instruction: str | None
    generation: GenerationSettings
    readings: tuple[Reading, ...]
    build: Callable[[str, str, str | None], ModelInput]
    score: Callable[[Readings, str | None], PairAnswer]
    kind: Kind = "pair"

    def answer_tokens(self, at: Position) -> tuple[str, ...]:
        """Every answer token read at ``at``, in reading order, each once."""
        seen: dict[str, None] = {}
        for reading in self.readings:
            if reading.at == at:
                seen.update(dict.fromkeys(reading.tokens))
        return tuple(seen)


def softmax_share(logprobs: Mapping[str, float], tokens: tuple[str, ...]) -> list[float]:
    """The softmax of the given tokens' log-probabilities among themselves (the probability of
    each token renormalised over ``tokens``), computed stably."""
    values = [logprobs[t] for t in tokens]
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def missing_tokens(reading: Mapping[str, float], tokens: tuple[str, ...]) -> list[str]:
    """The tokens of ``tokens`` that ``reading`` has no log-probability for."""
    return [t for t in tokens if t not in reading]
