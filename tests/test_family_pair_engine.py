"""Pair families through a real engine: the transformers engine reading a family's answer
tokens gives the score a plain forward pass gives (random-weight Qwen2-shaped model, real
Qwen2.5 tokenizer)."""

from __future__ import annotations

import pytest
import torch
from tolerances import LAYOUT_TOL

from thinkrank.engines.base import single_token_id
from thinkrank.families import qwen3_reranker, tfrank

PAIRS = [
    ("What is the capital of China?", "The capital of China is Beijing."),
    ("Wie funktioniert Photosynthese? 🌱", "光合作用是植物利用光能的过程。"),
]


@pytest.fixture(scope="module")
def plain(tiny_qwen_path):
    """The same model and tokenizer loaded by transformers directly, for plain forward passes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen_path, dtype=torch.float32).eval()
    return tokenizer, model


def plain_next_token_logprobs(plain, prompt: str, token_ids: list[int]) -> list[float]:
    tokenizer, model = plain
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits[0, -1]
    logprobs = torch.log_softmax(logits.double(), dim=-1)
    return [float(logprobs[t]) for t in token_ids]


@pytest.mark.parametrize("module", [qwen3_reranker, tfrank], ids=lambda m: m.FAMILY.name)
def test_prompt_end_reading_through_the_engine_matches_a_forward_pass(module, tiny_qwen_engine, plain):
    family = module.FAMILY
    texts = family.answer_tokens("prompt-end")
    ids = [single_token_id(tiny_qwen_engine.tokenizer, t) for t in texts]
    prompts = [family.build(q, d, None).prompt for q, d in PAIRS]
    read = tiny_qwen_engine.next_token_logprobs(prompts, ids)
    for prompt, logprobs in zip(prompts, read):
        reference = plain_next_token_logprobs(plain, prompt, ids)
        reading = {text: logprobs[i] for text, i in zip(texts, ids)}
        for text, value in zip(texts, reference):
            assert reading[text] == pytest.approx(value, abs=LAYOUT_TOL)
        name = family.readings[0].name
        answer = family.score({name: reading}, None)
        expected = family.score({name: dict(zip(texts, reference))}, None)
        assert answer.score == pytest.approx(expected.score, abs=LAYOUT_TOL)
