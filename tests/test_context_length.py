"""A prompt plus its budget never exceeds the model's context: the passage is cut to fit and
flagged ``truncated``; a query and template that alone do not fit are a clear error before any
generation. Every engine reports its context length."""

from __future__ import annotations

import pytest

from thinkrank import Rank1
from thinkrank.engines.openai import OpenAIEngine
from thinkrank.engines.transformers import TransformersEngine
from thinkrank.errors import InvalidInputError
from thinkrank.testing.openai_server import EngineServer, serving

LONG = " ".join(f"Cats eat fish number {i}." for i in range(200))  # about 1,400 tokens


@pytest.fixture(scope="module")
def small_context(tiny_qwen_path):
    return TransformersEngine(str(tiny_qwen_path), device="cpu", context_length=256)


def test_engines_report_their_context_length(tiny_qwen_engine, smollm2_engine, smollm2_path):
    assert tiny_qwen_engine.context_length == 32768  # the model config's max_position_embeddings
    assert smollm2_engine.context_length == smollm2_engine.model.config.max_position_embeddings
    with serving(EngineServer(smollm2_engine, "smol").app) as url:  # reported like vLLM's max_model_len
        client = OpenAIEngine("smol", base_url=url, tokenizer=str(smollm2_path))
        assert client.context_length == smollm2_engine.context_length
        client.close()
        assert OpenAIEngine("smol", base_url=url, tokenizer=str(smollm2_path), context_length=1000).context_length == 1000


def test_a_passage_too_long_for_the_context_is_cut_to_fit_and_flagged(small_context, tiny_qwen_path):
    budget = 64
    calls = []
    hook = small_context.model.register_forward_hook(lambda m, a, k, out: calls.append(k["input_ids"].shape), with_kwargs=True)
    try:
        ranking = Rank1(engine=small_context, think_budget=budget, max_passage_tokens=None).rerank("cats", [LONG, "Cats purr."])
    finally:
        hook.remove()
    long, short = ranking["0"], ranking["1"]
    assert long.truncated and not short.truncated
    # everything the model saw fits: the prompt, the chain, and the forced answer after it
    assert long.prompt_tokens + budget + 8 <= 256
    assert long.prompt_tokens + long.reasoning_tokens + 4 <= 256
    assert max(shape[-1] for shape in calls) <= 256  # the widest forward: prompt + forced answer
    assert long.prompt_tokens > 150  # and the passage was cut to fit, not dropped


def test_a_query_that_alone_does_not_fit_is_a_clear_error_before_any_work(small_context):
    calls = []
    hook = small_context.model.register_forward_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(InvalidInputError, match="leave no room for a passage in the model's context of 256"):
            Rank1(engine=small_context, think_budget=64).rerank(" ".join(["cats"] * 300), ["Cats purr."])
        with pytest.raises(InvalidInputError, match="lower think_budget"):
            Rank1(engine=small_context, think_budget=250).rerank("cats", ["Cats purr."])
    finally:
        hook.remove()
    assert calls == []
    # reasoning off needs no budget: the same query fits then
    assert len(Rank1(engine=small_context, think_budget=250, reasoning=False).rerank("cats", ["Cats purr."])) == 1


def test_a_listwise_window_that_cannot_fit_is_refused_before_any_generation(smollm2_path):
    from thinkrank import RankK

    engine = TransformersEngine(str(smollm2_path), device="cpu", context_length=1024)
    calls = []
    hook = engine.model.register_forward_hook(lambda *a: calls.append(1))
    docs = [f"Passage {i} about cats and what they eat every day of the week." * 4 for i in range(6)]
    try:
        with pytest.raises(InvalidInputError, match="more than the model's context of 1024: lower max_passage_tokens"):
            RankK(engine=engine, window=6, stride=3, max_tokens=400).rerank("cats", docs)
    finally:
        hook.remove()
    assert calls == []
    # with a budget that fits, the windows run (the largest window is checked against a bound)
    assert len(RankK(engine=engine, window=6, stride=3, max_tokens=8).rerank("cats", docs).windows) == 1


def test_check_refuses_what_rerank_would_before_any_work_and_passes_the_rest(small_context, smollm2_path):
    from thinkrank import RankK
    from thinkrank.rerankers import RerankRequest

    calls = []
    hook = small_context.model.register_forward_hook(lambda *a: calls.append(1))
    rank1 = Rank1(engine=small_context, think_budget=64)
    try:
        with pytest.raises(InvalidInputError, match="no room for a passage in the model's context of 256"):
            rank1.check(RerankRequest(" ".join(["cats"] * 300), ["Cats purr."]))
        with pytest.raises(InvalidInputError, match="instruction holds a lone surrogate"):
            rank1.check(RerankRequest("cats", ["Cats purr."], instruction="\ud800"))
        with pytest.raises(InvalidInputError, match="instruction holds a lone surrogate"):
            rank1.rerank("cats", ["Cats purr."], instruction="\ud800")  # rerank makes the same check
        rank1.check(RerankRequest("cats", [LONG, "Cats purr."], instruction="about pets"))  # passages are cut to fit
    finally:
        hook.remove()
    assert calls == []
    listwise = RankK(engine=TransformersEngine(str(smollm2_path), device="cpu", context_length=1024), window=6,
                     stride=3, max_tokens=400)
    with pytest.raises(InvalidInputError, match="more than the model's context of 1024"):
        listwise.check(RerankRequest("cats", [f"Passage {i} about cats and what they eat every day of the week." * 4
                                              for i in range(6)]))
