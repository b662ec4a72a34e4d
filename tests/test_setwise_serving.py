"""Rank-R1 (setwise) everywhere the other families run: ``thinkrank rerank --family rank-r1``, the
judgment cache (comparisons kept) and the HTTP server, on the random-weight Qwen2.5-shaped model
with the exact Qwen tokenizer (a local folder: no adapter). Each is compared with the library's
own RankR1 on the same model and settings."""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from thinkrank import RankR1
from thinkrank.cli import _register, app
from thinkrank.rerankers import CachedReranker, RerankerSpec, build_reranker
from thinkrank.types import Ranking

QUERY = "what do cats eat"
DOCS = [
    {"id": "fish", "text": "Cats are carnivores: they eat fish and poultry."},
    {"id": "stocks", "text": "The stock market fell today."},
    {"id": "dogs", "text": "Dogs bark at strangers."},
    {"id": "milk", "text": "Kittens drink their mother's milk."},
]
# Sets of three, top two, three new tokens per comparison: a sort of a few cheap calls.
SETTINGS = dict(k=2, num_child=2, max_tokens=3)

_register()


def test_rerank_family_rank_r1_prints_the_library_ranking_and_its_comparisons(tiny_qwen_engine, tiny_qwen_path,
                                                                               tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    result = CliRunner().invoke(app, [
        "rerank", "--family", "rank-r1", "--model", str(tiny_qwen_path), "--engine", "transformers", "--device", "cpu",
        "--query", QUERY, "--docs", str(docs), "--format", "jsonl", "--quiet", "--sort-k", "2", "--num-child", "2",
        "--max-tokens", "3"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    want = RankR1(engine=tiny_qwen_engine, **SETTINGS).rerank(QUERY, DOCS)
    assert [r["id"] for r in records if "rank" in r] == want.doc_ids
    assert [r["comparison"] for r in records if "comparison" in r] == [c.to_dict() for c in want.comparisons]
    # a random model writes no answer tags: every comparison kept its parent, and the run says so
    assert want.unexpected_comparisons == len(want.comparisons) > 0
    assert (f"warning: {len(want.comparisons)} of {len(want.comparisons)} setwise comparisons had an unexpected "
            "answer") in result.stderr


def test_a_cached_setwise_ranking_reads_back_with_its_comparisons(tiny_qwen_engine, tmp_path):
    ranker = RankR1(engine=tiny_qwen_engine, **SETTINGS)
    cached = CachedReranker(ranker, tmp_path / "judgments.sqlite")
    first = cached.rerank_many([(QUERY, DOCS)])[0]
    rerun = CachedReranker(ranker, tmp_path / "judgments.sqlite")
    again = rerun.rerank_many([(QUERY, DOCS)])[0]
    assert (cached.use.computed, rerun.use.computed, rerun.use.cached) == (1, 0, 1)
    assert again.comparisons and again.to_dict() == first.to_dict()
    assert first.to_dict() == ranker.rerank(QUERY, DOCS).to_dict()


def test_a_listwise_cache_value_is_unchanged_by_setwise_support():
    from thinkrank.rerankers.cached import ranking_value

    assert set(ranking_value(Ranking("q", []))) == {"judgments", "windows"}


def test_a_rank_r1_server_answers_as_the_library_and_counts_comparison_tokens(tiny_qwen_engine, tiny_qwen_path):
    pytest.importorskip("fastapi")
    from server_process import serving

    from thinkrank.server import create_app

    spec = RerankerSpec(family="rank-r1", model=str(tiny_qwen_path), **SETTINGS)
    want = build_reranker(spec, engine=tiny_qwen_engine).rerank(QUERY, [d["text"] for d in DOCS])
    server = create_app(spec, reranker=build_reranker(spec, engine=tiny_qwen_engine))
    with serving(server) as url:
        got = httpx.post(url + "/v2/rerank", json={"query": QUERY, "documents": [d["text"] for d in DOCS],
                                                   "return_reasoning": True}, timeout=120).json()
        refused = httpx.post(url + "/v2/rerank", json={"query": QUERY, "documents": ["a", "b"], "think_budget": 8})
        metrics = httpx.get(url + "/metrics").text
        info = httpx.get(url + "/v1/models").json()
    assert [r["index"] for r in got["results"]] == [j.index for j in want]
    assert [r["relevance_score"] for r in got["results"]] == [j.score for j in want]
    completion = sum(c.completion_tokens for c in want.comparisons)
    prompt = sum(c.prompt_tokens for c in want.comparisons)
    assert completion > 0 and got["usage"] == {"prompt_tokens": prompt, "completion_tokens": completion,
                                               "total_tokens": prompt + completion}
    assert f"thinkrank_generated_tokens_total {float(completion)}" in metrics
    assert refused.status_code == 422 and refused.json()["message"].startswith("think_budget: this server runs a setwise")
    assert "rank-r1" in json.dumps(info)
