"""The vLLM engine's parts that need no vLLM: request conversion, parsing of vLLM-shaped
outputs, the missing extra. The engine itself runs on a real vLLM in
``test_engine_vllm_real.py``.

The output classes below copy the fields of vLLM's ``Logprob``, ``CompletionOutput`` and
``RequestOutput`` (the shapes whose parsing is checked here; real ones in the real tests).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from thinkrank.engines import GenerationRequest, load_engine
from thinkrank.engines.vllm import sampling_fields, sampling_kwargs, scoring_kwargs, to_generation
from thinkrank.errors import EngineError, MissingExtraError


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: Sequence[int]
    cumulative_logprob: float | None
    logprobs: list[dict[int, Logprob]] | None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int] | None
    prompt_logprobs: Any
    outputs: list[CompletionOutput]
    finished: bool = True


def _output(text="", token_ids=(), finish="length", stop=None, prompt_ids=(1, 2, 3), logprobs=None) -> RequestOutput:
    completion = CompletionOutput(0, text, list(token_ids), None, logprobs, finish, stop)
    return RequestOutput("0", None, list(prompt_ids), None, [completion])


# ---- conversion and parsing ---------------------------------------------------------------
def test_generation_requests_become_explicit_sampling_params():
    greedy = sampling_kwargs(GenerationRequest("p", 64, ("</think>",), seed=5))
    assert greedy == {
        "max_tokens": 64, "temperature": 0.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0,
        "stop": ["</think>"], "seed": None, "skip_special_tokens": False, "spaces_between_special_tokens": False,
        "include_stop_str_in_output": False,
    }
    sampled = sampling_kwargs(GenerationRequest("p", 8, temperature=0.7, seed=5))
    assert (sampled["temperature"], sampled["seed"], sampled["stop"]) == (0.7, 5, [])


def test_scoring_uses_logprob_token_ids_when_this_vllm_has_them():
    assert scoring_kwargs([830, 895], frozenset({"logprob_token_ids", "logprobs"})) == {
        "max_tokens": 1, "temperature": 0.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0,
        "logprobs": 2, "logprob_token_ids": [830, 895],
    }
    restricted = scoring_kwargs([830, 895], frozenset({"allowed_token_ids", "logprobs"}))
    assert (restricted["allowed_token_ids"], restricted["logprobs"]) == ([830, 895], 2)
    assert "logprob_token_ids" not in restricted


def test_sampling_fields_read_struct_fields_or_the_constructor():
    class StructParams:  # vLLM >= 0.6: a msgspec.Struct lists its fields here
        __struct_fields__ = ("n", "logprobs", "logprob_token_ids")

    class OldParams:  # older vLLM: a plain class
        def __init__(self, n: int = 1, logprobs: int | None = None, allowed_token_ids: list | None = None):
            pass

    assert sampling_fields(StructParams) == {"n", "logprobs", "logprob_token_ids"}
    assert sampling_fields(OldParams) == {"n", "logprobs", "allowed_token_ids"}


@pytest.mark.parametrize(
    ("finish", "stop", "expected"),
    [("length", None, "length"), ("stop", "</think>", "stop"), ("stop", None, "eos"), ("stop", 151643, "eos")],
)
def test_request_outputs_become_generations(finish, stop, expected):
    gen = to_generation(_output(" Paris.", [7042, 30, 9617], finish, stop, prompt_ids=range(43)))
    assert (gen.text, gen.stop_reason, gen.num_tokens, gen.prompt_tokens) == (" Paris.", expected, 3, 43)
    assert gen.token_ids == [7042, 30, 9617] and gen.answer_logprobs is None


def test_an_aborted_request_is_an_error():
    with pytest.raises(EngineError, match="finish_reason='abort'"):
        to_generation(_output(finish="abort"))


def test_missing_vllm_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # as in an environment without vLLM
    with pytest.raises(MissingExtraError, match=r'pip install "thinkrank\[vllm\]"'):
        load_engine("jhu-clsp/rank1-7b", "vllm")
