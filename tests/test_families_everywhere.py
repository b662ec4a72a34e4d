"""Every family kind everywhere (issue 20): a pair family (Qwen3-Reranker), a query family
(ReasonRank) and a set family (Rank-R1), each through ``evaluate`` with a judgment cache, the HTML
report and every framework integration, on the tiny random Qwen2.5-shaped model. The reference
is the same reranker called directly (one loaded engine for the whole module); a random model
writes no answer tags, so ReasonRank's windows and Rank-R1's comparisons take their recorded
fallbacks, which the report and metrics must show."""

from __future__ import annotations

import dataclasses
import html
import re

import pytest

from thinkrank.cache import JudgmentCache
from thinkrank.datasets.collection import Collection
from thinkrank.datasets.runs import Run
from thinkrank.evaluation.report import render_report
from thinkrank.evaluation.runner import evaluate, metrics_dict
from thinkrank.rerankers.spec import RerankerSpec, build_reranker
from thinkrank.types import Document

QUERY = "what do cats eat"
TEXTS = [
    "Cats are obligate carnivores: they eat meat, such as mice, birds and fish.",
    "Stocks fell on Monday as investors worried about interest rates.",
    "Many adult cats cannot digest milk, so giving cats milk can upset them.",
    "Paris is the capital of France and its largest city.",
]
# family -> (the RerankerSpec options, with tiny budgets; Haystack's mode)
FAMILIES = {
    "qwen3-reranker": ({}, "pointwise"),
    "reasonrank": ({"max_tokens": 4}, "listwise"),
    "rank-r1": ({"k": 2, "num_child": 2, "max_tokens": 3}, "setwise"),
}
KINDS = {"qwen3-reranker": "pair", "reasonrank": "query", "rank-r1": "set"}


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request):
    return request.param


@pytest.fixture(scope="module")
def reranker(family, tiny_qwen_path, tiny_qwen_engine):
    options, _ = FAMILIES[family]
    built = build_reranker(RerankerSpec(family=family, model=str(tiny_qwen_path), **options), engine=tiny_qwen_engine)
    assert built.kind == KINDS[family]
    return built


def _own_order(reranker) -> list[str]:
    """The texts best first, as the reranker itself ranks them."""
    return [TEXTS[j.index] for j in reranker.rerank(QUERY, list(TEXTS))]


def _toy() -> tuple[Collection, Run]:
    corpus = {f"d{i}": Document(f"d{i}", t) for i, t in enumerate(TEXTS)}
    queries = {"q1": QUERY, "q2": "capital of France"}
    qrels = {"q1": {"d0": 2, "d2": 1, "d1": 0}, "q2": {"d3": 1}}
    run = Run({q: [(f"d{i}", float(4 - i)) for i in range(4)] for q in queries}, "toy")
    return Collection(corpus, queries, qrels, name="toy"), run


def test_evaluate_caches_every_family_and_the_report_shows_its_work(family, reranker, tmp_path):
    collection, run = _toy()
    first = evaluate(collection, run, top_k=4, reranker=reranker, cache=JudgmentCache(tmp_path / "j.sqlite"))
    again = evaluate(collection, run, top_k=4, reranker=reranker, cache=JudgmentCache(tmp_path / "j.sqlite"))
    assert first.use.computed > 0 and again.use.computed == 0 and again.use.cached == first.use.computed
    assert {q: r.to_dict() for q, r in again.rankings.items()} == {q: r.to_dict() for q, r in first.rankings.items()}
    direct = reranker.rerank(QUERY, [collection.corpus[d] for d, _ in run["q1"]])
    assert first.rankings["q1"].doc_ids == direct.doc_ids
    assert first.settings is not None and first.settings["family"] == family

    # the page's text, as a reader sees it (tags dropped)
    metrics, page = metrics_dict(first), html.unescape(re.sub(r"<[^>]+>", "", render_report(first)))
    rankings = first.rankings.values()
    if KINDS[family] == "set":
        comparisons = [c for r in rankings for c in r.comparisons]
        assert comparisons and metrics["comparisons"] == {
            "total": len(comparisons), "unexpected": sum(c.chosen is None for c in comparisons),
            "unexpected_by_query": {q: r.unexpected_comparisons for q, r in first.rankings.items()
                                    if r.unexpected_comparisons}}
        for q, r in first.rankings.items():
            assert f"{len(r.comparisons)} setwise comparisons" in page
            ids = {j.index: j.doc_id for j in r}
            for c in r.comparisons:
                assert f"Comparison {c.step + 1}: shown {', '.join(ids[i] for i in c.shown)}, " in page
                # the random model answers no [k]: the parent is kept, and the page names it
                assert c.chosen is None and f"unexpected answer, kept the parent {ids[c.indices[0]]}" in page
        # an answered comparison names the one chosen (a trained model's case, set by hand here)
        ranking = first.rankings["q1"]
        answered = dataclasses.replace(ranking.comparisons[0], chosen=ranking.comparisons[0].indices[-1], fallback=None)
        ranking.comparisons[0] = answered
        ids = {j.index: j.doc_id for j in ranking}
        page = html.unescape(re.sub(r"<[^>]+>", "", render_report(first)))
        assert f"Comparison 1: shown {', '.join(ids[i] for i in answered.shown)}, chose {ids[answered.chosen]}, " in page
    else:
        assert "comparisons" not in metrics and "setwise comparisons" not in page
    if KINDS[family] == "query":
        windows = sum(len(r.windows) for r in rankings)
        assert windows and metrics["windows"]["total"] == windows
        assert all(f"{len(r.windows)} listwise windows" in page for r in rankings)
    else:
        assert "windows" not in metrics and "listwise windows" not in page


def test_langchain_and_llamaindex_order_as_the_family(reranker):
    from langchain_core.documents import Document as LCDocument
    from llama_index.core.schema import NodeWithScore, TextNode

    from thinkrank.integrations.langchain import ThinkrankCompressor
    from thinkrank.integrations.llamaindex import ThinkrankRerank

    want = _own_order(reranker)
    lc = ThinkrankCompressor(reranker=reranker, top_n=None).compress_documents(
        [LCDocument(page_content=t) for t in TEXTS], QUERY)
    assert [d.page_content for d in lc] == want
    nodes = [NodeWithScore(node=TextNode(text=t), score=0.0) for t in TEXTS]
    li = ThinkrankRerank(reranker=reranker, top_n=None).postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.get_content() for n in li] == want


def test_haystack_builds_and_orders_as_the_family(family, reranker, tiny_qwen_path):
    from haystack import Document as HSDocument

    from thinkrank.integrations.haystack import ThinkrankRanker

    options, mode = FAMILIES[family]
    extra = {} if mode == "setwise" else {"family": family}
    ranker = ThinkrankRanker(str(tiny_qwen_path), mode=mode, top_k=len(TEXTS),
                             reranker_options={"engine": "transformers", "device": "cpu", **options, **extra})
    ranked = ranker.run(QUERY, [HSDocument(content=t) for t in TEXTS])["documents"]
    assert ranker._reranker.kind == KINDS[family]
    assert [d.content for d in ranked] == _own_order(reranker)


def test_pyterrier_and_mteb_order_as_the_family(family, reranker, tiny_qwen_path, tiny_qwen_engine):
    import pandas as pd

    from thinkrank.integrations.mteb import ThinkrankCrossEncoder
    from thinkrank.integrations.pyterrier import ThinkrankReranker

    want = _own_order(reranker)
    frame = pd.DataFrame({"qid": "q1", "query": QUERY, "docno": [f"d{i}" for i in range(len(TEXTS))], "text": TEXTS})
    options, _ = FAMILIES[family]
    # built by name through the spec, as a PyTerrier user writes it, on the module's engine
    pt_ranker = ThinkrankReranker(str(tiny_qwen_path), engine=tiny_qwen_engine, family=family, **options)
    out = pt_ranker.transform(frame).sort_values("rank")
    assert [TEXTS[int(d[1:])] for d in out.docno] == want

    scores = ThinkrankCrossEncoder(reranker).predict([{"text": [QUERY] * len(TEXTS)}], [{"text": TEXTS}])
    assert [TEXTS[i] for i in sorted(range(len(TEXTS)), key=lambda i: -scores[i])] == want


def test_ray_actors_judge_every_family_as_one_process(family, reranker, tiny_qwen_engine, tmp_path, monkeypatch):
    """RayReranker's dispatch (pair rows or whole queries, by ``judges``), its actor's judging
    through the cache and the JSON each result travels as, run in this process: starting Ray is
    too slow for this module (tests/test_integrations_ray.py runs real Ray, slow-marked). Only the
    Ray Data transport is replaced, by the same chunks handed to the actor class directly."""
    import json
    from functools import partial

    from thinkrank.integrations import ray as ray_integration

    def in_process(self, units):
        chunks = [units[i : i + self.chunk_size] for i in range(0, len(units), self.chunk_size)]
        actor = ray_integration._ChunkJudge(self.factory, self.cache_path, self.pointwise)
        out = actor({"chunk": list(range(len(chunks))), "payload": [json.dumps(c) for c in chunks]})
        self._settings = json.loads(out["settings"][0])
        self.use.cached += sum(out["cached"])
        self.use.computed += sum(out["computed"])
        return [v for result in out["result"] for v in json.loads(result)]

    monkeypatch.setattr(ray_integration.RayReranker, "_run", in_process)
    options, mode = FAMILIES[family]
    extra = {} if mode == "setwise" else {"family": family}
    factory = partial(type(reranker), engine=tiny_qwen_engine, **options, **extra)
    requests = [(QUERY, list(TEXTS)), ("capital of France", list(TEXTS))]
    want = [r.to_dict() for r in reranker.rerank_many(requests)]
    first = ray_integration.RayReranker(factory, cache=tmp_path / "ray.sqlite", workers=1)
    assert (first.kind, first.judges) == (KINDS[family], KINDS[family])
    assert [r.to_dict() for r in first.rerank_many(requests)] == want and first.use.computed > 0
    assert first.settings["family"] == family
    again = ray_integration.RayReranker(factory, cache=tmp_path / "ray.sqlite", workers=1)
    assert [r.to_dict() for r in again.rerank_many(requests)] == want
    assert (again.use.computed, again.use.cached) == (0, first.use.computed)


def test_compare_takes_any_family_against_a_pair_family(family, reranker, tiny_qwen_path, tiny_qwen_engine):
    from scipy.stats import spearmanr

    from thinkrank.evaluation.compare import Cost, Measured, compare

    collection, run = _toy()
    pair = build_reranker(RerankerSpec(family="qwen3-reranker", model=str(tiny_qwen_path)), engine=tiny_qwen_engine)
    base, cand = (evaluate(collection, run, top_k=4, reranker=r) for r in (pair, reranker))
    cost = Cost(str(tiny_qwen_path), None, 0, "cpu rss", 0.0, 0.0, 0, None)
    out = compare(Measured(base, cost), Measured(cand, cost), "nDCG@10")
    assert out["difference"] == pytest.approx(
        cand.reranked_metrics.aggregate["nDCG@10"] - base.reranked_metrics.aggregate["nDCG@10"])
    rhos = []
    for q in base.qids:
        a, b = ({j.doc_id: j.score for j in e.rankings[q]} for e in (base, cand))
        rhos.append(spearmanr([a[d] for d in sorted(a)], [b[d] for d in sorted(a)]).statistic)
    assert out["agreement"]["pairs"] == 8 and out["agreement"]["top10_overlap"] == 1.0
    assert out["agreement"]["spearman_mean"] == pytest.approx(sum(rhos) / len(rhos), abs=1e-4)
