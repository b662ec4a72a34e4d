"""The openai engine over real HTTP against a real OpenAI-compatible server (thinkrank's test
server running SmolLM2), checked against the transformers engine and plain forward passes."""

from __future__ import annotations

import math
import socket
import sys
import time

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from thinkrank import Rank1
from thinkrank.engines import GenerationRequest, load_engine
from thinkrank.engines.openai import OpenAIEngine
from thinkrank.errors import EngineError, InvalidInputError, MissingExtraError, ModelLoadError
from thinkrank.testing.openai_server import EngineServer, ServerOptions, serving

from tolerances import LAYOUT_LOGPROB_TOL, LAYOUT_TOL

MODEL = "smollm2-test"
FEW_SHOT = "Q: capital of Italy?\n<think>Rome.</think>\nQ: capital of Spain?\n<think>Madrid.</think>\nQ: capital of France?\n<think>"
RANK1_FEW_SHOT = (
    "FILL_QUERY_HERE\nPassage: Paris is the capital of France.\n<think>The passage names the capital.</think> true\n"
    "Query: FILL_QUERY_HERE\nPassage: Bananas are yellow.\n<think>The passage is about fruit.</think> false\n"
    "Query: FILL_QUERY_HERE"
)
QUERY = "what is the capital of france"
DOCS = ["The capital of France is Paris.", "Dogs bark loudly at night when they hear strangers walking past."]


@pytest.fixture(scope="module")
def server(smollm2_engine):
    app = EngineServer(smollm2_engine, MODEL)
    with serving(app.app) as url:
        yield app, url


@pytest.fixture(scope="module")
def engine(server, smollm2_path):
    eng = OpenAIEngine(MODEL, base_url=server[1], tokenizer=str(smollm2_path), concurrency=4)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def hf(smollm2_path):
    tok = AutoTokenizer.from_pretrained(smollm2_path)
    model = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32).eval()
    return tok, model


def _plain_logprobs(hf, text, ids):
    tok, model = hf
    with torch.no_grad():
        logits = model(tok(text, return_tensors="pt").input_ids).logits[0, -1].float()
    lp = torch.log_softmax(logits, dim=-1)
    return [float(lp[t]) for t in ids]


def _chat_prompt(engine):
    return engine.apply_chat_template([{"role": "user", "content": "Reply with one word: yes or no. Is water wet?"}])


# ---- generation ---------------------------------------------------------------------------
def test_greedy_generation_over_http_equals_the_transformers_engine(engine, smollm2_engine):
    requests = [
        GenerationRequest("The capital of France is", 12),  # runs out of budget
        GenerationRequest(FEW_SHOT, 12, ("</think>",)),  # closes its chain with the stop string
        # ends with the end-of-sequence token although a stop string was asked for
        GenerationRequest(_chat_prompt(engine), 20, ("</think>",)),
    ]
    got = engine.generate(requests)
    ref = smollm2_engine.generate(requests)
    assert [g.stop_reason for g in got] == ["length", "stop", "eos"]
    assert got[1].text == "Paris."
    for g, r in zip(got, ref):
        assert (g.text, g.stop_reason, g.num_tokens, g.prompt_tokens) == (r.text, r.stop_reason, r.num_tokens, r.prompt_tokens)
        assert g.answer_logprobs is None  # answers are read by next_token_logprobs instead


def test_sampling_with_a_seed_is_reproducible_over_http(engine, smollm2_engine):
    request = GenerationRequest("Once upon a time", 10, temperature=1.0, seed=11)
    a, b = engine.generate([request, request])
    assert a.text == b.text == smollm2_engine.generate([request])[0].text
    assert a.text != engine.generate([GenerationRequest("Once upon a time", 10)])[0].text


def test_zero_budget_needs_no_request_and_negative_budget_is_refused(engine, server):
    before = server[0].stats.requests
    gen = engine.generate([GenerationRequest("Hello there", 0)])[0]
    assert (gen.text, gen.stop_reason, gen.num_tokens) == ("", "length", 0)
    assert gen.prompt_tokens == len(engine.tokenizer.encode_prompt("Hello there"))
    assert server[0].stats.requests == before
    with pytest.raises(InvalidInputError, match="max_tokens"):
        engine.generate([GenerationRequest("Hello", -1)])


def test_chat_mode_sends_the_messages_to_chat_completions(server, engine, hf, smollm2_path, smollm2_engine):
    app, url = server
    chat = OpenAIEngine(MODEL, base_url=url, tokenizer=str(smollm2_path), chat=True)
    messages = ({"role": "user", "content": "Reply with one word: yes or no. Is water wet?"},)
    before = dict(app.stats.paths)
    gen = chat.generate([GenerationRequest("", 20, messages=messages)])[0]
    assert app.stats.paths["/v1/chat/completions"] == before.get("/v1/chat/completions", 0) + 1
    rendered = hf[0].apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    ref = smollm2_engine.generate([GenerationRequest(rendered, 20)])[0]
    assert (gen.text, gen.stop_reason) == (ref.text, "eos")
    # without chat mode the same messages are rendered here and sent as one completion prompt
    plain = engine.generate([GenerationRequest("", 20, messages=messages)])[0]
    assert app.stats.paths["/v1/completions"] == before.get("/v1/completions", 0) + 1
    assert (plain.text, plain.stop_reason, plain.prompt_tokens) == (ref.text, "eos", ref.prompt_tokens)
    # a chat API has no portable way to start the assistant's turn with given text: refused before any request
    with pytest.raises(InvalidInputError, match="assistant_prefix"):
        chat.generate([GenerationRequest("", 4, messages=messages, assistant_prefix="Yes")])
    assert app.stats.paths["/v1/chat/completions"] == before.get("/v1/chat/completions", 0) + 1


# ---- exact answer log-probs ---------------------------------------------------------------
def test_next_token_logprobs_are_renormalised_and_their_differences_exact(engine, hf):
    tok, _ = hf
    ids = [tok.encode(w, add_special_tokens=False)[0] for w in (" true", " false")]
    prompts = [FEW_SHOT + "Paris.</think>", "The sky is blue: true or false? Answer:"]
    got = engine.next_token_logprobs(prompts, ids)
    for prompt, lp in zip(prompts, got):
        assert math.exp(lp[ids[0]]) + math.exp(lp[ids[1]]) == pytest.approx(1.0, abs=1e-6)
        plain = _plain_logprobs(hf, prompt, ids)
        assert lp[ids[0]] - lp[ids[1]] == pytest.approx(plain[0] - plain[1], abs=LAYOUT_LOGPROB_TOL)


def test_a_raw_logprob_server_like_vllm_v1_gives_the_same_values(smollm2_engine, smollm2_path, hf):
    # The raw top-2 after this prompt holds neither answer word, so the engine must force the
    # missing one in a second request rather than read it from a list that lacks it.
    tok, _ = hf
    ids = [tok.encode(w, add_special_tokens=False)[0] for w in (" true", " false")]
    prompt = "The capital of France is"
    app = EngineServer(smollm2_engine, MODEL, ServerOptions(logprobs_mode="raw"))
    with serving(app.app) as url:
        got = OpenAIEngine(MODEL, base_url=url, tokenizer=str(smollm2_path)).next_token_logprobs([prompt], ids)[0]
    assert app.stats.requests == 2
    plain = _plain_logprobs(hf, prompt, ids)
    assert got[ids[0]] - got[ids[1]] == pytest.approx(plain[0] - plain[1], abs=LAYOUT_LOGPROB_TOL)


def test_a_server_that_ignores_logit_bias_is_an_error_not_a_score(smollm2_engine, smollm2_path):
    app = EngineServer(smollm2_engine, MODEL, ServerOptions(honour_logit_bias=False))
    with serving(app.app) as url:
        eng = OpenAIEngine(MODEL, base_url=url, tokenizer=str(smollm2_path))
        ids = [eng.tokenizer.encode(" true")[0], eng.tokenizer.encode(" false")[0]]
        with pytest.raises(EngineError, match="ignored the restriction"):
            eng.next_token_logprobs(["The capital of France is"], ids)


def test_rank1_scores_over_http_equal_the_transformers_engine(engine, smollm2_engine):
    over_http = Rank1(engine=engine, think_budget=40, prompt=RANK1_FEW_SHOT).rerank(QUERY, DOCS)
    local = Rank1(engine=smollm2_engine, think_budget=40, prompt=RANK1_FEW_SHOT).rerank(QUERY, DOCS)
    assert [j.doc_id for j in over_http] == [j.doc_id for j in local]
    for a, b in zip(over_http, local):
        assert a.reasoning == b.reasoning and a.forced == b.forced
        assert a.score == pytest.approx(b.score, abs=LAYOUT_TOL)
    forced = Rank1(engine=engine, think_budget=8).rerank(QUERY, DOCS[:1])[0]
    assert forced.forced
    local_forced = Rank1(engine=smollm2_engine, think_budget=8).rerank(QUERY, DOCS[:1])[0]
    assert forced.score == pytest.approx(local_forced.score, abs=LAYOUT_TOL)


# ---- concurrency, retries, errors ---------------------------------------------------------
def test_requests_run_concurrently_up_to_the_limit_and_come_back_in_order(smollm2_engine, smollm2_path):
    prompts = [f"Count: {i}, {i + 1}," for i in range(6)]
    requests = [GenerationRequest(p, 3) for p in prompts]
    expected = [g.text for g in smollm2_engine.generate(requests)]
    for concurrency, check in ((4, lambda n: n >= 2), (1, lambda n: n == 1)):
        app = EngineServer(smollm2_engine, MODEL)
        with serving(app.app) as url:
            done = []
            eng = OpenAIEngine(MODEL, base_url=url, tokenizer=str(smollm2_path), concurrency=concurrency)
            got = eng.generate(requests, progress=done.append)
        assert [g.text for g in got] == expected
        assert sum(done) == len(requests)
        assert check(app.stats.max_in_flight), (concurrency, app.stats.max_in_flight)


def test_finished_requests_are_reported_a_concurrency_group_at_a_time(engine, smollm2_engine):
    requests = [GenerationRequest(f"Count: {i}, {i + 1},", 3) for i in range(6)]
    groups: list[tuple[list[int], list]] = []
    got = engine.generate(requests, on_batch=lambda idx, res: groups.append((idx, res)))
    assert [len(idx) for idx, _ in groups] == [4, 2]  # concurrency 4: each full group, then the rest
    assert sorted(i for idx, _ in groups for i in idx) == list(range(6))
    assert all(r is got[i] for idx, res in groups for i, r in zip(idx, res))
    assert [g.text for g in got] == [g.text for g in smollm2_engine.generate(requests)]
    scored: list[list[int]] = []
    answer = [smollm2_engine.tokenizer.encode(w)[0] for w in (" true", " false")]
    engine.next_token_logprobs(["a", "b", "c"], answer, on_batch=lambda idx, _: scored.append(sorted(idx)))
    assert scored == [[0, 1, 2]]


@pytest.mark.parametrize("status", [429, 503])
def test_failed_requests_are_retried_until_they_succeed(smollm2_engine, smollm2_path, status):
    app = EngineServer(smollm2_engine, MODEL, ServerOptions(fail_first=2, fail_status=status))
    with serving(app.app) as url:
        # server_stops=True: no stop-reporting probe, so every request counted here is the generation's
        eng = OpenAIEngine(MODEL, base_url=url, tokenizer=str(smollm2_path), max_retries=3, server_stops=True)
        gen = eng.generate([GenerationRequest(FEW_SHOT, 12, ("</think>",))])[0]
    assert gen.text == "Paris."
    assert (app.stats.failed, app.stats.requests) == (2, 3)


def test_retries_exhausted_give_a_clear_error(smollm2_engine, smollm2_path):
    app = EngineServer(smollm2_engine, MODEL, ServerOptions(fail_first=100, fail_status=500))
    with serving(app.app) as url:
        eng = OpenAIEngine(MODEL, base_url=url, tokenizer=str(smollm2_path), max_retries=2)
        with pytest.raises(EngineError, match=r"answered HTTP 500 .* after 2 retries"):
            eng.generate([GenerationRequest("Hello", 4)])
    assert app.stats.requests == 3


def test_an_unreachable_server_fails_fast_with_the_url(smollm2_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    eng = OpenAIEngine(MODEL, base_url=url, tokenizer=str(smollm2_path), max_retries=1, timeout=5)
    start = time.monotonic()
    with pytest.raises(EngineError, match=f"{url} could not be reached .*--base-url"):
        eng.generate([GenerationRequest("Hello", 4)])
    assert time.monotonic() - start < 10


def test_a_model_the_server_does_not_serve_is_a_clear_error(server, smollm2_path):
    eng = OpenAIEngine("other-model", base_url=server[1], tokenizer=str(smollm2_path))
    with pytest.raises(EngineError, match=r"HTTP 404 .*'other-model'.*name the server serves"):
        eng.generate([GenerationRequest("Hello", 4)])


def test_construction_errors_say_what_to_do(monkeypatch, smollm2_path):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(InvalidInputError, match="base_url.*OPENAI_BASE_URL"):
        OpenAIEngine(MODEL, tokenizer=str(smollm2_path))
    with pytest.raises(ModelLoadError, match="tokenizer locally.*--tokenizer"):
        OpenAIEngine("./no/such/model", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(InvalidInputError, match="concurrency"):
        OpenAIEngine(MODEL, base_url="http://127.0.0.1:9/v1", tokenizer=str(smollm2_path), concurrency=0)
    monkeypatch.setitem(sys.modules, "openai", None)  # as if the extra were not installed
    with pytest.raises(MissingExtraError, match=r"thinkrank\[openai\]"):
        load_engine(MODEL, "openai", base_url="http://127.0.0.1:9/v1")


def test_base_url_and_key_come_from_the_environment(monkeypatch, server, smollm2_path):
    monkeypatch.setenv("OPENAI_BASE_URL", server[1])
    monkeypatch.setenv("OPENAI_API_KEY", "secret-key")
    eng = load_engine(MODEL, "openai", tokenizer=str(smollm2_path))
    assert (eng.name, eng.model_name, eng.base_url) == ("openai", MODEL, server[1])
    assert eng.client.api_key == "secret-key"
    assert eng.generate([GenerationRequest(FEW_SHOT, 12, ("</think>",))])[0].text == "Paris."
