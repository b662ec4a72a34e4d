"""Every released family on the real vLLM engine gives what the transformers engine gives on the
same model, greedy: Qwen3-Reranker's and TFRank's scores (within LAYOUT_TOL: measured here, the
two engines differ by at most 2.4e-7), ReasonRank's windows and Rank-R1's comparisons (chains,
answers, token counts and orders identical).

The model is the one the session's vLLM worker already holds for test_engine_vllm_real.py's
think tests (same options, so the worker's cached engine, no new vLLM instance): a random-weight
Qwen2-shaped model with the exact Qwen2.5 tokenizer plus Qwen3's ``<think>``/``</think>`` as
special tokens, on which "yes", "no" and the digits are single tokens.
"""

from __future__ import annotations

import dataclasses

import pytest
from test_engine_vllm_real import think_engine
from test_think_tokens import CLOSES
from tolerances import LAYOUT_TOL

from thinkrank import Rank1, RankK, RankR1, RerankRequest
from thinkrank.engines import GenerationRequest
from thinkrank.engines.transformers import TransformersEngine
from thinkrank.families import tfrank
from thinkrank.testing.models import tiny_qwen_think_dir

pytestmark = pytest.mark.slow

QUERIES = ["what do cats eat", "光合作用 needs light?"]
DOCS = ["Cats are obligate carnivores and eat meat.", "The stock market fell sharply on Tuesday.",
        "Plants turn light into sugar: photosynthesis.", "Café crème & croissants — a French breakfast.",
        "Rain is water falling from clouds.", "Chess is a board game for two players."]


@pytest.fixture(scope="module")
def engines(vllm_worker):
    """(vLLM in the worker, transformers here) over the same model; the worker serves the engine
    it loaded for test_engine_vllm_real.py (the same options: one vLLM engine)."""
    return think_engine(vllm_worker), TransformersEngine(str(tiny_qwen_think_dir(CLOSES)), device="cpu")


def _judgments(rankings):
    return [j for r in rankings for j in sorted(r, key=lambda j: j.index)]


def _same_judgments(got, want):
    assert [(j.index, j.stop_reason, j.fallback, j.reasoning_tokens, j.prompt_tokens) for j in got] == [
        (j.index, j.stop_reason, j.fallback, j.reasoning_tokens, j.prompt_tokens) for j in want]
    for g, w in zip(got, want):
        assert g.score == pytest.approx(w.score, abs=LAYOUT_TOL)
        for name, value in (w.parts or {}).items():
            assert g.parts[name] == pytest.approx(value, abs=LAYOUT_TOL)


def test_pair_families_score_as_on_transformers(engines):
    vllm, hf = engines
    requests = [(q, DOCS) for q in QUERIES]
    want = _judgments(Rank1(engine=hf, family="qwen3-reranker").rerank_many(requests))
    got = _judgments(Rank1(engine=vllm, family="qwen3-reranker").rerank_many(requests))
    _same_judgments(got, want)
    assert len({round(j.score, 3) for j in want}) > 1  # the scores tell the pairs apart
    # TFRank as released: this random model writes no "yes(" marker, so the released 0.5 defaults
    want = _judgments(Rank1(engine=hf, family="tfrank", think_budget=4).rerank_many(requests))
    got = _judgments(Rank1(engine=vllm, family="tfrank", think_budget=4).rerank_many(requests))
    _same_judgments(got, want)
    assert {j.fallback for j in got} == {"no-grade"}
    # TFRank whose grade marker is the token the model writes first: the grade is read right
    # after a stop string vLLM matched (prompt-end P(yes) and after-stop grade both exact).
    prompt = tfrank.build(QUERIES[0], DOCS[0], None).prompt
    marker = hf.generate([GenerationRequest(prompt, 1)])[0].text
    assert marker.strip(), "the test needs a visible first token"
    variant = dataclasses.replace(tfrank.FAMILY, generation=dataclasses.replace(tfrank.FAMILY.generation, stop=(marker,)))
    want = _judgments(Rank1(engine=hf, family=variant, think_budget=8).rerank_many(requests))
    got = _judgments(Rank1(engine=vllm, family=variant, think_budget=8).rerank_many(requests))
    _same_judgments(got, want)
    assert got[0].stop_reason == "stop" and got[0].fallback is None and 0 < got[0].parts["grade"] < 4


def test_reasonrank_windows_are_the_transformers_ones(engines):
    vllm, hf = engines
    requests = [RerankRequest(q, DOCS, f"q{i}") for i, q in enumerate(QUERIES)]

    def run(engine):
        return RankK(engine=engine, family="reasonrank", window=4, stride=2, max_tokens=24).rerank_many(requests)

    for g, w in zip(run(vllm), run(hf)):
        assert len(w.windows) > 1 and all(t.completion_tokens == 24 for t in w.windows)  # 24 tokens written each
        assert [dataclasses.asdict(t) for t in g.windows] == [dataclasses.asdict(t) for t in w.windows]
        assert [j.index for j in g] == [j.index for j in w]


def test_rank_r1_comparisons_are_the_transformers_ones(engines):
    vllm, hf = engines
    requests = [RerankRequest(q, DOCS, f"q{i}") for i, q in enumerate(QUERIES)]

    def run(engine):
        return RankR1(engine=engine, k=2, num_child=3, max_tokens=24).rerank_many(requests)

    for g, w in zip(run(vllm), run(hf)):
        assert len(w.comparisons) > 1 and all(t.completion_tokens == 24 for t in w.comparisons)
        assert [dataclasses.asdict(t) for t in g.comparisons] == [dataclasses.asdict(t) for t in w.comparisons]
        assert [j.index for j in g] == [j.index for j in w]
