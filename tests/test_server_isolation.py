"""One bad request never fails another, bad input never gets a 500, and a client that leaves or
stalls never holds the server: `create_app` with the session's SmolLM2 engine behind a real
uvicorn server on 127.0.0.1, called with httpx and raw sockets. Scores are checked against the
library (`Rank1(...).rerank`) on the same inputs."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import socket
import time

import httpx
import pytest

pytest.importorskip("fastapi")

from server_process import serving  # noqa: E402

from thinkrank.rerankers import RerankerSpec, build_reranker  # noqa: E402
from thinkrank.server import ServerSettings, create_app  # noqa: E402

QUERY = "what do cats eat"
DOCS = [
    "Cats are obligate carnivores: they eat meat such as fish and poultry.",
    "The stock market fell today after the tariff news.",
    "Dogs are loyal companions that bark at strangers.",
    "Kittens drink their mother's milk before they eat solid cat food.",
    "Rain is expected in the north of the country tomorrow.",
]
FORTY = [f"{d} (copy {n})" for n in range(8) for d in DOCS]
# The server judges the 40 documents in calls shared with other requests, the library in one
# call: float32 rounds the two batch layouts differently, by about 1e-6 in score (the same
# tolerance as test_server.py's; the tests' tolerance constants are being unified elsewhere).
TOL = 1e-5


def post(url: str, body: dict, path: str = "/v2/rerank", headers: dict | None = None) -> httpx.Response:
    # json.dumps writes a lone surrogate as its "\ud800" escape, as a client in any language can
    # (httpx's own json= refuses to encode one).
    return httpx.post(url + path, content=json.dumps(body), timeout=120,
                      headers={"Content-Type": "application/json", **(headers or {})})


def counter(url: str, line_start: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(line_start))


@pytest.fixture(scope="module")
def library(smollm2_engine):
    from thinkrank import Rank1

    reranker = Rank1(engine=smollm2_engine, reasoning=False)
    return lambda query, docs: {j.index: j.score for j in reranker.rerank(query, docs)}


@pytest.fixture(scope="module")
def refs(library):
    """The innocent requests' library scores, computed before the server shares the engine."""
    return {"forty": library(QUERY, FORTY), "two": library("stock news", DOCS[1:3]), "one": library(QUERY, DOCS[:1])}


@pytest.fixture(scope="module")
def url(smollm2_engine, smollm2_path, refs):
    spec = RerankerSpec(model=str(smollm2_path), reasoning=False)
    settings = ServerSettings(max_wait_ms=100, max_query_chars=5000)  # the emoji query passes the character limit
    with serving(create_app(spec, settings, reranker=build_reranker(spec, engine=smollm2_engine))) as base:
        yield base


def test_poison_requests_among_concurrent_innocent_ones_fail_alone_with_a_4xx(url, refs, smollm2_engine):
    context = smollm2_engine.context_length
    poisons = [  # each passes the schema; each fails one of the library's or the server's limits
        ({"query": "\U0001F600" * 4000, "documents": DOCS[:2]}, 413, ["query:", f"context of {context} tokens"]),
        ({"query": QUERY, "documents": DOCS[:2], "instruction": "\ud800"}, 422, ["instruction holds a lone surrogate"]),
        ({"query": QUERY, "documents": DOCS[:2], "instruction": "x" * 200_000}, 413,
         ["instruction: 200000 characters", "at most 4096 (--max-instruction-chars)"]),
    ]
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        forty = pool.submit(post, url, {"query": QUERY, "documents": FORTY})
        two = pool.submit(post, url, {"query": "stock news", "documents": DOCS[1:3]})
        time.sleep(0.2)
        bad = [pool.submit(post, url, body) for body, _, _ in poisons]
        answers = [forty.result(), two.result()] + [b.result() for b in bad]
    for response, want in zip(answers[:2], (refs["forty"], refs["two"])):
        assert response.status_code == 200, response.text
        got = {r["index"]: r["relevance_score"] for r in response.json()["results"]}
        assert got == pytest.approx(want, abs=TOL)
    for response, (_, status, names) in zip(answers[2:], poisons):
        assert response.status_code == status, response.text
        assert all(name in response.json()["message"] for name in names), response.text


SURROGATE = "\ud800"


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        ({"query": "cats " + SURROGATE, "documents": DOCS[:1]}, 422, "query holds a lone surrogate"),
        ({"query": QUERY, "documents": ["ok", "bad " + SURROGATE]}, 422, "documents[1] holds a lone surrogate"),
        ({"query": QUERY, "documents": [{"text": "ok", "title": SURROGATE}]}, 422, "documents[0].title holds"),
        ({"query": QUERY, "documents": [{"text": "ok", "id": SURROGATE}]}, 422, "documents[0].id holds"),
        ({"query": QUERY, "documents": [{"text": "ok", "id": SURROGATE}], "stream": True}, 422, "documents[0].id"),
        ({"query": QUERY, "documents": ["ok"], "instruction": "a" + SURROGATE, "stream": True}, 422, "instruction"),
        ({"query": QUERY, "texts": [SURROGATE]}, 422, "texts[0] holds a lone surrogate"),
        ({"query": QUERY, "documents": ["ok"], "reasoning": True, "think_budget": 8192}, 422,
         "think_budget: the query and template take"),
        ({"query": QUERY, "documents": ["ok"], "think_budget": 8}, 422, "think_budget: has no effect with reasoning off"),
        ({"query": "\U0001F600" * 4000, "documents": ["ok"], "stream": True}, 413, "lower think_budget"),
        ({"query": QUERY, "documents": []}, 400, "documents: the list is empty"),
        ({"query": QUERY, "texts": ["ok"], "truncate": False}, 422, "truncate: this server always cuts"),
    ],
)
def test_bad_input_gets_a_4xx_naming_the_field_before_any_model_work(url, body, status, names):
    computed = counter(url, 'thinkrank_judgments_total{source="computed"}')
    response = post(url, body)
    assert response.status_code == status, response.text
    assert names in response.json()["message"]
    assert response.json()["request_id"] == response.headers["x-request-id"]
    assert counter(url, 'thinkrank_judgments_total{source="computed"}') == computed


def test_a_body_not_sent_as_json_gets_415_naming_the_content_type(url):
    response = httpx.post(url + "/v2/rerank", content=json.dumps({"query": QUERY, "documents": ["a"]}),
                          headers={"Content-Type": "application/x-www-form-urlencoded"})  # curl -d without -H
    assert response.status_code == 415 and "Content-Type: application/json" in response.json()["message"]


def test_empty_documents_score_0_after_the_others_without_model_work(url, refs):
    body = {"query": QUERY, "documents": ["", DOCS[0], "   "], "return_reasoning": True}
    got = post(url, body).json()["results"]
    assert [r["index"] for r in got] == [1, 0, 2]
    assert got[0]["relevance_score"] == pytest.approx(refs["one"][0], abs=TOL)
    assert [r["relevance_score"] for r in got[1:]] == [0.0, 0.0] and not any(r["reasoned"] for r in got)
    with httpx.stream("POST", url + "/v2/rerank", json={**body, "stream": True}, timeout=120) as response:
        data = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    assert sorted(d["index"] for d in data[:-1]) == [0, 1, 2] and data[-1]["results"] == got


def test_the_served_name_is_short_and_any_model_name_is_answered(url):
    name = httpx.get(url + "/v1/models").json()["data"][0]["id"]
    assert name == "smollm2-135m-instruct"  # the directory's name, not its path
    answer = post(url, {"model": "rerank-english-v3.0", "query": QUERY, "documents": DOCS[:1]})  # LlamaIndex's default
    assert answer.status_code == 200 and answer.json()["model"] == name


def test_request_ids_are_honoured_and_head_probes_answer(url):
    response = post(url, {"query": QUERY, "documents": DOCS[:1]}, headers={"X-Request-Id": "trace-42"})
    assert response.headers["x-request-id"] == "trace-42" and response.json()["id"] == "trace-42"
    bad = post(url, {"query": QUERY}, headers={"X-Request-Id": "has spaces"})  # not a token: a fresh id
    assert bad.status_code == 422 and len(bad.headers["x-request-id"]) == 32
    for path in ("/healthz", "/readyz"):
        head = httpx.head(url + path)
        assert head.status_code == 200 and head.content == b"" and head.headers["x-request-id"]


def test_tei_raw_scores_are_the_log_odds_of_the_scores(url):
    plain = post(url, {"query": QUERY, "texts": DOCS[:3]}, "/rerank").json()
    raw = post(url, {"query": QUERY, "texts": DOCS[:3], "raw_scores": True}, "/rerank").json()
    import math

    assert [r["index"] for r in raw] == [r["index"] for r in plain]
    for p, r in zip(plain, raw):
        assert r["score"] == pytest.approx(math.log(p["score"] / (1 - p["score"])), abs=1e-6)


# ---- clients that leave or stall ------------------------------------------------------------------
@pytest.fixture(scope="module")
def reasoning_spec(smollm2_path):
    return RerankerSpec(model=str(smollm2_path), think_budget=24)


def _raw_request(port: int, body: bytes, *, declared: int | None = None) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"POST /v2/rerank HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % (declared or len(body)) + body)
    return sock


def test_a_client_that_leaves_has_its_documents_dropped_and_others_go_on(smollm2_engine, reasoning_spec):
    settings = ServerSettings(max_batch_size=1, max_wait_ms=0, request_timeout=120)
    app = create_app(reasoning_spec, settings, reranker=build_reranker(reasoning_spec, engine=smollm2_engine))
    with serving(app) as url:
        body = json.dumps({"query": QUERY, "documents": FORTY[:12]}).encode()
        sock = _raw_request(int(url.rsplit(":", 1)[1]), body)
        deadline = time.monotonic() + 60
        while counter(url, 'thinkrank_judgments_total{source="computed"}') < 1:  # work has begun
            assert time.monotonic() < deadline
            time.sleep(0.05)
        sock.close()  # the client gives up (a non-streaming request)
        while counter(url, "thinkrank_queue_depth") > 0:
            assert time.monotonic() < deadline, "the documents of a client that left stayed queued"
            time.sleep(0.05)
        computed = counter(url, 'thinkrank_judgments_total{source="computed"}')
        after = post(url, {"query": QUERY, "documents": DOCS[:1]})
        gone = counter(url, 'thinkrank_rejected_total{reason="client_gone"}')
    assert computed < 12 and gone == 1
    assert after.status_code == 200


def test_a_stalled_body_gets_408_and_its_connection_closed_and_a_slow_stream_pings(smollm2_engine, reasoning_spec,
                                                                                  caplog):
    settings = ServerSettings(max_batch_size=1, max_wait_ms=0, request_timeout=1.5, heartbeat_seconds=0.2)
    app = create_app(reasoning_spec, settings, reranker=build_reranker(reasoning_spec, engine=smollm2_engine))
    with serving(app) as url, caplog.at_level(logging.INFO, logger="thinkrank.server"):
        started = time.monotonic()
        sock = _raw_request(int(url.rsplit(":", 1)[1]), b'{"query": "cats", "docu', declared=1000)  # then nothing
        received = b""
        while chunk := sock.recv(65536):  # until the server closes the connection
            received += chunk
        held = time.monotonic() - started
        sock.close()
        lines = []
        with httpx.stream("POST", url + "/v2/rerank", json={"query": QUERY, "documents": FORTY[:12], "stream": True},
                          timeout=60) as response:
            lines = [line for line in response.iter_lines() if line]
    assert received.startswith(b"HTTP/1.1 408") and b"--request-timeout" in received
    assert held < 1.5 + 3  # closed at the timeout, not held by the client
    assert lines[0] == ": ping" and lines[-2:] == ["event: error", lines[-1]]
    assert json.loads(lines[-1][6:])["status"] == 504
    if "event: result" in lines:
        assert lines.index(": ping") < lines.index("event: result")
    logged = [json.loads(r.getMessage()[len("rerank "):]) for r in caplog.records if r.getMessage().startswith("rerank ")]
    assert [(entry["status"], entry["stream"]) for entry in logged] == [(504, True)]  # logged at its end, as it ended


def test_strict_model_name_refuses_other_names(smollm2_engine, smollm2_path):
    spec = RerankerSpec(model=str(smollm2_path), reasoning=False)
    app = create_app(spec, ServerSettings(served_model_name="smol", strict_model_name=True),
                     reranker=build_reranker(spec, engine=smollm2_engine))
    with serving(app) as url:
        other = post(url, {"model": "rerank-english-v3.0", "query": QUERY, "documents": DOCS[:1]})
        schema = httpx.get(url + "/openapi.json").json()["components"]["schemas"]["RerankBody"]
    assert other.status_code == 404 and "this server serves 'smol'" in other.json()["message"]
    assert schema["properties"]["model"]["anyOf"][0]["enum"] == ["smol"]
