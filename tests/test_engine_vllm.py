"""The vLLM engine's parts that run without vLLM (it needs a GPU): request conversion, parsing
of vLLM-shaped outputs, answer scoring against vLLM's sampler semantics, the missing extra.

The output classes below copy the fields of vLLM's ``Logprob``, ``CompletionOutput`` and
``RequestOutput``; :class:`Sampler` reproduces what vLLM does with a one-token scoring request
(``allowed_token_ids`` masking, greedy pick, top-k plus sampled plus ``logprob_token_ids``
log-probs, reported raw — vLLM V1's default — or after the mask) over a real model.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from thinkrank.engines import GenerationRequest, load_engine
from thinkrank.engines.vllm import sampling_fields, sampling_kwargs, score_answers, scoring_kwargs, to_generation
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


# ---- answer scoring against vLLM's sampler semantics --------------------------------------
@dataclass
class Sampler:
    """vLLM's handling of one-token scoring requests, over a real model."""

    tok: Any
    model: Any
    mode: str = "raw"
    honour_allowed: bool = True
    calls: list[int] = field(default_factory=list)

    def __call__(self, prompts: list[str], params: list[dict[str, Any]]) -> list[RequestOutput]:
        self.calls.append(len(prompts))
        return [self._one(p, kw) for p, kw in zip(prompts, params)]

    def _one(self, prompt: Any, kw: dict[str, Any]) -> RequestOutput:
        assert kw["max_tokens"] == 1 and kw["temperature"] == 0.0
        if isinstance(prompt, dict):  # a TokensPrompt: scored on exactly these ids
            ids = torch.tensor([prompt["prompt_token_ids"]])
        else:
            ids = self.tok(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            logits = self.model(ids).logits[0, -1].float()
        raw = torch.log_softmax(logits, -1)
        masked = logits.clone()
        if kw.get("allowed_token_ids") and self.honour_allowed:
            keep = torch.full_like(masked, float("-inf"))
            keep[kw["allowed_token_ids"]] = 0
            masked = masked + keep
        processed = torch.log_softmax(masked, -1)
        reported = raw if self.mode == "raw" else processed
        sampled = int(torch.argmax(masked))
        wanted = set(torch.topk(reported, kw["logprobs"]).indices.tolist()) if kw["logprobs"] else set()
        wanted |= {sampled, *kw.get("logprob_token_ids", [])}
        step = {t: Logprob(float(reported[t]), decoded_token=self.tok.decode([t])) for t in wanted}
        return _output(self.tok.decode([sampled]), [sampled], prompt_ids=ids[0].tolist(), logprobs=[step])


@pytest.fixture(scope="module")
def hf(smollm2_path):
    tok = AutoTokenizer.from_pretrained(smollm2_path)
    return tok, AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32).eval()


PROMPTS = ["The capital of France is", "Is the sky blue? Answer true or false:"]
RESTRICTED = frozenset({"allowed_token_ids", "logprobs"})
BY_IDS = frozenset({"allowed_token_ids", "logprobs", "logprob_token_ids"})


def _answer_ids(tok):
    return [tok.encode(w, add_special_tokens=False)[0] for w in (" true", " false")]


def _plain_difference(hf, prompt, ids):
    tok, model = hf
    with torch.no_grad():
        lp = torch.log_softmax(model(tok(prompt, return_tensors="pt").input_ids).logits[0, -1].float(), -1)
    return float(lp[ids[0]] - lp[ids[1]])


@pytest.mark.parametrize(
    ("fields", "mode", "passes"),
    [(BY_IDS, "raw", [2]), (RESTRICTED, "processed", [2]), (RESTRICTED, "raw", [2, 2])],
)
def test_answer_scores_are_renormalised_and_exact_in_every_vllm_mode(hf, fields, mode, passes):
    tok, model = hf
    ids = _answer_ids(tok)
    sampler = Sampler(tok, model, mode)
    got = score_answers(sampler, PROMPTS, ids, fields)
    # Raw log-probs with restricted decoding: neither answer is in the raw top-2 after these
    # prompts, so each prompt needs one more pass that allows only the missing answer.
    assert sampler.calls == passes
    for prompt, lp in zip(PROMPTS, got):
        assert torch.logsumexp(torch.tensor([lp[ids[0]], lp[ids[1]]]), 0).item() == pytest.approx(0.0, abs=1e-6)
        assert lp[ids[0]] - lp[ids[1]] == pytest.approx(_plain_difference(hf, prompt, ids), abs=1e-4)


def test_a_restriction_that_did_not_hold_is_an_error(hf):
    tok, model = hf
    with pytest.raises(EngineError, match="ignored the restriction"):
        score_answers(Sampler(tok, model, honour_allowed=False), PROMPTS[:1], _answer_ids(tok), RESTRICTED)


def test_missing_vllm_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # as on this CPU machine, where vLLM is absent
    with pytest.raises(MissingExtraError, match=r'pip install "thinkrank\[vllm\]"'):
        load_engine("jhu-clsp/rank1-7b", "vllm")
