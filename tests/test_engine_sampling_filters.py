"""Top-p / top-k / min-p on generation requests: the transformers engine samples from the
distribution transformers' own warpers leave (checked step by step against a plain forward
pass, the warpers and ``torch.multinomial`` with the same seeded generator), top-k 1 is greedy,
and the openai engine carries the filters to a real OpenAI-compatible server."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM
from transformers.generation.logits_process import MinPLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from thinkrank.engines import GenerationRequest
from thinkrank.engines.openai import OpenAIEngine
from thinkrank.engines.vllm import sampling_kwargs
from thinkrank.errors import InvalidInputError
from thinkrank.testing.openai_server import EngineServer, serving

PROMPTS = ["The capital of France is", "Once upon a time, in a land far away,"]
TOKENS = 8


def _greedy(engine, prompt):
    return engine.generate([GenerationRequest(prompt, TOKENS)])[0].token_ids


def test_top_k_one_is_greedy(tiny_qwen_engine):
    greedy = [_greedy(tiny_qwen_engine, p) for p in PROMPTS]
    reqs = [GenerationRequest(p, TOKENS, temperature=1.0, seed=3, top_k=1) for p in PROMPTS]
    assert [g.token_ids for g in tiny_qwen_engine.generate(reqs)] == greedy
    # not vacuous: plain sampling at this temperature leaves the greedy path
    plain = tiny_qwen_engine.generate([GenerationRequest(p, TOKENS, temperature=1.0, seed=3) for p in PROMPTS])
    assert [g.token_ids for g in plain] != greedy


@pytest.fixture(scope="module")
def plain_model(tiny_qwen_path):
    return AutoModelForCausalLM.from_pretrained(tiny_qwen_path, dtype=torch.float32).eval()


def _reference(model, prompt_ids, temperature, seed, warpers):
    """Seeded sampling from a plain forward pass of the whole sequence at every step."""
    gen = torch.Generator().manual_seed(seed)
    ids = list(prompt_ids)
    kept = []
    for _ in range(TOKENS):
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1].float()
        scores = (logits / temperature).unsqueeze(0)
        for warp in warpers:
            scores = warp(None, scores)
        kept.append(int(torch.isfinite(scores).sum()))
        ids.append(int(torch.multinomial(torch.softmax(scores[0], dim=-1), 1, generator=gen)))
    return ids[len(prompt_ids):], kept


@pytest.mark.parametrize("filters, warpers", [
    ({"top_p": 0.3}, [TopPLogitsWarper(0.3)]),
    ({"min_p": 0.6}, [MinPLogitsWarper(0.6)]),
    ({"top_k": 20, "top_p": 0.95, "min_p": 0.0}, [TopKLogitsWarper(20), TopPLogitsWarper(0.95), MinPLogitsWarper(0.0)]),
])
def test_filtered_draws_equal_the_warpers_over_a_plain_forward_pass(tiny_qwen_engine, plain_model, filters, warpers):
    model = plain_model
    vocab = model.config.vocab_size
    prompt = PROMPTS[0]
    prompt_ids = tiny_qwen_engine.tokenizer.encode(prompt)
    (got,) = tiny_qwen_engine.generate([GenerationRequest(prompt, TOKENS, temperature=0.1, seed=11, **filters)])
    want, kept = _reference(model, prompt_ids, 0.1, 11, warpers)
    assert got.token_ids == want
    assert all(k < vocab for k in kept)  # the filters did cut the distribution at every step
    if "top_k" not in filters:
        plain, _ = _reference(model, prompt_ids, 0.1, 11, [])
        assert plain != want  # and the cut changed the draws


def test_no_filters_leave_requests_as_they_were(tiny_qwen_engine):
    plain = GenerationRequest(PROMPTS[0], TOKENS, temperature=0.7, seed=5)
    off = GenerationRequest(PROMPTS[0], TOKENS, temperature=0.7, seed=5, top_p=1.0, min_p=0.0)
    a, b = tiny_qwen_engine.generate([plain, off])
    assert a.token_ids == b.token_ids
    # vLLM keeps its neutral values unless a filter is set (and greedy ignores them)
    assert {k: sampling_kwargs(plain)[k] for k in ("top_p", "top_k")} == {"top_p": 1.0, "top_k": -1}
    assert "min_p" not in sampling_kwargs(plain)
    greedy = sampling_kwargs(GenerationRequest("x", 4, top_k=20))
    assert (greedy["top_k"], greedy["top_p"]) == (-1, 1.0)
    sampled = sampling_kwargs(GenerationRequest("x", 4, temperature=0.6, top_p=0.95, top_k=20, min_p=0.0))
    assert (sampled["top_p"], sampled["top_k"], sampled["min_p"]) == (0.95, 20, 0.0)


@pytest.mark.parametrize("bad, match", [
    ({"top_p": 0.0}, "top_p must be in \\(0, 1\\]"),
    ({"top_p": 1.5}, "top_p must be in"),
    ({"top_p": float("nan")}, "top_p must be in"),
    ({"top_k": 0}, "top_k must be an integer >= 1"),
    ({"top_k": 2.5}, "top_k must be an integer"),
    ({"min_p": -0.1}, "min_p must be in \\[0, 1\\]"),
])
def test_out_of_range_filters_are_refused(bad, match):
    with pytest.raises(InvalidInputError, match=match):
        GenerationRequest("x", 4, temperature=0.5, **bad)


def test_openai_engine_sends_the_filters(tiny_qwen_engine, tiny_qwen_path):
    app = EngineServer(tiny_qwen_engine, "tiny")
    with serving(app.app) as url:
        eng = OpenAIEngine("tiny", base_url=url, tokenizer=str(tiny_qwen_path), concurrency=1)
        try:
            # top_k (in extra_body, as vLLM's server takes it) at temperature 1 gives the greedy text
            sent = eng.generate([GenerationRequest(PROMPTS[1], TOKENS, temperature=1.0, seed=2, top_k=1)])[0]
            local = tiny_qwen_engine.generate([GenerationRequest(PROMPTS[1], TOKENS)])[0]
            assert sent.text == local.text
            # top_p and min_p reach the server: its draws are the transformers engine's with them
            req = GenerationRequest(PROMPTS[1], TOKENS, temperature=0.1, seed=2, top_p=0.3, min_p=0.2)
            assert eng.generate([req])[0].text == tiny_qwen_engine.generate([req])[0].text
        finally:
            eng.close()
