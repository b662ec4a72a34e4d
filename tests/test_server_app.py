"""`create_app(spec, settings)` embedded in a process, served by a real uvicorn server on
127.0.0.1 with the session's SmolLM2 engine: listwise serving, the shared judgment cache and
the request timeout (504)."""

from __future__ import annotations

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
]


def test_a_listwise_server_gives_the_rankk_ranking(smollm2_engine, smollm2_path):
    spec = RerankerSpec(mode="listwise", model=str(smollm2_path), window=3, stride=2, max_tokens=12)
    want = build_reranker(spec, engine=smollm2_engine).rerank(QUERY, DOCS)
    app = create_app(spec, reranker=build_reranker(spec, engine=smollm2_engine))
    with serving(app) as url:
        got = httpx.post(url + "/v2/rerank", json={"query": QUERY, "documents": DOCS, "return_reasoning": True},
                         timeout=120).json()
        refused = httpx.post(url + "/v2/rerank", json={"query": QUERY, "documents": DOCS, "think_budget": 8})
    assert [r["index"] for r in got["results"]] == [j.index for j in want]
    assert [r["relevance_score"] for r in got["results"]] == [j.score for j in want]
    assert [r["reasoning"] for r in got["results"]] == [j.reasoning for j in want]
    assert got["usage"]["completion_tokens"] == sum(w.completion_tokens for w in want.windows)
    assert refused.status_code == 422 and refused.json()["message"].startswith("think_budget: this server runs a listwise")


def test_the_judgment_cache_is_shared_across_requests(smollm2_engine, smollm2_path, tmp_path):
    from thinkrank.cache import JudgmentCache

    spec = RerankerSpec(model=str(smollm2_path), reasoning=False)
    app = create_app(spec, ServerSettings(cache=tmp_path / "judgments.sqlite"),
                     reranker=build_reranker(spec, engine=smollm2_engine))
    with serving(app) as url:
        first = httpx.post(url + "/v2/rerank", json={"query": QUERY, "documents": DOCS}, timeout=60).json()
        again = httpx.post(url + "/v2/rerank", json={"query": QUERY, "documents": DOCS[::-1]}, timeout=60).json()
        metrics = httpx.get(url + "/metrics").text
    assert {r["index"]: r["relevance_score"] for r in first["results"]} == {
        3 - r["index"]: r["relevance_score"] for r in again["results"]}
    assert 'thinkrank_judgments_total{source="computed"} 4.0' in metrics
    assert 'thinkrank_judgments_total{source="cached"} 4.0' in metrics
    with JudgmentCache(tmp_path / "judgments.sqlite") as cache:
        assert len(cache) == 4 and set(cache.computations().values()) == {1}


def test_a_request_over_the_timeout_gets_504_and_its_waiting_documents_are_dropped(smollm2_engine, smollm2_path):
    spec = RerankerSpec(model=str(smollm2_path), think_budget=48)
    settings = ServerSettings(request_timeout=0.3, max_batch_size=1, max_wait_ms=0)
    app = create_app(spec, settings, reranker=build_reranker(spec, engine=smollm2_engine))
    docs = [f"{d} ({n})" for n in range(3) for d in DOCS]  # 12 documents, one engine call each
    with serving(app) as url:
        late = httpx.post(url + "/v2/rerank", json={"query": QUERY, "documents": docs}, timeout=60)
        deadline = time.monotonic() + 60
        while "thinkrank_queue_depth 0.0" not in (metrics := httpx.get(url + "/metrics").text):
            assert time.monotonic() < deadline, "the dropped documents were never released"
            time.sleep(0.05)
    assert late.status_code == 504 and "--request-timeout" in late.json()["message"]
    computed = next(float(line.split()[-1]) for line in metrics.splitlines()
                    if line.startswith('thinkrank_judgments_total{source="computed"}'))
    assert 1 <= computed < len(docs)
    assert 'thinkrank_rejected_total{reason="timeout"} 1.0' in metrics
