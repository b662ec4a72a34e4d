"""Exact answer log-probabilities from backends that only report a top-k list.

Servers (and vLLM offline) report the log-probability of the sampled token and of the top-k
tokens, never of arbitrary ids. To read a few answer ids exactly, a one-token request restricts
the next token to those ids (``logit_bias`` of +100, or vLLM's ``allowed_token_ids``) and asks for
``len(ids)`` log-probs. Backends differ in *which* distribution they report:

* after the restriction (the OpenAI API's semantics, vLLM V0, vLLM V1 with
  ``--logprobs-mode processed_logprobs``): the top-k is exactly the answer ids, with log-probs
  renormalised over them;
* before it (vLLM V1's default, ``raw_logprobs``): the top-k is the model's own and may miss an
  answer id, but the sampled token is an answer id with its full-softmax log-prob. A missing id
  is then read by a second request that allows only that id.

In both cases the *differences* between answer log-probs are exact, so every engine using this
module returns log-probs renormalised over the requested ids: ``log p(t) - log sum_u p(u)``.
Rank1's score p(true) / (p(true) + p(false)) only depends on such differences. What is never
done: reading a value from a top-k list that did not contain it, or inventing one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from thinkrank.errors import EngineError

# Slack for float error when checking that reported probabilities sum to at most 1.
_MASS_TOLERANCE = 1e-3


@dataclass
class Reading:
    """What one restricted one-token request reported: the id it sampled (None when the
    sampled token is not one of the answer ids) and the log-probs it gave for answer ids."""

    sampled: int | None
    logprobs: dict[int, float] = field(default_factory=dict)


def check_restricted(reading: Reading, allowed: Sequence[int], where: str) -> None:
    """Raise when the backend picked a token outside ``allowed``: it ignored the restriction,
    so its log-probs cannot be trusted to cover the answer ids."""
    if reading.sampled is None or reading.sampled not in allowed:
        raise EngineError(
            f"{where} ignored the restriction to token ids {list(allowed)} (it produced another token), "
            "so exact answer log-probabilities cannot be read from it; use a server that honours "
            "`logit_bias` on /v1/completions (vLLM, SGLang, llama.cpp server) or the transformers engine"
        )


def missing(reading: Reading, ids: Sequence[int]) -> list[int]:
    """Answer ids the reading has no value for (a raw-logprob backend's top-k left them out)."""
    return [t for t in ids if t not in reading.logprobs]


def forced_value(reading: Reading, token: int, where: str) -> float:
    """The log-prob of ``token`` from a request that allowed only ``token``."""
    check_restricted(reading, [token], where)
    if token not in reading.logprobs:
        raise EngineError(f"{where} returned no log-probability for its sampled token {token}")
    return reading.logprobs[token]


def renormalise(values: Mapping[int, float], ids: Sequence[int], where: str) -> dict[int, float]:
    """``values`` renormalised over ``ids``: log p(t) - log sum_u p(u), one entry per id.

    Raises:
        EngineError: a value is missing or NaN, every answer has probability 0, or the values
            sum to more than probability 1 (the backend mixed restricted and raw log-probs).
    """
    absent = [t for t in ids if t not in values or math.isnan(values[t])]
    if absent:
        raise EngineError(f"{where} returned no usable log-probability for token ids {absent}")
    finite = [values[t] for t in ids if values[t] != -math.inf]
    if not finite:
        raise EngineError(f"{where} gave every answer token ({list(ids)}) probability 0")
    top = max(finite)
    total = top + math.log(sum(math.exp(v - top) for v in finite))
    if total > math.log1p(_MASS_TOLERANCE):
        raise EngineError(
            f"{where} reported answer probabilities summing to {math.exp(total):.4f} > 1: it mixes "
            "restricted and unrestricted log-probs, so their ratio is not exact"
        )
    return {t: values[t] - total for t in ids}
