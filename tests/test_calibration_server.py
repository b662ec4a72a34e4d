"""A server with --calibration: results of the calibrated setting carry `probability` (the map
of their score), requests that ask for another setting do not."""

from __future__ import annotations

import httpx
import pytest

pytest.importorskip("fastapi")

from test_server_app import DOCS, QUERY, serving  # noqa: E402

from thinkrank.calibration import Calibration, CalibrationMap  # noqa: E402
from thinkrank.rerankers import RerankerSpec, build_reranker  # noqa: E402
from thinkrank.server import ServerSettings, create_app  # noqa: E402


def test_the_server_adds_probabilities_for_its_calibrated_setting(smollm2_engine, smollm2_path, tmp_path):
    spec = RerankerSpec(mode="pointwise", model=str(smollm2_path), reasoning=False, max_passage_tokens=48)
    reranker = build_reranker(spec, engine=smollm2_engine)
    cal = Calibration(CalibrationMap("platt", {"a": 0.5, "b": -1.0}), "pointwise", reranker.settings, 1)
    path = cal.save(tmp_path / "cal.json")
    want = build_reranker(spec, engine=smollm2_engine).rerank(QUERY, DOCS)
    app = create_app(spec, ServerSettings(calibration=path), reranker=reranker)
    with serving(app) as url:
        got = httpx.post(url + "/v2/rerank", json={"query": QUERY, "documents": DOCS}, timeout=120).json()["results"]
        tei = httpx.post(url + "/rerank", json={"query": QUERY, "texts": DOCS}, timeout=120).json()
        other = httpx.post(url + "/v2/rerank", json={"query": QUERY, "documents": DOCS, "reasoning": True,
                                                     "think_budget": 2}, timeout=300).json()["results"]
    assert [r["index"] for r in got] == [j.index for j in want]
    assert [r["probability"] for r in got] == pytest.approx(cal.probabilities([j.score for j in want]), abs=1e-12)
    assert [r["probability"] for r in tei] == pytest.approx(cal.probabilities([r["score"] for r in tei]), abs=1e-12)
    assert all("probability" not in r or r["probability"] is None for r in other)  # another setting: no probability


def test_a_calibration_for_another_setting_fails_the_load(smollm2_engine, smollm2_path, tmp_path):
    import asyncio

    spec = RerankerSpec(mode="pointwise", model=str(smollm2_path), reasoning=False, max_passage_tokens=48)
    reranker = build_reranker(spec, engine=smollm2_engine)
    cal = Calibration(CalibrationMap("platt", {"a": 0.5, "b": -1.0}), "pointwise",
                      {**reranker.settings, "prompt": "another template FILL_QUERY_HERE"}, 1)
    service = create_app(spec, ServerSettings(calibration=cal.save(tmp_path / "cal.json")),
                         reranker=reranker).state.service

    async def load() -> None:  # the app's lifespan: start, wait for the load to end, stop
        await service.start()
        for _ in range(600):
            if service.ready or service.load_error:
                break
            await asyncio.sleep(0.05)
        await service.stop()

    asyncio.run(load())
    assert not service.ready and "fitted for another reranker setting (prompt:" in service.load_error
