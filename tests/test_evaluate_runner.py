"""The evaluation runner on real DL19 data: query selection, a reranked evaluation with the real
SmolLM2 Rank1 (reasoning off) through the cache, metrics checked against a hand-written nDCG,
and the files it writes."""

from __future__ import annotations

import json
import math

import pytest

from thinkrank.cache import JudgmentCache
from thinkrank.datasets import load_collection, read_run
from thinkrank.errors import InvalidInputError
from thinkrank.evaluation.runner import evaluate, metrics_dict, run_tag, select_queries, write_outputs
from thinkrank.rerankers.pointwise import Pair, Rank1

from tolerances import LAYOUT_TOL


def ndcg_at_10(ranked: list[str], labels: dict[str, int]) -> float:
    """trec_eval's nDCG@10: gain = grade, log2(rank + 1) discount, ideal from all judged grades."""
    dcg = sum(labels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]) if labels.get(d, 0) > 0)
    ideal = sorted((g for g in labels.values() if g > 0), reverse=True)[:10]
    return dcg / sum(g / math.log2(i + 2) for i, g in enumerate(ideal))


@pytest.fixture(scope="module")
def dl19(data_dir):
    return load_collection(data_dir / "dl19")


@pytest.fixture(scope="module")
def rank1_off(smollm2_engine):
    return Rank1(engine=smollm2_engine, reasoning=False)


def test_default_queries_are_the_judged_ones_the_run_ranks_in_collection_order(dl19):
    bm25 = dl19.run("bm25")
    chosen = select_queries(dl19, bm25)
    assert chosen == [q for q in dl19.queries if dl19.qrels.get(q)] and len(chosen) == 43
    assert select_queries(dl19, bm25, limit=2) == chosen[:2]
    assert select_queries(dl19, bm25, qids=["19335", "1037798", "19335"]) == ["19335", "1037798"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"qids": ["nope"]}, "not in both collection"), ({"limit": 0}, "must be >= 1")],
)
def test_bad_query_selection_is_refused(dl19, kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        select_queries(dl19, dl19.run("bm25"), **kwargs)


def test_a_run_of_another_collection_is_refused(dl19, data_dir):
    other = read_run(data_dir / "dl19" / "runs" / "bm25.trec")
    other = type(other)({f"x{q}": d for q, d in other.rankings.items()}, "renamed")
    with pytest.raises(InvalidInputError, match="ranks none of the judged queries"):
        select_queries(dl19, other)


def test_reranked_evaluation_scores_each_candidate_like_plain_rank1_and_ranks_by_score(dl19, rank1_off, tmp_path):
    qids = ["1037798", "104861"]
    with JudgmentCache(tmp_path / "cache.sqlite") as cache:
        result = evaluate(dl19, dl19.run("bm25"), top_k=3, reranker=rank1_off, cache=cache, qids=qids,
                          chunk_size=4, permutations=100)
        assert len(cache) == 6 and set(cache.computations().values()) == {1}
    bm25 = dl19.run("bm25")
    for qid in qids:
        docs = [dl19.corpus[d] for d in bm25.doc_ids(qid)[:3]]
        plain = rank1_off.judge([Pair(dl19.queries[qid], d, i) for i, d in enumerate(docs)])
        expected = sorted(((j.doc_id, j.score) for j in plain), key=lambda x: -x[1])
        got = result.reranked[qid]
        assert [d for d, _ in got] == [d for d, _ in expected]
        assert [s for _, s in got] == pytest.approx([s for _, s in expected], abs=LAYOUT_TOL)
        # metrics follow the ranking: checked against a hand-written nDCG@10
        assert result.first_metrics.per_query[qid]["nDCG@10"] == pytest.approx(
            ndcg_at_10(bm25.doc_ids(qid)[:3], dl19.qrels[qid]))
        assert result.reranked_metrics.per_query[qid]["nDCG@10"] == pytest.approx(
            ndcg_at_10([d for d, _ in got], dl19.qrels[qid]))
    assert (result.use.computed, result.use.cached) == (6, 0)
    test = result.tests["nDCG@10"]
    assert test.n == 2 and test.diff == pytest.approx(
        result.reranked_metrics.aggregate["nDCG@10"] - result.first_metrics.aggregate["nDCG@10"])
    assert result.reranked.name == run_tag(rank1_off.settings["model"])


def test_written_files_hold_the_runs_judgments_and_metrics(dl19, rank1_off, tmp_path):
    with JudgmentCache(tmp_path / "cache.sqlite") as cache:
        result = evaluate(dl19, dl19.run("bm25"), top_k=3, reranker=rank1_off, cache=cache, qids=["19335", "47923"],
                          permutations=0)
    paths = write_outputs(result, tmp_path / "out")
    assert sorted(p.name for p in paths.values()) == [
        "first-stage.trec", "metrics.json", "qrels.trec", "rankings.jsonl", "report.html", "reranked.trec"]
    # The evaluated queries' judgments, so `thinkrank calibrate` needs only the folder.
    from thinkrank.datasets.qrels import read_qrels

    assert read_qrels(paths["qrels"]) == {q: dl19.qrels[q] for q in ("19335", "47923")}
    reread = read_run(paths["reranked"])
    assert {q: reread.doc_ids(q) for q in reread} == {q: result.reranked.doc_ids(q) for q in result.reranked}
    assert read_run(paths["first_stage"]).rankings == dl19.run("bm25").subset(["19335", "47923"]).top_k(3).rankings
    metrics = json.loads(paths["metrics"].read_text())
    assert metrics == json.loads(json.dumps(metrics_dict(result)))
    assert metrics["reranker"]["reasoning"] is False and metrics["top_k"] == 3
    assert metrics["reranked"]["per_query"]["19335"]["nDCG@10"] == pytest.approx(
        ndcg_at_10(reread.doc_ids("19335"), dl19.qrels["19335"]))
    records = [json.loads(line) for line in paths["rankings"].read_text().splitlines()]
    assert [r["query_id"] for r in records] == ["19335", "47923"]
    assert [x["id"] if "id" in x else x["doc_id"] for x in records[0]["results"]] == reread.doc_ids("19335")
    assert all(x["answer"] in ("true", "false") and x["reasoning"] == "" for r in records for x in r["results"])


def test_without_a_reranker_the_run_is_evaluated_as_given(dl19):
    result = evaluate(dl19, dl19.run("bm25_rm3"), top_k=100)
    assert round(result.first_metrics.aggregate["nDCG@10"], 4) == 0.5216  # Anserini's published figure
    assert result.reranked is None and result.tests == {} and result.settings is None


def test_bad_top_k_is_refused(dl19):
    with pytest.raises(InvalidInputError, match="top_k must be >= 1"):
        evaluate(dl19, dl19.run("bm25"), top_k=0)
