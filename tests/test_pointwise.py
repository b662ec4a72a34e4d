"""Rank1 scoring checked against plain forward passes of independently loaded models."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from thinkrank import Rank1
from thinkrank.engines import GenerationRequest
from thinkrank.errors import InvalidInputError
from thinkrank.prompts.rank1 import build_rank1_prompt
from thinkrank.testing import QWEN_FALSE_ID, QWEN_TRUE_ID

from tolerances import LAYOUT_TOL

# A few-shot query template: SmolLM2 copies the demonstrated pattern and closes its chain
# with "</think>" by itself, which exercises the natural (unforced) path on a real model.
FEW_SHOT = (
    "FILL_QUERY_HERE\nPassage: Paris is the capital of France.\n<think>The passage names the capital.</think> true\n"
    "Query: FILL_QUERY_HERE\nPassage: Bananas are yellow.\n<think>The passage is about fruit.</think> false\n"
    "Query: FILL_QUERY_HERE"
)
QUERY = "what is the capital of france"
DOCS = [
    "The capital of France is Paris.",
    "Dogs bark loudly at night when they hear strangers walking past the garden fence.",
    {"id": "eu", "title": "Europe", "text": "France is a country in Europe."},
]


class Reference:
    """An independently loaded model and tokenizer; scores by one plain, unpadded forward pass."""

    def __init__(self, path):
        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        self.true_id = self.tok.encode(" true", add_special_tokens=False)[0]
        self.false_id = self.tok.encode(" false", add_special_tokens=False)[0]

    def score(self, text: str) -> float:
        ids = self.tok(text, return_tensors="pt").input_ids
        with torch.no_grad():
            logprobs = torch.log_softmax(self.model(ids).logits[0, -1].float(), dim=-1)
        p_true, p_false = logprobs[self.true_id].exp(), logprobs[self.false_id].exp()
        return float(p_true / (p_true + p_false))


@pytest.fixture(scope="module")
def smol_ref(smollm2_path):
    return Reference(smollm2_path)


@pytest.fixture(scope="module")
def qwen_ref(tiny_qwen_path):
    return Reference(tiny_qwen_path)


def _prompt(query, doc, template=None):
    passage = doc if isinstance(doc, str) else f"{doc['title']} {doc['text']}"
    return build_rank1_prompt(query, passage, template=template)


def test_closed_chain_scores_equal_a_plain_forward_over_prompt_chain_and_close(smollm2_engine, smol_ref):
    ranking = Rank1(engine=smollm2_engine, think_budget=40, prompt=FEW_SHOT).rerank(QUERY, DOCS)
    assert len(ranking) == 3
    for j in ranking:
        assert not j.forced, j.reasoning
        assert j.reasoning.strip() and "</think>" not in j.reasoning
        doc = DOCS[j.index]
        expected = smol_ref.score(_prompt(QUERY, doc, FEW_SHOT) + j.reasoning + "</think>")
        assert j.score == pytest.approx(expected, abs=LAYOUT_TOL)
        assert j.p_true / (j.p_true + j.p_false) == pytest.approx(j.score, abs=1e-9)
        assert j.answer == ("true" if j.p_true >= j.p_false else "false")


def _released_forced(prompt: str, chain: str) -> tuple[str, str]:
    """The released forced answer (orionw/rank1 rank1.py), restated: strip the chain's end;
    unless it ends with . ! or ?, cut after the last of them (whole when none); strip; score
    ``prompt + "\\n" + chain + "\\n</think>"``. Returns (cut chain, scored text)."""
    text = chain.rstrip()
    if not text.endswith((".", "!", "?")):
        last = max(text.rfind("."), text.rfind("!"), text.rfind("?"))
        if last != -1:
            text = text[: last + 1]
    return text.strip(), f"{prompt}\n{text.strip()}\n</think>"


def test_chain_over_budget_is_cut_to_a_sentence_closed_and_scored_on_the_two_answers(smollm2_engine, smol_ref):
    from thinkrank.engines import GenerationRequest

    # Without the few-shot pattern SmolLM2 never writes </think>: every answer must be forced.
    ranking = Rank1(engine=smollm2_engine, think_budget=24).rerank(QUERY, DOCS)
    raw = smollm2_engine.generate([GenerationRequest(_prompt(QUERY, d), 24, ("</think>",)) for d in DOCS])
    for j in ranking:
        assert j.forced
        cut, text = _released_forced(_prompt(QUERY, DOCS[j.index]), raw[j.index].text)
        assert j.reasoning == cut
        assert j.score == pytest.approx(smol_ref.score(text), abs=LAYOUT_TOL)
        assert j.reasoning_tokens <= 24


def test_forced_answers_on_the_qwen_tokenizer_use_the_exact_answer_ids(tiny_qwen_engine, qwen_ref):
    assert (qwen_ref.true_id, qwen_ref.false_id) == (QWEN_TRUE_ID, QWEN_FALSE_ID)
    reranker = Rank1(engine=tiny_qwen_engine, think_budget=6)
    assert (reranker.true_id, reranker.false_id) == (830, 895)
    ranking = reranker.rerank("capital of france", ["Paris is the capital.", "Bananas are yellow fruit."])
    for j in ranking:
        assert j.forced and j.reasoning_tokens == 6
        prompt = _prompt("capital of france", ["Paris is the capital.", "Bananas are yellow fruit."][j.index])
        raw = tiny_qwen_engine.generate([GenerationRequest(prompt, 6, ("</think>",))])[0].text
        cut, text = _released_forced(prompt, raw)
        assert j.reasoning == cut
        assert j.score == pytest.approx(qwen_ref.score(text), abs=LAYOUT_TOL)


def test_reasoning_off_is_one_forward_pass_per_pair(tiny_qwen_engine, qwen_ref):
    docs = ["Paris is the capital.", "Bananas are yellow fruit.", "A third, somewhat longer passage about rivers."]
    calls = []
    hook = tiny_qwen_engine.model.register_forward_hook(lambda m, a, k, out: calls.append(1), with_kwargs=True)
    try:
        ranking = Rank1(engine=tiny_qwen_engine, reasoning=False).rerank("capital of france", docs)
    finally:
        hook.remove()
    # The query's shared prefix (instruction + query) is prefilled once, then the three pairs'
    # rests go through one batched forward pass.
    assert len(calls) == 2
    for j in ranking:
        assert j.reasoning == "" and j.reasoning_tokens == 0 and not j.forced
        expected = qwen_ref.score(_prompt("capital of france", docs[j.index]) + "\n</think>")
        assert j.score == pytest.approx(expected, abs=LAYOUT_TOL)


def test_batched_scores_equal_one_by_one(smollm2_engine):
    reranker = Rank1(engine=smollm2_engine, think_budget=40, prompt=FEW_SHOT)
    together = reranker.rerank(QUERY, DOCS)
    for i, doc in enumerate(DOCS):
        alone = reranker.rerank(QUERY, [doc])[0]
        mine = together[alone.doc_id if i == 2 else str(i)]
        assert alone.reasoning == mine.reasoning
        assert alone.score == pytest.approx(mine.score, abs=LAYOUT_TOL)


def test_rerank_many_batches_all_queries_into_one_generation_call(smollm2_engine):
    calls = []
    original = smollm2_engine.generate

    def counting(requests, progress=None, *, on_batch=None):
        calls.append(len(requests))
        return original(requests, progress, on_batch=on_batch)

    smollm2_engine.generate = counting
    try:
        reranker = Rank1(engine=smollm2_engine, think_budget=12)
        many = reranker.rerank_many([("capital of france", DOCS[:2]), ("dogs", DOCS[1:])])
    finally:
        del smollm2_engine.generate
    assert calls == [4]
    alone = reranker.rerank("dogs", DOCS[1:])
    assert [j.doc_id for j in many[1]] == [j.doc_id for j in alone]
    assert [j.score for j in many[1]] == pytest.approx([j.score for j in alone], abs=LAYOUT_TOL)


def test_sampling_is_reproducible_with_a_seed(smollm2_engine):
    a = Rank1(engine=smollm2_engine, think_budget=16, temperature=1.0, seed=3).rerank(QUERY, DOCS[:2])
    b = Rank1(engine=smollm2_engine, think_budget=16, temperature=1.0, seed=3).rerank(QUERY, DOCS[:2])
    greedy = Rank1(engine=smollm2_engine, think_budget=16).rerank(QUERY, DOCS[:2])
    assert [j.reasoning for j in a] == [j.reasoning for j in b]
    assert [j.reasoning for j in a] != [j.reasoning for j in greedy]


def test_empty_document_list_gives_an_empty_ranking(tiny_qwen_engine):
    assert len(Rank1(engine=tiny_qwen_engine).rerank("q", [])) == 0


@pytest.mark.parametrize(
    ("query", "docs", "message"),
    [
        ("", ["x"], "query is empty"),
        ("q", ["x", ""], "document 1 .*empty text"),
        ("q", ["x", 5], "document 1 is a int"),
        ("q", [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}], "share the id 'a'"),
    ],
)
def test_bad_input_is_rejected_before_any_work(tiny_qwen_engine, query, docs, message):
    with pytest.raises(InvalidInputError, match=message):
        Rank1(engine=tiny_qwen_engine, reasoning=False).rerank(query, docs)


def test_a_100k_character_passage_is_cut_flagged_and_keeps_the_prompt_tail(tiny_qwen_engine, qwen_ref):
    seen = []
    original = tiny_qwen_engine.next_token_logprobs

    def recording(prompts, token_ids, progress=None, *, on_batch=None, shared_prefixes=None):
        seen.extend(prompts)
        return original(prompts, token_ids, progress, on_batch=on_batch, shared_prefixes=shared_prefixes)

    tiny_qwen_engine.next_token_logprobs = recording
    try:
        huge = "word " * 20_000
        ranking = Rank1(engine=tiny_qwen_engine, reasoning=False, max_passage_tokens=64).rerank("q", ["short", huge])
    finally:
        del tiny_qwen_engine.next_token_logprobs
    assert ranking["1"].truncated and not ranking["0"].truncated
    long_prompt = seen[1]
    assert long_prompt.endswith("\n<think>\n</think>")
    passage = long_prompt.split("Passage: ", 1)[1].rsplit("\n<think>", 1)[0]
    assert len(qwen_ref.tok.encode(passage, add_special_tokens=False)) <= 64
    assert ranking["1"].score == pytest.approx(qwen_ref.score(long_prompt), abs=LAYOUT_TOL)


def test_top_n_and_invalid_settings(tiny_qwen_engine):
    ranking = Rank1(engine=tiny_qwen_engine, reasoning=False).rerank("q", ["a b", "c d", "e f"], top_n=2)
    assert len(ranking) == 2
    with pytest.raises(InvalidInputError, match="think_budget"):
        Rank1(engine=tiny_qwen_engine, think_budget=0)
    with pytest.raises(InvalidInputError, match="unknown prompt"):
        Rank1(engine=tiny_qwen_engine, prompt="nope")
    with pytest.raises(InvalidInputError, match="single token"):
        Rank1(engine=tiny_qwen_engine, true_token=" absolutely-relevant")


@pytest.mark.parametrize("close, text", [("newline", "\n</think>"), ("bare", "</think>"), ("empty-chain", "\n\n</think>")])
def test_reasoning_off_closes_the_think_block_with_the_bytes_chosen(tiny_qwen_engine, qwen_ref, close, text):
    docs = ["Paris is the capital.", "Bananas are yellow fruit."]
    reranker = Rank1(engine=tiny_qwen_engine, reasoning=False, reasoning_close=close)
    assert reranker.settings["reasoning_close"] == text  # part of the cache key: scores differ by it
    for j in reranker.rerank("capital of france", docs):
        assert j.score == pytest.approx(qwen_ref.score(_prompt("capital of france", docs[j.index]) + text), abs=LAYOUT_TOL)


def test_the_closing_bytes_change_the_score(tiny_qwen_engine):
    scores = {c: Rank1(engine=tiny_qwen_engine, reasoning=False, reasoning_close=c).rerank("capital", ["Paris."])[0].score
              for c in ("newline", "bare")}
    assert abs(scores["newline"] - scores["bare"]) > 1e-4
    with pytest.raises(InvalidInputError, match="reasoning_close"):
        Rank1(engine=tiny_qwen_engine, reasoning=False, reasoning_close="</answer>")


class _EngineReportingAtTheEnd:
    """An engine that reports every result at once when a call returns and ignores
    ``shared_prefixes`` (prompts prefilled whole), as the vLLM engine does."""

    def __init__(self, inner, report=True):
        self.inner, self.name, self.model_name = inner, inner.name, inner.model_name
        self.tokenizer, self.context_length = inner.tokenizer, inner.context_length
        self.report = report

    def _at_the_end(self, results, on_batch):
        if on_batch and self.report and results:
            on_batch(list(range(len(results))), list(results))
        return results

    def generate(self, requests, progress=None, *, on_batch=None):
        return self._at_the_end(self.inner.generate(requests, progress), on_batch)

    def next_token_logprobs(self, prompts, token_ids, progress=None, *, on_batch=None, shared_prefixes=None):
        return self._at_the_end(self.inner.next_token_logprobs(prompts, token_ids, progress), on_batch)


@pytest.mark.parametrize("reasoning", [True, False])
def test_judgments_are_reported_per_engine_batch_and_once_at_the_end_by_engines_reporting_at_the_end(
        smollm2_engine, reasoning):
    from thinkrank.rerankers.pointwise import Pair
    from thinkrank.types import as_documents

    pairs = [Pair("what do cats eat", d, i) for i, d in enumerate(as_documents(
        ["Cats eat mice.", "Stocks fell sharply on Monday.", "Dogs bark at night."]))]
    saved = smollm2_engine.batch_size
    smollm2_engine.batch_size = 2
    try:
        reports: list[tuple[list[int], list]] = []
        rank1 = Rank1(engine=smollm2_engine, think_budget=8, reasoning=reasoning)
        judged = rank1.judge(pairs, on_judged=lambda idx, js: reports.append((idx, js)))
        assert sorted(len(idx) for idx, _ in reports) == [1, 2]  # one report per engine batch
        assert all(j is judged[i] for idx, js in reports for i, j in zip(idx, js))
        late: list[list[int]] = []
        at_end = Rank1(engine=_EngineReportingAtTheEnd(smollm2_engine), think_budget=8, reasoning=reasoning)
        again = at_end.judge(pairs, on_judged=lambda idx, _: late.append(idx))
        # That engine also ignores shared prefixes (prompts prefilled whole): same scores to rounding.
        assert late == [[0, 1, 2]] and [j.score for j in again] == pytest.approx([j.score for j in judged], abs=LAYOUT_TOL)
    finally:
        smollm2_engine.batch_size = saved


def test_an_engine_that_does_not_report_every_result_is_an_error_not_a_missing_judgment(smollm2_engine):
    from thinkrank.rerankers.pointwise import Pair
    from thinkrank.types import as_documents

    pairs = [Pair("what do cats eat", d, i) for i, d in enumerate(as_documents(["Cats eat mice.", "Dogs bark."]))]
    silent = Rank1(engine=_EngineReportingAtTheEnd(smollm2_engine, report=False), reasoning=False)
    with pytest.raises(RuntimeError, match="did not report 2 of 2 results to on_batch"):
        silent.judge(pairs)


def test_reasoning_off_over_several_queries_equals_plain_forward_passes(smollm2_path, smol_ref):
    # The query prefix is prefilled once per query and shared across batches (batch_size 2) and
    # by a query with a single candidate; every score must still be a plain forward pass's.
    from thinkrank.engines.transformers import TransformersEngine

    engine = TransformersEngine(str(smollm2_path), device="cpu", batch_size=2)
    queries = [(QUERY, DOCS), ("dogs at night", DOCS[1:2]), ("europe", ["France.", DOCS[1]])]
    for (query, docs), ranking in zip(queries, Rank1(engine=engine, reasoning=False).rerank_many(queries)):
        assert len(ranking) == len(docs)
        for j in ranking:
            expected = smol_ref.score(_prompt(query, docs[j.index]) + "\n</think>")
            assert j.score == pytest.approx(expected, abs=LAYOUT_TOL)


def test_the_scoring_rule_is_p_true_over_p_true_plus_p_false_without_overflow():
    from fractions import Fraction

    from thinkrank.rerankers.pointwise import read_answer

    for lt, lf in [(-0.3, -1.2), (-2.5, -0.1), (-1.0, -1.0), (-40.0, -0.01)]:
        read = read_answer({7: lt, 9: lf}, 7, 9)
        p_t, p_f = Fraction(math.exp(lt)), Fraction(math.exp(lf))
        assert read.score == pytest.approx(float(p_t / (p_t + p_f)), rel=1e-15)
        assert (read.answer, read.p_true, read.p_false) == ("true" if lt >= lf else "false", math.exp(lt), math.exp(lf))
    # Log-probabilities far apart: exp() of their difference overflows a plain formula.
    assert read_answer({1: 0.0, 2: -800.0}, 1, 2).score == 1.0
    assert read_answer({1: -800.0, 2: 0.0}, 1, 2).score == 0.0 and read_answer({1: -800.0, 2: 0.0}, 1, 2).answer == "false"
