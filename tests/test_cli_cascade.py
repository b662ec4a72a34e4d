"""`thinkrank rerank --cascade`, `evaluate --cascade` and `serve --cascade` as a user runs them, with a real model."""

from __future__ import annotations

import json

import pytest
from test_cli_rerank import DOCS, run_cli
from tolerances import LAYOUT_TOL


def test_cascade_reasons_about_the_top_m_and_reports_what_it_spent(smollm2_path, tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    proc = run_cli("rerank", "--model", str(smollm2_path), "--query", "what is a cat", "--docs", str(docs),
                   "--format", "jsonl", "--think-budget", "8", "--cascade", "top=1")
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(records) == 3 and sum(r["reasoned"] for r in records) == 1
    assert all(r["quick_score"] is not None for r in records)
    assert next(r for r in records if r["reasoned"])["reasoning_tokens"] == 8
    assert "cascade: query 0: 1 of 3 candidates reasoned, 8 chain tokens, ~16 saved" in proc.stderr


def test_bad_cascade_spec_is_one_error_line_before_any_model_loads(tmp_path):
    docs = tmp_path / "docs.txt"
    docs.write_text("a cat\n")
    for spec, words in [("top=0", "top_m"), ("best", "cannot read cascade")]:
        proc = run_cli("rerank", "--model", str(tmp_path / "missing"), "--query", "q", "--docs", str(docs),
                       "--cascade", spec, check=False)
        assert proc.returncode == 2 and proc.stderr.startswith("error:") and words in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli("rerank", "--mode", "listwise", "--query", "q", "--docs", str(docs), "--cascade", "top=3",
                   check=False)
    assert proc.returncode == 2 and "pointwise option" in proc.stderr


# ---- evaluate --cascade, sharing one judgment cache with other settings ---------------------------------
def evaluate(data_dir, model, out, *args: str) -> str:
    """``thinkrank evaluate`` in this process (one torch import for the whole test); its stderr."""
    from typer.testing import CliRunner

    from thinkrank.cli import _register, app

    _register()
    result = CliRunner().invoke(app, ["evaluate", "--dataset", str(data_dir / "dl19"), "--run", "bm25", "--queries", "2",
                                      "--top-k", "3", "--model", str(model), "--think-budget", "4", "--output", str(out),
                                      *args])
    assert result.exit_code == 0, result.output
    return result.stderr


def rankings(out) -> list[dict]:
    return [json.loads(line) for line in (out / "rankings.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_evaluate_runs_with_and_without_cascade_on_one_cache_each_get_their_own_judgments(
    data_dir, smollm2_path, tmp_path
):
    shared = ["--cache", str(tmp_path / "shared.sqlite")]
    cascade, bare = ["--cascade", "top=1"], ["--cascade", "top=1", "--reasoning-close", "bare"]
    plain_log = evaluate(data_dir, smollm2_path, tmp_path / "plain", *shared)
    cascade_log = evaluate(data_dir, smollm2_path, tmp_path / "cascade", *shared, *cascade)
    bare_log = evaluate(data_dir, smollm2_path, tmp_path / "bare", *shared, *bare)
    again_log = evaluate(data_dir, smollm2_path, tmp_path / "again", *shared, *cascade)
    assert "6 judgments computed, 0 read from the cache" in plain_log
    assert "2 query rankings computed, 0 read from the cache" in cascade_log  # nothing of the plain run reused
    assert "2 query rankings computed, 0 read from the cache" in bare_log  # another first-pass close: recomputed
    assert "0 query rankings computed, 2 read from the cache" in again_log
    assert "cascade: 2 of 6 candidates reasoned over 2 queries" in cascade_log
    # The cascade run, made on a cache full of the plain run's judgments, equals one that never saw it
    # (the plain and bare runs read nothing back: they are fresh runs by the counts above).
    evaluate(data_dir, smollm2_path, tmp_path / "fresh", *cascade)
    assert rankings(tmp_path / "cascade") == rankings(tmp_path / "fresh")
    assert rankings(tmp_path / "again") == rankings(tmp_path / "cascade")
    quick = [[j["quick_score"] for j in r["results"]] for r in rankings(tmp_path / "cascade")]
    assert quick != [[j["quick_score"] for j in r["results"]] for r in rankings(tmp_path / "bare")]
    assert all(j["reasoned"] is True for r in rankings(tmp_path / "plain") for j in r["results"])

    metrics = json.loads((tmp_path / "cascade" / "metrics.json").read_text())
    assert "cascade" not in json.loads((tmp_path / "plain" / "metrics.json").read_text())
    assert metrics["reranker"]["cascade"] == {"top_m": 1, "band": None}
    for ranking in rankings(tmp_path / "cascade"):
        reasoned = [j for j in ranking["results"] if j["reasoned"]]
        tokens = sum(j["reasoning_tokens"] for j in reasoned)
        assert len(reasoned) == 1 and metrics["cascade"]["per_query"][ranking["query_id"]] == {
            "candidates": 3, "chains": 1, "chain_tokens": tokens, "tokens_saved": 2 * tokens}
    assert (metrics["cascade"]["chains"], metrics["cascade"]["candidates"]) == (2, 6)
    spent = metrics["cascade"]["chain_tokens"]
    assert (f"top 1: 2 of 6 candidates reasoned, {spent} chain tokens, ~{2 * spent} saved"
            in (tmp_path / "cascade" / "report.html").read_text())


# ---- serve --cascade ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_serve_cascade_answers_as_the_library_cascade_and_says_so_in_v1_models(smollm2_engine, smollm2_path,
                                                                               tmp_path):
    pytest.importorskip("fastapi")
    import httpx
    from server_process import start_server

    from thinkrank import Rank1

    query, docs = "what is a cat", [d["text"] for d in DOCS]
    server = start_server("--model", str(smollm2_path), "--device", "cpu", "--think-budget", "4", "--cascade", "top=1",
                          "--cache", str(tmp_path / "judgments.sqlite"))
    try:
        body = {"query": query, "documents": docs, "return_reasoning": True}
        got = httpx.post(server.url + "/v2/rerank", json=body, timeout=120).json()
        cached = httpx.post(server.url + "/v2/rerank", json=body, timeout=120).json()
        off = httpx.post(server.url + "/v2/rerank", json={**body, "reasoning": False}, timeout=120).json()
        card = httpx.get(server.url + "/v1/models", timeout=10).json()["data"][0]
        metrics = httpx.get(server.url + "/metrics", timeout=10).text
    finally:
        assert server.stop() == 0
    want = Rank1(engine=smollm2_engine, think_budget=4, cascade="top=1").rerank(query, docs)
    assert [(r["index"], r["reasoned"], r["reasoning"]) for r in got["results"]] == [
        (j.index, j.reasoned, j.reasoning) for j in want]
    assert [r["relevance_score"] for r in got["results"]] == pytest.approx([j.score for j in want], abs=LAYOUT_TOL)
    assert sum(r["reasoned"] for r in got["results"]) == 1
    assert got["usage"]["completion_tokens"] == sum(j.reasoning_tokens for j in want) == 4
    assert cached["results"] == got["results"]
    assert 'thinkrank_judgments_total{source="cached"} 3.0' in metrics  # the second request read the cache
    # reasoning=false needs no cascade: one forward pass per document, as Rank1 with reasoning off.
    plain = Rank1(engine=smollm2_engine, reasoning=False).rerank(query, docs)
    assert [(r["index"], r["reasoned"]) for r in off["results"]] == [(j.index, False) for j in plain]
    assert [r["relevance_score"] for r in off["results"]] == pytest.approx([j.score for j in plain], abs=LAYOUT_TOL)
    assert card["settings"]["cascade"] == {"top_m": 1, "band": None}
    assert card["settings"]["reasoning_close"] == "\n</think>" and card["settings"]["think_budget"] == 4
