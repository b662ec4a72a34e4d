"""Metrics against independent references: Anserini's published DL19 figures, hand-computed
nDCG/AP/RR, FollowIR's p-MRR and NevIR's paired accuracy by hand, closed-form t-tests."""

from __future__ import annotations

import math

import pytest

from thinkrank.datasets import Run, load_collection
from thinkrank.datasets.nevir import NevIRPair
from thinkrank.errors import InvalidInputError
from thinkrank.evaluation.metrics import (
    DEFAULT_MEASURES, evaluate_run, measure_name, nevir_paired_accuracy, p_mrr, paired_test,
)


@pytest.fixture(scope="module")
def dl19(data_dir):
    return load_collection(data_dir / "dl19")


@pytest.mark.parametrize(("run", "ndcg10"), [("bm25", 0.5058), ("bm25_rm3", 0.5216), ("splade_pp_ed", 0.7308)])
def test_dl19_runs_score_the_published_ndcg10(dl19, run, ndcg10):
    metrics = evaluate_run(dl19.run(run), dl19.qrels)
    assert round(metrics.aggregate["nDCG@10"], 4) == ndcg10
    assert len(metrics.per_query) == 43 and metrics.missing == []
    assert list(metrics.aggregate) == list(DEFAULT_MEASURES)


def test_per_query_values_match_hand_computation():
    qrels = {"q1": {"a": 2, "b": 1, "c": 0}, "q2": {"d": 1}}
    run = Run({"q1": [("c", 4.0), ("a", 3.0), ("x", 2.0), ("b", 1.0)], "q2": [("d", 1.0)]})
    m = evaluate_run(run, qrels)
    q1 = m.per_query["q1"]
    # Gains by rank: c=0, a=2, x unjudged=0, b=1.
    # DCG = 2/log2(3) + 1/log2(5) = 1.261860 + 0.430677 = 1.692537; IDCG = 2/log2(2) + 1/log2(3) = 2.630930
    assert q1["nDCG@10"] == pytest.approx((2 / math.log2(3) + 1 / math.log2(5)) / (2 + 1 / math.log2(3)))
    assert q1["nDCG@10"] == pytest.approx(0.643322, abs=1e-6)
    assert q1["AP"] == pytest.approx((1 / 2 + 2 / 4) / 2)  # relevant a at rank 2, b at rank 4: (0.5 + 0.5) / 2
    assert q1["RR@10"] == 0.5 and q1["R@100"] == 1.0
    assert q1["Judged@10"] == 0.75  # c, a, b judged; x not: 3 of the 4 retrieved
    assert m.per_query["q2"] == dict.fromkeys(DEFAULT_MEASURES, 1.0)
    assert m.aggregate["nDCG@10"] == pytest.approx((0.643322 + 1.0) / 2, abs=1e-6)
    assert m.values("MAP") == {"q1": 0.5, "q2": 1.0}


def test_ties_keep_the_listed_order():
    # trec_eval would break the tie by docid (z before a); the run lists a first, and that order counts.
    m = evaluate_run(Run({"q": [("a", 1.0), ("z", 1.0)]}), {"q": {"z": 1}}, ["MRR@10"])
    assert m.aggregate == {"RR@10": 0.5}


def test_queries_missing_from_the_run_are_skipped_or_scored_zero():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    run = Run({"q1": [("a", 1.0)], "unjudged": [("a", 1.0)]})
    default = evaluate_run(run, qrels, ["nDCG@10"])
    assert default.aggregate == {"nDCG@10": 1.0} and default.missing == ["q2"]
    assert evaluate_run(run, qrels, ["nDCG@10"], missing_as_zero=True).aggregate == {"nDCG@10": 0.5}


def test_bad_measures_and_unrelated_runs_are_clear_errors():
    with pytest.raises(InvalidInputError, match="unknown measure 'nDCG@ten'"):
        measure_name("nDCG@ten")
    with pytest.raises(InvalidInputError, match="share no query ids"):
        evaluate_run(Run({"x": [("a", 1.0)]}), {"q": {"a": 1}})
    with pytest.raises(InvalidInputError, match="measure 'P@5' was not computed"):
        evaluate_run(Run({"q": [("a", 1.0)]}), {"q": {"a": 1}}, ["nDCG@10"]).values("P@5")


def test_p_mrr_matches_followir_formula_by_hand():
    original = Run({"A": [("d0", 4), ("d1", 3), ("d2", 2), ("d3", 1)], "B": [("e0", 4), ("e1", 3), ("e2", 2), ("e3", 1)]})
    changed = Run({"A": [("d1", 4), ("d2", 3), ("d3", 2), ("d0", 1)], "B": [("e3", 4), ("e0", 3), ("e2", 2), ("e9", 1)]})
    result = p_mrr(original, changed, {"A": ["d0"], "B": ["e3", "e1"]})
    # A/d0: rank 1 -> 4, moved down: 1 - 1/4 = 0.75
    # B/e3: rank 4 -> 1, moved up: 1/4 - 1 = -0.75; B/e1: rank 2 -> absent = 4 + 1 = 5: 1 - 2/5 = 0.6
    # per query: A 0.75, B (-0.75 + 0.6) / 2 = -0.075; p-MRR = (0.75 - 0.075) / 2 = 0.3375
    assert result.per_doc == {"A": {"d0": pytest.approx(0.75)}, "B": {"e3": pytest.approx(-0.75), "e1": pytest.approx(0.6)}}
    assert result.per_query["B"] == pytest.approx(-0.075)
    assert result.score == pytest.approx(0.3375)
    assert p_mrr(original, original, {"A": ["d0"]}).score == 0.0  # no change, no credit
    with pytest.raises(InvalidInputError, match="none of the 1 queries"):
        p_mrr(original, changed, {"Z": ["d0"]})


def test_nevir_paired_accuracy_needs_both_queries_right():
    pairs = [NevIRPair(i, "q1", "q2", "d1", "d2") for i in ("A", "B", "C")]
    run = Run({
        "A_q1": [("A_doc1", 0.9), ("A_doc2", 0.1)], "A_q2": [("A_doc2", 0.8), ("A_doc1", 0.3)],  # both right
        "B_q1": [("B_doc1", 0.9), ("B_doc2", 0.1)], "B_q2": [("B_doc1", 0.7), ("B_doc2", 0.6)],  # q2 wrong
        "C_q1": [("C_doc1", 0.9), ("C_doc2", 0.2)], "C_q2": [("C_doc1", 0.5), ("C_doc2", 0.5)],  # q2 tied
    })
    result = nevir_paired_accuracy(run, pairs)
    assert result.correct == {"A": True, "B": False, "C": False}
    assert result.accuracy == pytest.approx(1 / 3)  # 1 right pair of 3
    with pytest.raises(InvalidInputError, match="must score both 'D_doc1' and 'D_doc2' for query 'D_q1'"):
        nevir_paired_accuracy(run, [NevIRPair("D", "q1", "q2", "d1", "d2")])


def test_paired_test_matches_the_closed_form_t_and_exact_randomization():
    a, b = {"x": 0.0, "y": 0.0, "z": 0.0}, {"x": 1.0, "y": 2.0, "z": 3.0}
    result = paired_test(a, b, "nDCG@10")
    # d = (1, 2, 3): mean 2, sd 1, t = 2 / (1 / sqrt 3) = 3.4641; with 2 df the t CDF is
    # 1/2 + t / (2 sqrt(2 + t^2)), so p = 2 (1/2 - t / (2 sqrt 14)) = 1 - t / sqrt 14 = 0.074180.
    t = 2 * math.sqrt(3)
    assert result.t_statistic == pytest.approx(t)
    assert result.p_value == pytest.approx(1 - t / math.sqrt(14))
    # All 2^3 sign flips: only (+,+,+) reaches mean 2 and only (-,-,-) reaches -2: p = 2/8.
    assert result.permutation_p_value == pytest.approx(0.25)
    assert (result.n, result.diff, result.measure) == (3, 2.0, "nDCG@10")


def test_paired_test_on_dl19_runs_is_seeded_and_finds_splade_better(dl19):
    bm25 = evaluate_run(dl19.run("bm25"), dl19.qrels)
    splade = evaluate_run(dl19.run("splade_pp_ed"), dl19.qrels)
    first = paired_test(bm25, splade, "nDCG@10", permutations=2000, seed=7)
    assert first == paired_test(bm25, splade, "nDCG@10", permutations=2000, seed=7)
    assert first.diff == pytest.approx(0.7308 - 0.5058, abs=1e-4)
    assert first.p_value < 1e-3 and first.permutation_p_value < 1e-2


def test_paired_test_refuses_different_query_sets():
    with pytest.raises(InvalidInputError, match="scored on different queries"):
        paired_test({"a": 1.0, "b": 0.5}, {"a": 1.0, "c": 0.5})
