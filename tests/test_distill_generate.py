"""Teacher trace generation over real HTTP: the API teacher (official openai client) against
real servers (a scripted FastAPI app for reasoning formats and failures, thinkrank's test
server over SmolLM2), the resumable store, the OpenAI batch format and the engine teacher."""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from thinkrank.distill.api_teacher import APITeacher
from thinkrank.distill.batch import BatchResults, write_batch_requests
from thinkrank.distill.engine_teacher import EngineTeacher
from thinkrank.distill.generate import collect_traces, generate_traces, make_jobs
from thinkrank.distill.records import LabeledPair, Trace
from thinkrank.distill.store import TraceStore
from thinkrank.distill.teacher import TeacherSettings
from thinkrank.engines.base import GenerationRequest
from thinkrank.errors import EngineError, InvalidInputError
from thinkrank.prompts.rank1 import build_rank1_prompt
from thinkrank.testing.openai_server import EngineServer, ServerOptions, serving

from tolerances import LAYOUT_TOL

MODEL = "teacher-test"
PAIRS = [
    LabeledPair(f"q{i}", f"d{i}", f"is claim {i} supported", f"Passage {i}: evidence number {i} about the claim.", i % 2 == 0,
                "positive" if i % 2 == 0 else "negative")
    for i in range(6)
]
Reply = tuple[int, dict, dict]


def chat_reply(content: str, reasoning: str | None = None, finish: str = "stop") -> Reply:
    message = {"role": "assistant", "content": content}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    return 200, {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": MODEL,
                 "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                 "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}, {}


def error_reply(status: int, headers: dict | None = None) -> Reply:
    return status, {"error": {"message": f"scripted {status}", "type": "test", "code": status}}, headers or {}


def default_script(prompt: str, attempt: int) -> Reply:
    """The chain names the prompt's passage number; even pairs true, odd false."""
    n = int(prompt.split("Passage: Passage ")[1][0])
    return chat_reply("true" if n % 2 == 0 else "false", f"thinking about passage {n}")


class Scripted:
    """A real OpenAI-compatible server whose replies a test scripts: ``script(prompt, attempt)``
    where ``attempt`` counts earlier requests for the same prompt. Records every request."""

    def __init__(self, script: Callable[[str, int], Reply] = default_script) -> None:
        self.script = script
        self.requests: list[tuple[float, str, dict]] = []  # (start time, path, body)
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.app = FastAPI()

        async def handle(request: Request) -> JSONResponse:
            start = time.monotonic()
            body = await request.json()
            prompt = body["prompt"] if "prompt" in body else body["messages"][-1]["content"]
            with self._lock:
                attempt = self._seen[prompt]
                self._seen[prompt] += 1
                self.requests.append((start, request.url.path, body))
            status, payload, headers = self.script(prompt, attempt)
            return JSONResponse(payload, status_code=status, headers=headers)

        self.app.post("/v1/chat/completions")(handle)
        self.app.post("/v1/completions")(handle)

    @property
    def prompts(self) -> list[str]:
        return [b["prompt"] if "prompt" in b else b["messages"][-1]["content"] for _, _, b in self.requests]


@pytest.fixture
def scripted():
    server = Scripted()
    with serving(server.app) as url:
        yield server, url


def teacher(url: str, **options) -> APITeacher:
    options.setdefault("backoff", 0.01)
    return APITeacher(TeacherSettings(options.pop("model", MODEL), api=options.pop("api", "chat")), base_url=url,
                      api_key="test-key", **options)


# ---- the API teacher ----------------------------------------------------------------------
def test_the_server_receives_the_rank1_prompt_with_the_paper_defaults(scripted, tmp_path):
    server, url = scripted
    t = teacher(url, concurrency=2)
    with TraceStore(tmp_path / "t.sqlite") as store:
        report = generate_traces(make_jobs(PAIRS[:3], t.settings), t, store)
    assert report.generated == 3 and report.failed == 0
    bodies = sorted((b for _, _, b in server.requests), key=lambda b: b["messages"][0]["content"])
    for pair, body in zip(PAIRS[:3], bodies):
        assert body["model"] == MODEL
        assert body["temperature"] == 0.3 and body["max_tokens"] == 1000
        assert body["messages"] == [{"role": "user", "content": build_rank1_prompt(pair.query, pair.passage)}]
        assert "seed" not in body
    assert {p for _, p, _ in server.requests} == {"/v1/chat/completions"}


def test_reasoning_is_read_from_reasoning_content_or_from_think_tags(tmp_path):
    replies = {
        0: chat_reply("**True**.", reasoning="  chain from the reasoning field  "),
        1: chat_reply("<think>a chain inside tags</think>\n\nAnswer: false"),
        2: chat_reply("a chain whose opening tag was in the prompt</think> true"),
        3: chat_reply("no chain at all, just true"),
    }
    server = Scripted(lambda prompt, attempt: replies[int(prompt.split("Passage: Passage ")[1][0])])
    with serving(server.app) as url, TraceStore(tmp_path / "t.sqlite") as store:
        t = teacher(url)
        generate_traces(make_jobs(PAIRS[:4], t.settings), t, store)
        records, missing = collect_traces(PAIRS[:4], store, t.settings)
    assert missing == 0
    got = [(r["reasoning"], r["answer_text"]) for r in records]
    assert got == [
        ("chain from the reasoning field", "**True**."),
        ("a chain inside tags", "Answer: false"),
        ("a chain whose opening tag was in the prompt", "true"),
        ("", "no chain at all, just true"),
    ]
    assert [r["prompt_tokens"] for r in records] == [11] * 4 and records[0]["finish_reason"] == "stop"
    assert [r["qid"] for r in records] == ["q0", "q1", "q2", "q3"]
    assert records[0]["prompt"] == build_rank1_prompt(PAIRS[0].query, PAIRS[0].passage)


def test_an_unclosed_chain_in_content_gives_no_answer():
    from thinkrank.distill.answers import parse_answer, split_reasoning

    chain, answer = split_reasoning("<think>the passage is true to the claim but then")
    assert answer == "" and parse_answer(answer) is None
    assert chain == "the passage is true to the claim but then"


def test_a_429_is_retried_after_the_servers_retry_after(tmp_path):
    def script(prompt: str, attempt: int) -> Reply:
        return error_reply(429, {"retry-after": "1"}) if attempt == 0 else default_script(prompt, attempt)

    server = Scripted(script)
    with serving(server.app) as url, TraceStore(tmp_path / "t.sqlite") as store:
        t = teacher(url, backoff=0.01, max_backoff=0.05)
        report = generate_traces(make_jobs(PAIRS[:1], t.settings), t, store)
        assert store.count() == 1
    assert report.generated == 1 and report.failed == 0
    assert t.retries == 1 and len(server.requests) == 2
    gap = server.requests[1][0] - server.requests[0][0]
    assert gap >= 0.9  # Retry-After: 1 s, although the teacher's own backoff is 0.01-0.05 s


def test_500s_are_retried_and_counted_then_the_job_fails_and_is_left_for_the_next_run(tmp_path):
    def script(prompt: str, attempt: int) -> Reply:
        if "Passage 0" in prompt:
            return error_reply(500) if attempt < 2 else default_script(prompt, attempt)
        if "Passage 1" in prompt:
            return error_reply(502)  # never recovers
        return default_script(prompt, attempt)

    server = Scripted(script)
    with serving(server.app) as url, TraceStore(tmp_path / "t.sqlite") as store:
        t = teacher(url, max_retries=3, concurrency=2)
        jobs = make_jobs(PAIRS[:3], t.settings)
        report = generate_traces(jobs, t, store)
        per_prompt = Counter(server.prompts)
        assert per_prompt[jobs[0].prompt] == 3 and per_prompt[jobs[1].prompt] == 4 and per_prompt[jobs[2].prompt] == 1
        assert t.retries == 2 + 3
        assert (report.generated, report.failed, report.remaining) == (2, 1, 1)
        assert "q1/d1" in report.errors[0] and "502" in report.errors[0]
        assert store.existing(j.key for j in jobs) == {jobs[0].key, jobs[2].key}


def test_a_401_stops_the_run_without_retrying(tmp_path):
    server = Scripted(lambda prompt, attempt: error_reply(401))
    with serving(server.app) as url, TraceStore(tmp_path / "t.sqlite") as store:
        t = teacher(url, concurrency=1, max_retries=5)
        with pytest.raises(EngineError, match="401"):
            generate_traces(make_jobs(PAIRS, t.settings), t, store)
        assert store.count() == 0
    assert t.retries == 0
    assert len(server.requests) <= 4 * 1  # at most the queued jobs, each tried once, never retried


def test_the_rate_limit_spaces_request_starts(tmp_path):
    server = Scripted()
    with serving(server.app) as url, TraceStore(tmp_path / "t.sqlite") as store:
        t = teacher(url, concurrency=6, rpm=300)  # one start every 0.2 s
        report = generate_traces(make_jobs(PAIRS, t.settings), t, store)
    assert report.generated == 6
    starts = sorted(s for s, _, _ in server.requests)
    # unlimited, six threads would start together; paced, the six starts span >= 5 intervals
    assert starts[-1] - starts[0] >= 5 * 0.2 * 0.75
    assert min(b - a for a, b in zip(starts, starts[1:])) >= 0.2 * 0.5


def test_a_second_run_requests_nothing_already_stored(scripted, tmp_path):
    server, url = scripted
    t = teacher(url)
    jobs = make_jobs(PAIRS + PAIRS[:2], t.settings)  # duplicates share one prompt
    assert len(jobs) == len(PAIRS)
    with TraceStore(tmp_path / "t.sqlite") as store:
        first = generate_traces(jobs, t, store)
    assert (first.prompts, first.cached, first.generated) == (6, 0, 6)
    assert len(server.requests) == 6
    with TraceStore(tmp_path / "t.sqlite") as store:  # reopened: the traces are on disk
        second = generate_traces(make_jobs(PAIRS, t.settings), t, store)
    assert (second.prompts, second.cached, second.generated, second.remaining) == (6, 6, 0, 0)
    assert len(server.requests) == 6
    # another teacher setting is another set of traces
    hotter = APITeacher(TeacherSettings(MODEL, temperature=0.6), base_url=url, api_key="k")
    with TraceStore(tmp_path / "t.sqlite") as store:
        third = generate_traces(make_jobs(PAIRS[:2], hotter.settings), hotter, store)
    assert (third.cached, third.generated) == (0, 2) and server.requests[-1][2]["temperature"] == 0.6


def test_an_interrupted_run_is_continued_and_only_the_missing_prompts_are_sent(tmp_path):
    state = {"broken": True}

    def script(prompt: str, attempt: int) -> Reply:
        n = int(prompt.split("Passage: Passage ")[1][0])
        if state["broken"] and n >= 3:
            return error_reply(401)  # e.g. the key expired mid-run: the run stops
        return default_script(prompt, attempt)

    server = Scripted(script)
    with serving(server.app) as url:
        t = teacher(url, concurrency=1)
        jobs = make_jobs(PAIRS, t.settings)
        with TraceStore(tmp_path / "t.sqlite") as store:
            with pytest.raises(EngineError):
                generate_traces(jobs, t, store)
            stored = store.existing(j.key for j in jobs)
        assert stored == {j.key for j in jobs[:3]}  # every trace finished before the stop was kept
        sent_before = len(server.requests)
        state["broken"] = False
        with TraceStore(tmp_path / "t.sqlite") as store:
            report = generate_traces(jobs, t, store)
            assert store.count() == 6
    assert (report.cached, report.generated) == (3, 3)
    assert sorted(server.prompts[sent_before:]) == sorted(j.prompt for j in jobs[3:])


def test_the_completions_api_continues_after_think(scripted, tmp_path):
    server, url = scripted
    server.script = lambda prompt, attempt: (200, {
        "id": "cmpl-1", "object": "text_completion", "created": 0, "model": MODEL,
        "choices": [{"index": 0, "text": " the claim matches\n</think> true", "finish_reason": "stop"}]}, {})
    t = teacher(url, api="completions")
    with TraceStore(tmp_path / "t.sqlite") as store:
        generate_traces(make_jobs(PAIRS[:1], t.settings), t, store)
        records, _ = collect_traces(PAIRS[:1], store, t.settings)
    path, body = server.requests[0][1:]
    assert path == "/v1/completions" and body["prompt"] == build_rank1_prompt(PAIRS[0].query, PAIRS[0].passage)
    assert (records[0]["reasoning"], records[0]["answer_text"]) == ("the claim matches", "true")


@pytest.mark.slow
def test_the_api_teacher_against_the_smollm2_server(smollm2_engine, tmp_path):
    app = EngineServer(smollm2_engine, "smol", ServerOptions(fail_first=2, fail_status=503, retry_after_ms=10))
    with serving(app.app) as url, TraceStore(tmp_path / "t.sqlite") as store:
        t = APITeacher(TeacherSettings("smol", max_tokens=6, temperature=0.0), base_url=url, concurrency=1, backoff=0.01)
        report = generate_traces(make_jobs(PAIRS[:2], t.settings), t, store)
        records, missing = collect_traces(PAIRS[:2], store, t.settings)
    assert (report.generated, report.failed, missing) == (2, 0, 0)
    assert t.retries == 2 and app.stats.failed == 2 and app.stats.requests == 4
    for record in records:  # the real model's greedy reply, as the engine writes it for the chat prompt
        chat = smollm2_engine.apply_chat_template([{"role": "user", "content": record["prompt"]}])
        expected = smollm2_engine.generate([GenerationRequest(chat, 6)])[0]
        assert record["answer_text"] == expected.text.strip()
        assert record["completion_tokens"] == expected.num_tokens
        assert record["finish_reason"] == "length"


def test_bad_teacher_options_are_refused():
    with pytest.raises(InvalidInputError):
        TeacherSettings("m", api="responses")
    with pytest.raises(InvalidInputError):
        TeacherSettings("m", max_tokens=0)
    with pytest.raises(InvalidInputError):
        APITeacher(TeacherSettings("m", api="engine"), base_url="http://localhost:1/v1")
    with pytest.raises(InvalidInputError):
        APITeacher(TeacherSettings("m"), base_url="http://localhost:1/v1", concurrency=0)
    with pytest.raises(InvalidInputError, match="unknown prompt"):
        make_jobs(PAIRS, TeacherSettings("m"), template="no-such-dataset")


# ---- the batch format -----------------------------------------------------------------------
def test_batch_requests_are_written_for_the_missing_prompts_and_results_are_stored(tmp_path):
    settings = TeacherSettings(MODEL, seed=3, extra={"top_p": 0.95})
    jobs = make_jobs(PAIRS, settings, template="scifact")
    with TraceStore(tmp_path / "t.sqlite") as store:
        # two prompts were answered before
        digest = store.register(settings.as_dict())
        for job in jobs[:2]:
            store.put(job.key, Trace("old chain", "true"), settings=digest)
        have = store.existing(j.key for j in jobs)
        n = write_batch_requests([j for j in jobs if j.key not in have], settings, tmp_path / "requests.jsonl")
        lines = [json.loads(x) for x in (tmp_path / "requests.jsonl").read_text().splitlines()]
        assert n == len(lines) == 4
        for job, line in zip(jobs[2:], lines):
            assert set(line) == {"custom_id", "method", "url", "body"}
            assert (line["custom_id"], line["method"], line["url"]) == (job.key, "POST", "/v1/chat/completions")
            prompt = build_rank1_prompt(job.pair.query, job.pair.passage, template="scifact")
            assert prompt.startswith("Determine if") and "Claim: is claim" in prompt
            assert line["body"] == {"model": MODEL, "messages": [{"role": "user", "content": prompt}],
                                    "temperature": 0.3, "max_tokens": 1000, "seed": 3, "top_p": 0.95}

        # the provider answers in its own order, with one failure and one line of another file
        results = []
        for i, line in enumerate(reversed(lines)):
            ok = {"status_code": 200, "request_id": f"r{i}", "body": chat_reply(f"<think>batch chain {i}</think> false")[1]}
            results.append({"id": f"b{i}", "custom_id": line["custom_id"], "response": ok, "error": None})
        results[1] = {"id": "b1", "custom_id": results[1]["custom_id"], "response": None,
                      "error": {"code": "server_error", "message": "boom"}}
        results.append({"id": "bx", "custom_id": "not-a-key", "response": {"status_code": 200, "body": {}}, "error": None})
        (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))

        reader = BatchResults(settings, [tmp_path / "results.jsonl"])
        report = generate_traces(jobs, reader, store)
        assert (report.cached, report.generated, report.failed) == (2, 3, 1)
        assert reader.unknown == 1 and reader.read == 5
        records, missing = collect_traces(PAIRS, store, settings, template="scifact")
        assert missing == 1
        by_key = {r["key"]: r for r in records}
        for i, line in enumerate(reversed(lines)):
            if i != 1:
                assert by_key[line["custom_id"]]["reasoning"] == f"batch chain {i}"
        # the next request file holds only the prompt whose result failed
        have = store.existing(j.key for j in jobs)
        write_batch_requests([j for j in jobs if j.key not in have], settings, tmp_path / "again.jsonl")
        again = [json.loads(x)["custom_id"] for x in (tmp_path / "again.jsonl").read_text().splitlines()]
        assert again == [results[1]["custom_id"]]


# ---- the engine teacher -------------------------------------------------------------------
@pytest.mark.slow
def test_the_engine_teacher_writes_traces_with_smollm2(smollm2_engine, tmp_path):
    pairs = PAIRS[:2]
    t = EngineTeacher(smollm2_engine, temperature=0.0, max_tokens=8, force_answer=True, chunk_size=2)
    assert t.settings.api == "engine" and t.settings.max_tokens == 8
    with TraceStore(tmp_path / "t.sqlite") as store:
        report = generate_traces(make_jobs(pairs, t.settings), t, store)
        records, missing = collect_traces(pairs, store, t.settings)
        again = generate_traces(make_jobs(pairs, t.settings), t, store)
    assert (report.generated, missing, again.generated, again.cached) == (2, 0, 0, 2)
    true_id, false_id = smollm2_engine.tokenizer.encode(" true")[0], smollm2_engine.tokenizer.encode(" false")[0]
    for record in records:
        prompt = build_rank1_prompt(record["query"], record["passage"])
        gen = smollm2_engine.generate([GenerationRequest(prompt, 8, ("</think>",))])[0]
        if gen.stop_reason == "stop":
            context, finish = prompt + gen.text + "</think>", "stop"
        else:
            # The released rule: strip, cut after the last . ! or ? unless it ends with one, strip.
            chain = gen.text.rstrip()
            last = max(chain.rfind("."), chain.rfind("!"), chain.rfind("?"))
            if not chain.endswith((".", "!", "?")) and last != -1:
                chain = chain[: last + 1]
            context, finish = prompt + "\n" + chain.strip() + "\n</think>", "forced"
        lp = smollm2_engine.next_token_logprobs([context], [true_id, false_id])[0]
        assert record["finish_reason"] == finish
        assert record["answer_text"] == ("true" if lp[true_id] >= lp[false_id] else "false")
        assert record["extra"]["p_true"] == pytest.approx(1 / (1 + math.exp(lp[false_id] - lp[true_id])), abs=LAYOUT_TOL)


@pytest.mark.slow
def test_the_engine_teacher_reads_forced_answers_with_the_generation_not_in_a_second_pass(smollm2_engine):
    """A cut chain's forced answer comes from the engine's close (the chain's own KV cache on
    the transformers engine): no second pass over prompt + chain, the same value as that pass."""
    calls: list[list[str]] = []

    class Counting:
        def __getattr__(self, name):
            return getattr(smollm2_engine, name)

        def next_token_logprobs(self, prompts, token_ids, progress=None, **kw):
            calls.append(list(prompts))
            return smollm2_engine.next_token_logprobs(prompts, token_ids, progress, **kw)

    t = EngineTeacher(Counting(), temperature=0.0, max_tokens=4, force_answer=True)
    out = list(t.run(make_jobs(PAIRS[:2], t.settings)))
    assert [trace.finish_reason for _, trace in out] == ["forced", "forced"]  # 4 tokens never close a chain
    assert calls == []
    true_id, false_id = smollm2_engine.tokenizer.encode(" true")[0], smollm2_engine.tokenizer.encode(" false")[0]
    for job, trace in out:
        gen = smollm2_engine.generate([GenerationRequest(job.prompt, 4, ("</think>",))])[0]
        chain = gen.text.rstrip()  # the released rule, restated
        last = max(chain.rfind("."), chain.rfind("!"), chain.rfind("?"))
        if not chain.endswith((".", "!", "?")) and last != -1:
            chain = chain[: last + 1]
        lp = smollm2_engine.next_token_logprobs([job.prompt + "\n" + chain.strip() + "\n</think>"],
                                                [true_id, false_id])[0]
        assert trace.extra["p_true"] == pytest.approx(1 / (1 + math.exp(lp[false_id] - lp[true_id])), abs=LAYOUT_TOL)


@pytest.mark.slow
def test_the_engine_teacher_without_force_answer_leaves_cut_chains_unanswered(smollm2_engine):
    t = EngineTeacher(smollm2_engine, temperature=0.0, max_tokens=4)
    jobs = make_jobs(PAIRS[:2], t.settings)
    out = list(t.run(jobs))
    assert [job.key for job, _ in out] == [j.key for j in jobs]
    gens = smollm2_engine.generate([GenerationRequest(job.prompt, 4, ("</think>",)) for job in jobs])
    assert any(g.stop_reason != "stop" for g in gens)  # 4 tokens are too few to close a chain
    for (job, trace), gen in zip(out, gens):
        assert trace.finish_reason == gen.stop_reason
        if gen.stop_reason != "stop":
            assert trace.answer_text == "" and trace.reasoning == gen.text.strip()
        else:
            assert trace.answer_text in ("true", "false")
