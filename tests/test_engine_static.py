"""The transformers engine's fixed-shape decode path (``static_cache=True``, ``compile=...``):
the same generations as the default (dynamic-cache) loop, and answers equal to plain forward
passes over the same token ids, with no cache at all."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from thinkrank.engines import GenerationRequest
from thinkrank.engines.transformers import TransformersEngine

from tolerances import LAYOUT_LOGPROB_TOL

HEAD = "Determine if the following passage is relevant to the query.\nQuery: what do cats eat\nPassage: "
PASSAGES = [
    "Cats eat mice and fish.",
    "The stock market fell sharply on Monday after the news from the central bank about rates.",
    "Dogs bark.",
    "Fish swim in the sea, and the sea is wide.",
]
SEA = "Write two sentences about the sea and what lives in it.\n<think>"


def _close(generation) -> str:
    # Rank1's shape of close rule, cut mid-token so the cache must be rolled back past the chain's end.
    text = generation.text
    return text[: max(len(text) - 3, 0)] + "\n</think>"


def _ids(tok) -> tuple[int, int]:
    return tuple(tok.encode(w, add_special_tokens=False)[0] for w in (" true", " false"))  # type: ignore[return-value]


@pytest.fixture(scope="module")
def engines(smollm2_engine):
    """The default engine and a static-cache engine over the same loaded SmolLM2."""
    static = TransformersEngine(smollm2_engine.model, tokenizer=smollm2_engine.tokenizer.hf, device="cpu",
                                static_cache=True)
    return smollm2_engine, static


def _assert_same(plain, static) -> None:
    assert len(plain) == len(static)
    for a, b in zip(plain, static):
        assert (a.token_ids, a.text, a.stop_reason, a.num_tokens, a.prompt_tokens) == \
            (b.token_ids, b.text, b.stop_reason, b.num_tokens, b.prompt_tokens)
        assert (a.answer_logprobs is None) == (b.answer_logprobs is None)
        if a.answer_logprobs is not None:
            assert sorted(a.answer_logprobs) == sorted(b.answer_logprobs)
            assert [b.answer_logprobs[t] for t in a.answer_logprobs] == pytest.approx(list(a.answer_logprobs.values()),
                                                                                      abs=LAYOUT_LOGPROB_TOL)


def _next_logprobs(model, ids: list[int], answer: tuple[int, ...]) -> list[float]:
    """Reference: one plain forward pass over exactly these token ids."""
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1].float(), dim=-1)
    return [float(logprobs[t]) for t in answer]


def _text_logprobs(model, tok, text: str, answer: tuple[int, ...]) -> list[float]:
    return _next_logprobs(model, tok(text).input_ids, answer)


@pytest.mark.parametrize("stop", ["market", "sharp"])  # ends on a token boundary; inside " sharply"
def test_stop_strings_end_where_the_greedy_text_first_holds_them(engines, stop):
    plain_engine, static_engine = engines
    tok, model = plain_engine.tokenizer.hf, plain_engine.model
    answer = _ids(tok)
    prompts = [SEA, HEAD + PASSAGES[1] + "\n<think>"]
    requests = [GenerationRequest(p, 24, (stop,), answer_token_ids=answer) for p in prompts]
    static = static_engine.generate(requests)
    _assert_same(plain_engine.generate(requests), static)
    for prompt, gen in zip(prompts, static):
        ids = tok(prompt, return_tensors="pt").input_ids
        ref = model.generate(ids, max_new_tokens=24, do_sample=False)[0, ids.shape[1]:].tolist()
        n = next((n for n in range(1, len(ref) + 1) if stop in tok.decode(ref[:n])), None)
        if n is None:  # the first prompt never writes it
            assert gen.stop_reason in ("length", "eos") and stop not in gen.text and prompt == SEA
            continue
        text = tok.decode(ref[:n])
        assert (gen.stop_reason, gen.text, gen.token_ids) == ("stop", text[: text.find(stop)], ref[:n])
        if text.endswith(stop):  # on a token boundary: the answer is read in the same pass
            assert gen.answer_logprobs is not None
            expected = _next_logprobs(model, ids[0].tolist() + ref[:n], answer)
            assert [gen.answer_logprobs[t] for t in answer] == pytest.approx(expected, abs=LAYOUT_LOGPROB_TOL)
        else:  # inside a token, no close rule: left to the caller
            assert gen.answer_logprobs is None and stop == "sharp"


def test_budget_cuts_are_closed_from_the_static_buffers_like_a_plain_forward_pass(engines):
    plain_engine, static_engine = engines
    tok, model = plain_engine.tokenizer.hf, plain_engine.model
    answer = _ids(tok)
    prompts = [HEAD + p + "\n<think>" for p in PASSAGES]
    # Mixed budgets (0 included) and a shared query prefix: rows end at different steps.
    requests = [GenerationRequest(p, [0, 5, 9, 13][i], ("</think>",), answer_token_ids=answer, close=_close,
                                  shared_prefix=HEAD) for i, p in enumerate(prompts)]
    static = static_engine.generate(requests)
    _assert_same(plain_engine.generate(requests), static)
    assert [g.stop_reason for g in static] == ["length"] * 4
    for prompt, gen in zip(prompts, static):
        expected = _text_logprobs(model, tok, prompt + _close(gen), answer)
        assert [gen.answer_logprobs[t] for t in answer] == pytest.approx(expected, abs=LAYOUT_LOGPROB_TOL)


def test_end_of_sequence_chains_match_and_are_closed_from_the_buffers(smollm2_path):
    tok = AutoTokenizer.from_pretrained(smollm2_path)
    model = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32).eval()
    model.generation_config.eos_token_id = tok.encode(".", add_special_tokens=False)[0]  # chains end early by EOS
    plain = TransformersEngine(model, tokenizer=tok, device="cpu")
    static = TransformersEngine(model, tokenizer=tok, device="cpu", static_cache=True)
    answer = _ids(tok)
    prompts = [HEAD + p + "\n<think>" for p in PASSAGES]
    requests = [GenerationRequest(p, 40, ("</think>",), answer_token_ids=answer,
                                  close=lambda g: g.text + "\n</think>") for p in prompts]
    gens = static.generate(requests)
    _assert_same(plain.generate(requests), gens)
    assert [g.stop_reason for g in gens] == ["eos"] * 4 and len({g.num_tokens for g in gens}) > 1
    for prompt, gen in zip(prompts, gens):
        expected = _text_logprobs(model, tok, prompt + gen.text + "\n</think>", answer)
        assert [gen.answer_logprobs[t] for t in answer] == pytest.approx(expected, abs=LAYOUT_LOGPROB_TOL)


def test_seeded_sampling_gives_the_same_chains(engines):
    plain_engine, static_engine = engines
    requests = [GenerationRequest(HEAD + p + "\n<think>", 12, ("</think>",), temperature=0.9, seed=7 + i)
                for i, p in enumerate(PASSAGES)]
    static = static_engine.generate(requests)
    _assert_same(plain_engine.generate(requests), static)
    assert len({tuple(g.token_ids) for g in static}) == len(static)  # really sampled, per-row seeds


def test_shared_prefixes_and_mixed_prompt_lengths_across_batches(smollm2_engine):
    tok = smollm2_engine.tokenizer.hf
    answer = _ids(tok)
    other = HEAD.replace("what do cats eat", "stock news today")
    prompts = [HEAD + p + "\n<think>" for p in PASSAGES] + [other + "Markets.\n<think>", other + "Bonds fell.\n<think>"]
    heads = [HEAD] * 4 + [other] * 2
    requests = [GenerationRequest(p, 8 + i, ("</think>",), answer_token_ids=answer, close=_close, shared_prefix=h)
                for i, (p, h) in enumerate(zip(prompts, heads))]
    kw = {"tokenizer": tok, "device": "cpu", "batch_size": 3}  # batches span both queries
    plain = TransformersEngine(smollm2_engine.model, **kw).generate(requests)
    _assert_same(plain, TransformersEngine(smollm2_engine.model, static_cache=True, **kw).generate(requests))


def test_finished_rows_are_compacted_into_power_of_two_batches(smollm2_engine):
    tok = smollm2_engine.tokenizer.hf
    answer = _ids(tok)
    prompts = [HEAD + PASSAGES[i % 4] + "\n<think>" for i in range(12)]
    # Rows end at twelve different steps (budget) and some earlier (a stop string likely to fire).
    requests = [GenerationRequest(p, 1 + i, (".",) if i % 3 == 0 else ("</think>",), answer_token_ids=answer,
                                  close=_close) for i, p in enumerate(prompts)]
    kw = {"tokenizer": tok, "device": "cpu", "batch_size": 12}
    static_engine = TransformersEngine(smollm2_engine.model, static_cache=True, **kw)
    static = static_engine.generate(requests)
    _assert_same(TransformersEngine(smollm2_engine.model, **kw).generate(requests), static)
    assert sorted({b for b, _ in static_engine._static.shapes}, reverse=True) == [12, 8, 4, 2, 1]
    assert len({w for _, w in static_engine._static.shapes}) == 1  # one width for the whole call
    for prompt, gen in zip(prompts, static):
        if gen.stop_reason == "length":
            expected = _text_logprobs(smollm2_engine.model, tok, prompt + _close(gen), answer)
            assert [gen.answer_logprobs[t] for t in answer] == pytest.approx(expected, abs=LAYOUT_LOGPROB_TOL)


def _qwen_requests(tok) -> list[GenerationRequest]:
    answer = _ids(tok)
    prompts = [HEAD + p + "\n<think>" for p in PASSAGES]
    return [GenerationRequest(p, [3, 5, 7, 10][i], ("</think>",), answer_token_ids=answer, close=_close,
                              shared_prefix=HEAD) for i, p in enumerate(prompts)]


def test_the_decode_step_traces_as_one_graph_and_gives_the_same_outputs(tiny_qwen_engine):
    from torch._dynamo.utils import counters

    tok, model = tiny_qwen_engine.tokenizer.hf, tiny_qwen_engine.model
    requests = _qwen_requests(tok)
    compiled = TransformersEngine(model, tokenizer=tok, device="cpu",
                                  compile={"backend": "eager", "fullgraph": True})  # fullgraph: a break raises
    counters.clear()
    gens = compiled.generate(requests)
    _assert_same(tiny_qwen_engine.generate(requests), gens)
    assert not counters["graph_break"]
    shapes = {b for b, _ in compiled._static.shapes}
    assert shapes == {4, 2, 1} and counters["stats"]["unique_graphs"] == len(shapes)  # one graph per shape
    for request, gen in zip(requests, gens):
        expected = _text_logprobs(model, tok, request.prompt + _close(gen), request.answer_token_ids)
        assert [gen.answer_logprobs[t] for t in request.answer_token_ids] == pytest.approx(expected, abs=LAYOUT_LOGPROB_TOL)
    counters.clear()
    _assert_same(gens, compiled.generate(requests))
    assert counters["stats"]["unique_graphs"] == 0  # a second call of the same shapes compiles nothing


@pytest.mark.slow
def test_the_inductor_compiled_step_on_cpu_gives_the_same_outputs(tiny_qwen_engine):
    tok, model = tiny_qwen_engine.tokenizer.hf, tiny_qwen_engine.model
    # Equal budgets and no stop in sight (random weights): one batch shape, one compilation.
    requests = [GenerationRequest(r.prompt, 6, r.stop, answer_token_ids=r.answer_token_ids, close=r.close)
                for r in _qwen_requests(tok)[:2]]
    compiled = TransformersEngine(model, tokenizer=tok, device="cpu", compile=True)
    gens = compiled.generate(requests)
    assert {b for b, _ in compiled._static.shapes} == {2}
    _assert_same(tiny_qwen_engine.generate(requests), gens)


def test_spec_passes_static_and_compile_options_to_the_engine(tiny_qwen_path):
    from thinkrank.errors import InvalidInputError
    from thinkrank.rerankers import RerankerSpec, build_reranker

    spec = RerankerSpec(model=str(tiny_qwen_path), engine="transformers",
                        engine_options={"device": "cpu", "static_cache": True})
    engine = build_reranker(spec).engine
    assert engine._static is not None and not engine._static.compiled
    compiled = build_reranker(spec.replace(engine_options={"device": "cpu", "compile": True})).engine
    assert compiled._static is not None and compiled._static.compiled  # compile implies the static cache
    with pytest.raises(InvalidInputError, match="compile"):
        RerankerSpec(model=str(tiny_qwen_path), engine="transformers", engine_options={"compile": "yes"})
    with pytest.raises(InvalidInputError, match="static_cache"):
        RerankerSpec(model=str(tiny_qwen_path), engine="openai", engine_options={"static_cache": True})
