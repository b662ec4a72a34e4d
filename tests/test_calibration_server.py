"""A server with --calibration: results of the calibrated setting carry `probability` (the map
of their score), requests that ask for another setting do not."""

from __future__ import annotations

import json

import httpx
import pytest

pytest.importorskip("fastapi")

from test_server_app import DOCS, QUERY, serving  # noqa: E402

from thinkrank.calibration import Calibration, CalibrationMap, ConformalQuery  # noqa: E402
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


def _conformal_calibration(reranker, cut: float) -> Calibration:
    """Ten calibration queries whose conformal cut at recall 1, alpha 0.1 is ``cut``: k =
    floor(11 * 0.1) = 1, so the threshold is the smallest of their scores (all ``>= cut``)."""
    queries = [ConformalQuery(10, ((1, cut + 0.01 * i),)) for i in range(10)]
    return Calibration(CalibrationMap("platt", {"a": 0.5, "b": -1.0}), "pointwise", reranker.settings, 1,
                       conformal=queries)


def test_select_keeps_only_the_chosen_documents_with_their_summary(smollm2_engine, smollm2_path, tmp_path):
    import cohere
    import numpy as np

    spec = RerankerSpec(mode="pointwise", model=str(smollm2_path), reasoning=False, max_passage_tokens=48)
    reranker = build_reranker(spec, engine=smollm2_engine)
    want = build_reranker(spec, engine=smollm2_engine).rerank(QUERY, DOCS)
    scores = sorted(j.score for j in want)
    cut = (scores[1] + scores[2]) / 2  # conformal mode must keep the two best documents
    cal = _conformal_calibration(reranker, cut)
    probs = np.array(cal.probabilities([j.score for j in want]))  # in ranked order
    p_cut = float((probs[0] + probs[1]) / 2)  # threshold mode: the best document only
    app = create_app(spec, ServerSettings(calibration=cal.save(tmp_path / "cal.json")), reranker=reranker)
    bare = create_app(spec, ServerSettings(), reranker=reranker)
    with serving(app) as url, serving(bare) as bare_url:
        client = cohere.ClientV2(base_url=url, api_key="unused")
        conformal = client.rerank(model="m", query=QUERY, documents=DOCS, request_options={
            "additional_body_parameters": {"select": {"recall": 1.0, "alpha": 0.1, "rule": "score"}}})
        threshold = httpx.post(url + "/v1/rerank", json={"query": QUERY, "documents": DOCS,
                                                         "select": {"probability": p_cut}}, timeout=120).json()
        tei = httpx.post(url + "/rerank", json={"query": QUERY, "texts": DOCS, "select": {"recall": 1.0, "rule": "score"}},
                         timeout=120)
        schemas = {name: httpx.get(u + "/openapi.json", timeout=60).json()["components"]["schemas"]
                   for name, u in (("calibrated", url), ("bare", bare_url))}
        errors = {name: httpx.post(u + "/v2/rerank", json={"query": QUERY, "documents": DOCS, **extra}, timeout=120)
                  for name, u, extra in [
                      ("uncalibrated", bare_url, {"select": {"probability": 0.5}}),
                      ("other setting", url, {"select": {"probability": 0.5}, "reasoning": True, "think_budget": 2}),
                      ("two modes", url, {"select": {"recall": 0.9, "probability": 0.5}}),
                      ("alpha alone", url, {"select": {"alpha": 0.1}}),
                      ("unknown key", url, {"select": {"threshold": 0.5}}),
                      ("unknown rule", url, {"select": {"recall": 0.9, "rule": "best"}}),
                      # the hand-built calibration holds no candidate scores, as a version 1 file
                      ("no scores", url, {"select": {"recall": 0.9}})]}
    assert [r.index for r in conformal.results] == [j.index for j in want[:2]]
    summary = conformal.model_extra["selection"]  # the real SDK parses the response and keeps the extension
    assert summary["mode"] == "conformal" and summary["kept"] == 2 and summary["candidates"] == len(DOCS)
    assert summary["score_threshold"] == pytest.approx(cut) and summary["rule"] == "score"
    assert summary["expected_recall"] == pytest.approx(probs[:2].sum() / probs.sum(), abs=1e-12)
    assert summary["expected_precision"] == pytest.approx(probs[:2].mean(), abs=1e-12)
    assert [r["index"] for r in threshold["results"]] == [want[0].index]
    assert threshold["selection"]["expected_precision"] == pytest.approx(probs[0], abs=1e-12)
    assert threshold["selection"]["probability_threshold"] == p_cut
    assert [r["index"] for r in tei.json()] == [j.index for j in want[:2]]
    assert json.loads(tei.headers["x-thinkrank-selection"])["kept"] == 2
    assert {name: r.status_code for name, r in errors.items()} == dict.fromkeys(errors, 422)
    assert "--calibration FILE" in errors["uncalibrated"].json()["message"]
    assert "fitted for another reranker setting" in errors["other setting"].json()["message"]
    assert "give recall" in errors["two modes"].json()["message"]
    assert "give recall" in errors["alpha alone"].json()["message"]
    assert "recall-probability" in errors["unknown rule"].json()["message"]
    assert "refit it with `thinkrank calibrate" in errors["no scores"].json()["message"]
    # The schema says what each server takes: no select without a calibration; with this one (no
    # candidate scores, as a version 1 file) one mode, and conformal mode with an explicit rule.
    assert schemas["bare"]["RerankBody"]["properties"]["select"]["type"] == "null"
    conformal, threshold = schemas["calibrated"]["SelectIn"]["oneOf"]
    assert conformal["required"] == ["recall", "rule"] and conformal["properties"]["rule"] == {"enum": ["score", "top-k"]}
    assert threshold["required"] == ["probability"] and threshold["properties"]["recall"] == {"type": "null"}
