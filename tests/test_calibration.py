"""Calibration statistics against independent computations: scikit-learn's isotonic and
logistic fits on the same numbers, ECE worked out by hand, conformal coverage by direct
counting over many random query splits."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import numpy as np
import pytest

from thinkrank.calibration import (
    Calibration,
    ConformalQuery,
    LabelledQuery,
    LabelledRun,
    brier,
    conformal_threshold,
    conformal_top_k,
    ece,
    fit_calibration,
    load_calibration,
    log_loss,
    recall_probabilities,
    reliability_bins,
    select,
)
from thinkrank.calibration.fit import query_folds
from thinkrank.calibration.maps import feature, fit_map
from thinkrank.errors import InvalidInputError
from thinkrank.types import Document, Judgment, Ranking

SETTINGS = {"mode": "pointwise", "model": "m", "engine": "transformers", "think_budget": 0, "reasoning": False,
            "prompt": "p", "max_passage_tokens": 128}


def synthetic_run(n_queries: int, per_query: int, seed: int, *, settings: dict | None = None) -> LabelledRun:
    """Queries whose relevant candidates score higher on average, scores squashed towards 0 and
    1 (overconfident, as reasoning rerankers are)."""
    rng = np.random.default_rng(seed)
    queries = []
    for q in range(n_queries):
        labels = (rng.random(per_query) < 0.15).astype(int)
        logits = 3.0 * (rng.normal(0, 1, per_query) + 1.2 * labels - 0.8)
        scores = 1 / (1 + np.exp(-logits))
        order = np.argsort(-scores, kind="stable")
        queries.append(LabelledQuery(str(q), tuple(scores[order].tolist()), tuple(labels[order].tolist())))
    return LabelledRun(settings or dict(SETTINGS), "synthetic", "bm25", per_query, 1, tuple(queries))


# ---- metrics ---------------------------------------------------------------------------------------
def test_ece_by_hand_on_a_tiny_example():
    p = [0.1, 0.2, 0.3, 0.6, 0.8, 0.9]
    y = [0, 0, 1, 0, 1, 1]
    # Two equal-mass bins: {0.1, 0.2, 0.3} (mean 0.2, 1 of 3 relevant) and {0.6, 0.8, 0.9} (mean 0.7667, 2 of 3).
    expected = 0.5 * abs(0.2 - 1 / 3) + 0.5 * abs((0.6 + 0.8 + 0.9) / 3 - 2 / 3)
    assert ece(p, y, bins=2) == pytest.approx(expected, abs=1e-12)
    # Three bins of two: |0.15 - 0| , |0.45 - 0.5|, |0.85 - 1|, each weighted 1/3.
    assert ece(p, y, bins=3) == pytest.approx((0.15 + 0.05 + 0.15) / 3, abs=1e-12)
    # Bins are by probability, not by input order.
    shuffled = [5, 0, 3, 1, 4, 2]
    assert ece([p[i] for i in shuffled], [y[i] for i in shuffled], bins=3) == pytest.approx(ece(p, y, bins=3))
    # Equal probabilities share a bin, so the order of tied pairs cannot change the result: a
    # flat 0.25 over labels with a 25% base rate is calibrated, however the labels are listed.
    flat, labels = [0.25] * 8, [1, 1, 0, 0, 0, 0, 0, 0]
    assert ece(flat, labels, bins=4) == 0 and ece(flat, labels[::-1], bins=4) == 0
    # Ties straddling a boundary join the bin of their first member: bins {0.1, 0.5, 0.5, 0.5}, {0.9, 0.9}.
    tied = [0.1, 0.5, 0.5, 0.5, 0.9, 0.9]
    by_bin = [(b.mean_probability, b.fraction_relevant, b.count) for b in reliability_bins(tied, [0, 1, 0, 0, 1, 1], 2)]
    assert by_bin == [pytest.approx((0.4, 0.25, 4)), pytest.approx((0.9, 1.0, 2))]


def test_brier_and_log_loss_match_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    p, y = rng.uniform(0.01, 0.99, 500), rng.integers(0, 2, 500)
    assert brier(p, y) == pytest.approx(metrics.brier_score_loss(y, p), rel=1e-12)
    assert log_loss(p, y) == pytest.approx(metrics.log_loss(y, p), rel=1e-12)


def test_bad_metric_input_is_named():
    with pytest.raises(InvalidInputError, match="labels must be 0 or 1"):
        ece([0.5, 0.5], [0, 2])
    with pytest.raises(InvalidInputError, match="within"):
        brier([1.5], [1])


# ---- the maps ---------------------------------------------------------------------------------------
def test_isotonic_matches_scikit_learn_with_ties():
    isotonic = pytest.importorskip("sklearn.isotonic")
    rng = np.random.default_rng(2)
    x = np.round(rng.normal(0, 2, 2000), 1)  # many tied features
    y = (rng.random(2000) < 1 / (1 + np.exp(-x))).astype(float)
    mine = fit_map("isotonic", x, y)
    ref = isotonic.IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(x, y)
    grid = np.linspace(x.min() - 1, x.max() + 1, 777)
    np.testing.assert_allclose(mine(grid), ref.predict(grid), atol=1e-12)
    np.testing.assert_allclose(mine(x), ref.predict(x), atol=1e-12)


def test_platt_matches_unpenalised_logistic_regression():
    linear = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(3)
    x = rng.normal(0, 3, 3000)
    y = (rng.random(3000) < 1 / (1 + np.exp(-(0.4 * x - 1.0)))).astype(int)
    mine = fit_map("platt", x, y)
    ref = linear.LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(x[:, None], y)
    assert mine.params["a"] == pytest.approx(ref.coef_[0][0], rel=1e-5)
    assert mine.params["b"] == pytest.approx(ref.intercept_[0], rel=1e-5)
    np.testing.assert_allclose(mine(x), ref.predict_proba(x[:, None])[:, 1], atol=1e-7)


def test_temperature_is_the_one_parameter_maximum_likelihood():
    optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(4)
    x = rng.normal(0, 4, 2000)
    y = (rng.random(2000) < 1 / (1 + np.exp(-x / 3.0))).astype(float)
    temperature = fit_map("temperature", x, y).params["temperature"]

    def nll(t: float) -> float:
        p = np.clip(1 / (1 + np.exp(-x / t)), 1e-15, 1 - 1e-15)
        return -np.sum(y * np.log(p) + (1 - y) * np.log(1 - p))

    ref = optimize.minimize_scalar(nll, bounds=(0.05, 50), method="bounded", options={"xatol": 1e-10}).x
    assert temperature == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("method", ["platt", "temperature", "isotonic"])
def test_every_map_is_monotone_and_keeps_rankings(method):
    run = synthetic_run(40, 20, seed=5)
    x = feature([s for q in run.queries for s in q.scores], "pointwise")
    y = [label for q in run.queries for label in q.labels]
    cal = Calibration(fit_map(method, x, y), "pointwise", dict(SETTINGS), 1)
    grid = np.sort(np.random.default_rng(6).uniform(0, 1, 5000))
    probs = np.array(cal.probabilities(np.concatenate([[0.0], grid, [1.0]])))
    assert np.all(np.diff(probs) >= 0) and np.all((probs >= 0) & (probs <= 1))
    judgments = [Judgment(doc_id=f"d{i}", index=i, score=float(s)) for i, s in enumerate(run.queries[0].scores[::-1])]
    ranking = Ranking("q", judgments)
    before = ranking.doc_ids
    cal.apply([ranking])
    assert ranking.doc_ids == before
    probs = [j.probability for j in ranking]
    assert all(a >= b for a, b in zip(probs, probs[1:]))


def test_a_decreasing_relation_gives_a_flat_platt_map_not_a_reordering():
    x = np.array([-2.0, -1.0, 0.0, 1.0, 2.0] * 20)
    y = np.array([1, 1, 0, 0, 0] * 20)
    m = fit_map("platt", x, y)
    assert m.params["a"] == 0.0 and m(np.array([0.0]))[0] == pytest.approx(0.4)
    with pytest.raises(InvalidInputError, match="temperature scaling does not fit"):
        fit_map("temperature", x, y)


def test_listwise_feature_is_the_log_of_the_reciprocal_rank():
    ranks = np.arange(20)
    np.testing.assert_allclose(feature(1 / (ranks + 1), "listwise"), -np.log(ranks + 1))


# ---- query-level cross-validation ----------------------------------------------------------
def test_folds_partition_the_queries():
    groups = query_folds(23, 5, seed=0)
    assert sorted(np.concatenate(groups).tolist()) == list(range(23)) and {len(g) for g in groups} == {4, 5}
    with pytest.raises(InvalidInputError, match="lower --folds"):
        query_folds(3, 5, seed=0)


def test_held_out_metrics_come_from_maps_that_never_saw_the_query():
    run = synthetic_run(30, 10, seed=7)
    cal = fit_calibration(run, method="isotonic", folds=3, seed=11, bins=5)
    # Recompute by hand: for each fold, fit scikit-learn's isotonic regression on the other queries.
    isotonic = pytest.importorskip("sklearn.isotonic")
    scores = np.array([s for q in run.queries for s in q.scores])
    y = np.array([label for q in run.queries for label in q.labels])
    query_of = np.repeat(np.arange(30), 10)
    x = np.log(scores) - np.log1p(-scores)
    held = np.empty(len(y))
    for group in query_folds(30, 3, seed=11):
        test = np.isin(query_of, group)
        model = isotonic.IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(x[~test], y[~test])
        held[test] = model.predict(x[test])
    assert cal.metrics["ece_after"] == pytest.approx(ece(held, y, bins=5), abs=1e-12)
    assert cal.metrics["brier_after"] == pytest.approx(brier(held, y), abs=1e-12)
    assert cal.metrics["brier_before"] == pytest.approx(brier(scores, y), abs=1e-12)
    assert cal.metrics["ece_before"] == pytest.approx(ece(scores, y, bins=5), abs=1e-12)


def test_auto_picks_the_lowest_held_out_brier_and_improves_overconfident_scores():
    cal = fit_calibration(synthetic_run(200, 20, seed=8))
    methods = cal.cross_validation["methods"]
    assert cal.method == min(methods, key=lambda m: methods[m]["brier"])
    assert cal.metrics["ece_after"] < cal.metrics["ece_before"] and cal.metrics["ece_after"] < 0.05
    assert cal.metrics["brier_after"] < cal.metrics["brier_before"]


# ---- the file ---------------------------------------------------------------------------------------
def test_file_round_trip_and_setting_check(tmp_path):
    cal = fit_calibration(synthetic_run(50, 10, seed=9), method="platt")
    path = cal.save(tmp_path / "cal.json")
    data = json.loads(path.read_text())
    assert data["format"] == "thinkrank-calibration" and data["version"] == 2
    assert {"ece_before", "ece_after", "brier_before", "brier_after"} <= set(data["metrics"])
    assert data["relevance_threshold"] == 1 and data["settings"] == SETTINGS
    back = load_calibration(path)
    assert back.probabilities([0.1, 0.7]) == cal.probabilities([0.1, 0.7])
    assert back.conformal == cal.conformal
    back.check_settings({**SETTINGS, "engine": "vllm"})  # the score is the same on every engine
    with pytest.raises(InvalidInputError, match=r"reasoning: calibrated false, this reranker true"):
        back.check_settings({**SETTINGS, "reasoning": True})
    with pytest.raises(InvalidInputError, match="max_passage_tokens"):
        back.check_settings({**SETTINGS, "max_passage_tokens": 512})
    (tmp_path / "newer.json").write_text(json.dumps({**data, "version": 99}))
    with pytest.raises(InvalidInputError, match="upgrade thinkrank"):
        load_calibration(tmp_path / "newer.json")
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(InvalidInputError, match="not a thinkrank calibration"):
        load_calibration(tmp_path / "other.json")
    with pytest.raises(InvalidInputError, match="not found"):
        load_calibration(tmp_path / "missing.json")


def test_judgment_output_is_unchanged_without_a_calibration():
    j = Judgment(doc_id="a", index=0, score=0.25, p_true=0.1, p_false=0.3)
    assert list(j.to_dict()) == ["doc_id", "index", "score", "reasoning", "answer", "prompt_tokens",
                                 "reasoning_tokens", "forced", "truncated", "p_true", "p_false", "reasoned",
                                 "quick_score", "tie_group", "stop_reason"]  # no "probability"
    j.probability = 0.2
    assert j.to_dict()["probability"] == 0.2
    from thinkrank.rerankers.cached import judgment_value

    assert "probability" not in judgment_value(j)  # never cached


# ---- conformal selection ------------------------------------------------------------------------------
def _recall(query: ConformalQuery, scores_kept_from: float) -> float:
    return sum(score >= scores_kept_from for _, score in query.relevant) / len(query.relevant)


def _synthetic_conformal(n: int, rng: np.random.Generator) -> list[tuple[ConformalQuery, np.ndarray]]:
    out = []
    for _ in range(n):
        scores = np.sort(rng.beta(0.6, 2.5, 20))[::-1]
        relevant = sorted(rng.choice(20, size=int(rng.integers(1, 4)), replace=False, p=np.linspace(2, 0.2, 20) / 22))
        out.append((ConformalQuery(20, tuple((int(r) + 1, float(scores[r])) for r in relevant)), scores))
    return out


def test_conformal_threshold_by_direct_counting():
    rng = np.random.default_rng(10)
    queries = [q for q, _ in _synthetic_conformal(99, rng)]
    alpha, target = 0.1, 0.9
    lam = conformal_threshold(queries, target, alpha)
    covered = sum(_recall(q, lam) >= target for q in queries)
    # k = floor(100 * 0.1) = 10: the threshold is the 10th smallest query threshold, so at least
    # 99 - 10 + 1 = 90 calibration queries reach the target, and any higher candidate cut covers fewer.
    assert covered >= 90
    higher = min(s for q in queries for _, s in q.relevant if s > lam)
    assert sum(_recall(q, higher) >= target for q in queries) < 90
    k = conformal_top_k(queries, target, alpha)
    reached = sum(sum(r <= k for r, _ in q.relevant) / len(q.relevant) >= target for q in queries)
    assert reached >= 90  # ceil(100 * 0.9) = 90: the 90th smallest rank
    assert sum(sum(r <= k - 1 for r, _ in q.relevant) / len(q.relevant) >= target for q in queries) < 90
    assert conformal_threshold(queries[:5], target, alpha) == -math.inf  # too few queries for alpha 0.1


def test_conformal_coverage_over_random_splits_is_within_the_guarantee():
    rng = np.random.default_rng(12)
    pool = _synthetic_conformal(400, rng)
    alpha, target, n_cal = 0.1, 1.0, 99
    hits = total = 0
    for _ in range(300):
        order = rng.permutation(len(pool))
        cal, test = [pool[i][0] for i in order[:n_cal]], [pool[i][0] for i in order[n_cal:]]
        lam = conformal_threshold(cal, target, alpha)
        hits += sum(_recall(q, lam) >= target for q in test)
        total += len(test)
    coverage = hits / total
    # Marginal coverage is in [1 - alpha, 1 - alpha + 1/(n+1)] = [0.90, 0.91]; 300 splits leave
    # a Monte Carlo error of about 0.006.
    assert 0.90 - 0.015 <= coverage <= 0.91 + 0.015


def test_select_modes_report_what_they_kept():
    run = synthetic_run(100, 20, seed=13)
    cal = fit_calibration(run, method="platt")
    judgments = [Judgment(doc_id=f"d{i}", index=i, score=float(s)) for i, s in enumerate(run.queries[0].scores)]
    ranking = Ranking("q", judgments, "q0")
    probs = cal.probabilities([j.score for j in ranking])
    chosen = ranking.select(cal, probability=0.3)
    assert chosen.doc_ids == [j.doc_id for j, p in zip(ranking, probs) if p >= 0.3]
    kept_mass = sum(p for p in probs if p >= 0.3)
    assert chosen.expected_recall == pytest.approx(kept_mass / sum(probs))
    if chosen.kept:
        assert chosen.expected_precision == pytest.approx(kept_mass / len(chosen.kept))
    conf = select(ranking, cal, recall=0.8, alpha=0.1, rule="score")
    lam = conformal_threshold(cal.conformal, 0.8, 0.1)
    assert conf.doc_ids == [j.doc_id for j in ranking if j.score >= lam] and conf.candidates == 20
    assert conf.to_dict()["kept"] == len(conf.kept) and conf.to_dict()["score_threshold"] == lam
    top = select(ranking, cal, recall=0.8, alpha=0.1, rule="top-k")
    assert top.doc_ids == [j.doc_id for j in ranking][: conformal_top_k(cal.conformal, 0.8, 0.1)]
    by_probability = ranking.select(cal, recall=0.8, alpha=0.1)  # the default rule
    assert by_probability.rule == "recall-probability"
    level = (by_probability.recall_probability_level, -by_probability.tie_score)
    keys = _keys(cal, [j.score for j in ranking], 0.8)
    kept = len(by_probability.kept)
    assert by_probability.doc_ids == [j.doc_id for j in ranking][:kept]
    assert keys[kept] > level and all(k <= level for k in keys[:kept])  # the shortest top above the level
    assert by_probability.to_dict()["recall_probability_level"] == level[0]
    assert by_probability.to_dict()["tie_score"] == -level[1]
    with pytest.raises(InvalidInputError, match="exactly one"):
        select(ranking, cal)
    with pytest.raises(InvalidInputError, match="alpha"):
        select(ranking, cal, recall=0.9, alpha=1.5)


def test_recall_probabilities_match_enumerating_every_labelling():
    rng = np.random.default_rng(21)
    for target in (0.5, 0.75, 0.9, 1.0):
        p = rng.uniform(0.02, 0.9, 8)
        reached, some = np.zeros(9), 0.0
        for labels in itertools.product((0, 1), repeat=8):  # all 256 labellings, by their probability
            y = np.array(labels)
            weight = float(np.prod(np.where(y == 1, p, 1 - p)))
            if y.sum() == 0:
                continue
            some += weight
            for k in range(9):
                reached[k] += weight * (y[:k].sum() / y.sum() >= target - 1e-12)
        assert recall_probabilities(p, target) == pytest.approx(reached / some, abs=1e-12)
    assert list(recall_probabilities([0.0, 0.0], 0.9)) == pytest.approx([0.0, 0.5, 1.0])  # no signal: a coin


def _reach_depth(query: ConformalQuery, target: float) -> int:
    return query.relevant[max(1, math.ceil(target * len(query.relevant) - 1e-9)) - 1][0]


def _keys(cal, scores, target: float) -> list[tuple[float, float]]:
    """Keeping the top k, k = 0..n: (P_k, minus the next candidate's score), -inf after the last."""
    reach = recall_probabilities(cal.probabilities(scores), target)
    following = [*scores, -math.inf]
    return [(float(reach[k]), -min(following[: k + 1])) for k in range(len(scores) + 1)]


def _kept_by_level(cal, scores, target: float, level: tuple[float, float] | None) -> int:
    if level is None:
        return len(scores)
    return next(k for k, key in enumerate(_keys(cal, scores, target)) if key > level)


def _level(cut) -> tuple[float, float] | None:
    return None if cut.recall_probability_level is None else (cut.recall_probability_level, -cut.tie_score)


def test_recall_probability_level_by_direct_counting():
    from thinkrank.calibration import conformal_cut

    run = synthetic_run(99, 20, seed=22)
    cal = fit_calibration(run, method="platt")
    target, alpha = 0.9, 0.1
    level = _level(conformal_cut(cal, target, alpha))
    queries = cal.conformal
    covered = [_kept_by_level(cal, q.scores, target, level) >= _reach_depth(q, target) for q in queries]
    n = len(queries)
    assert sum(covered) >= math.ceil((n + 1) * (1 - alpha))
    # Any lower level (the next value below it among the queries' own) covers too few.
    own = [_keys(cal, q.scores, target)[_reach_depth(q, target) - 1] for q in queries]
    lower = max(key for key in own if key < level)
    assert sum(_kept_by_level(cal, q.scores, target, lower) >= _reach_depth(q, target) for q in queries) \
        < math.ceil((n + 1) * (1 - alpha))
    assert conformal_cut(cal, target, alpha) is conformal_cut(cal, target, alpha)  # computed once


def test_recall_probability_coverage_over_random_splits_is_within_the_guarantee():
    from thinkrank.calibration import conformal_cut

    pool = synthetic_run(400, 20, seed=23)
    mapping = fit_calibration(synthetic_run(300, 20, seed=24), method="platt")  # fitted on other queries
    full = fit_calibration(pool, method="platt")
    rng = np.random.default_rng(25)
    target, alpha, n_cal = 0.9, 0.1, 99
    hits = total = 0
    for _ in range(200):
        order = rng.permutation(len(full.conformal))
        cal = dataclasses.replace(mapping, conformal=[full.conformal[i] for i in order[:n_cal]])
        level = _level(conformal_cut(cal, target, alpha))
        for i in order[n_cal:]:
            q = full.conformal[i]
            hits += _kept_by_level(mapping, q.scores, target, level) >= _reach_depth(q, target)
            total += 1
    # Marginal coverage is in [0.90, 0.91] up to ties; 200 splits leave a Monte Carlo error of about 0.007.
    assert 0.90 - 0.02 <= hits / total <= 0.91 + 0.02


def test_with_a_flat_map_the_next_candidates_score_breaks_ties_and_coverage_stays_exact():
    """A map that says the base rate to every pair gives all queries of one length the same P_k
    curve: without the score to tell them apart the cut could only be a fixed top-k, which
    over-covers (its depths tie). With it, coverage is at its exact value and fewer are kept."""
    from thinkrank.calibration import ConformalCut, conformal_cut
    from thinkrank.calibration.maps import CalibrationMap

    flat = CalibrationMap("platt", {"a": 0.0, "b": -1.7})
    base_rate = [1 / (1 + math.exp(1.7))] * 3
    reach = recall_probabilities(base_rate, 0.9)
    cut = ConformalCut("recall-probability", recall_probability_level=float(reach[1]), tie_score=0.5)
    assert cut.keep([0.9, 0.6, 0.4], base_rate, 0.9) == [0, 1]  # at the level, the next scores 0.6 >= 0.5: go on
    assert cut.keep([0.9, 0.4, 0.3], base_rate, 0.9) == [0]  # the next scores 0.4 < 0.5: stop
    pool = fit_calibration(synthetic_run(400, 10, seed=27), method="platt").conformal
    rng = np.random.default_rng(28)
    target, alpha, n_cal = 0.9, 0.1, 99
    hits = top_hits = total = kept = top_kept = 0
    for _ in range(200):
        order = rng.permutation(len(pool))
        cal = Calibration(flat, "pointwise", dict(SETTINGS), 1, conformal=[pool[i] for i in order[:n_cal]])
        level, k = _level(conformal_cut(cal, target, alpha)), conformal_top_k(cal.conformal, target, alpha)
        for i in order[n_cal:]:
            depth, need = _kept_by_level(cal, pool[i].scores, target, level), _reach_depth(pool[i], target)
            hits, kept, total = hits + (depth >= need), kept + depth, total + 1
            top_hits, top_kept = top_hits + ((k or 10) >= need), top_kept + (k or 10)
    assert 0.90 - 0.02 <= hits / total <= 0.91 + 0.02  # exact, as without ties
    assert top_hits / total > hits / total + 0.02 and top_kept > kept  # the fixed top-k over-covers


def test_a_version_1_file_still_selects_by_score_and_names_the_refit(tmp_path):
    run = synthetic_run(60, 10, seed=26)
    cal = fit_calibration(run, method="platt")
    data = json.loads(cal.save(tmp_path / "cal.json").read_text())
    data["version"] = 1
    data["conformal"]["queries"] = [q[:2] for q in data["conformal"]["queries"]]  # as version 1 wrote them
    (tmp_path / "v1.json").write_text(json.dumps(data))
    old = load_calibration(tmp_path / "v1.json")
    ranking = Ranking("q", [Judgment(doc_id=f"d{i}", index=i, score=float(s)) for i, s in enumerate(run.queries[0].scores)])
    assert select(ranking, old, recall=0.9, rule="score").doc_ids == select(ranking, cal, recall=0.9, rule="score").doc_ids
    with pytest.raises(InvalidInputError, match="refit it with `thinkrank calibrate"):
        select(ranking, old, recall=0.9)


# ---- the report's pictures --------------------------------------------------------------------------
def test_report_figures_by_hand():
    from thinkrank.datasets.runs import Run
    from thinkrank.evaluation.report_calibration import SIZE, calibration_figures
    from thinkrank.evaluation.runner import Evaluation

    def ranking(qid, scored):
        judged = [Judgment(doc_id=d, index=i, score=s, probability=s / 2) for i, (d, s) in enumerate(scored)]
        return Ranking("q", judged, qid)

    result = Evaluation(dataset="d", run_name="r", top_k=3, qids=["1", "2"], queries={"1": "a", "2": "b"},
                        first_stage=Run({"1": [("a", 3.0), ("b", 2.0), ("c", 1.0)], "2": [("d", 3.0), ("e", 2.0), ("f", 1.0)]}),
                        measures=("nDCG@10",), documents={d: Document(d, f"text {d}") for d in "abcdef"},
                        qrels={"1": {"a": 1, "c": 2}, "2": {"e": 1}})
    assert calibration_figures(result) is None  # no calibration applied
    result.rankings = {"1": ranking("1", [("a", 0.9), ("b", 0.5), ("c", 0.2)]),
                       "2": ranking("2", [("d", 0.8), ("e", 0.6), ("f", 0.1)])}
    result.calibration = {"relevance_threshold": 1}
    fig = calibration_figures(result)
    # Cut at 0.9 keeps (1, 0): mean kept 0.5 of depth 3, recall (1/2 + 0) / 2 = 0.25.
    # Cut at 0.8 keeps (1, 1): kept 1, recall 0.25; at 0.6: (1, 2), recall 0.75; at 0.2: (3, 2), recall 1.
    points = [float(v) for p in fig["kept"]["cut"].split() for v in p.split(",")]
    expected = [(0, 0), (0.5 / 3, 0.25), (1 / 3, 0.25), (1.5 / 3, 0.75), (2 / 3, 0.75), (2.5 / 3, 1.0), (1.0, 1.0)]
    assert points == pytest.approx([v for x, y in expected for v in (x * SIZE, (1 - y) * SIZE)], abs=0.06)
    top = [float(v) for p in fig["kept"]["top_k"].split() for v in p.split(",")]
    # Top 1: recall (1/2 + 0) / 2; top 2: (1/2 + 1) / 2; top 3: 1.
    assert top == pytest.approx([0, SIZE, SIZE / 3, 0.75 * SIZE, 2 * SIZE / 3, 0.25 * SIZE, SIZE, 0], abs=0.06)
    # The recall-probability rule's curve: every point is (mean kept, mean recall) of some depths
    # (k1, k2), rising in both, from nothing kept to everything.
    combos = {(round((k1 + k2) / 2 / 3 * SIZE, 1), round((1 - ([0, 0.5, 0.5, 1][k1] + [0, 0, 1, 1][k2]) / 2) * SIZE, 1))
              for k1 in range(4) for k2 in range(4)}
    curve = [tuple(float(v) for v in p.split(",")) for p in fig["kept"]["by_probability"].split()]
    assert curve[0] == (0.0, SIZE) and curve[-1] == (SIZE, 0.0) and set(curve) <= combos
    assert all(a[0] <= b[0] and a[1] >= b[1] for a, b in zip(curve, curve[1:]))
    assert fig["kept"]["target"] == 0.9  # no selection: the default target
    # Histograms: relevant scores 0.9, 0.2, 0.6 (one each in bins 18, 4, 12), non-relevant 0.5, 0.8, 0.1.
    shares = [b["share"] for b in fig["histogram"]["relevant"]]
    assert [i for i, s in enumerate(shares) if s] == [4, 12, 18] and sum(shares) == pytest.approx(1)
    assert fig["reliability"]["calibrated"][0]["x"] == pytest.approx(np.mean(sorted(s / 2 for s in
                                                                               [0.9, 0.5, 0.2, 0.8, 0.6, 0.1])[:1]))
    pytest.importorskip("jinja2")
    from thinkrank.evaluation.report import render_report

    result.settings = dict(SETTINGS)
    result.calibration = {"relevance_threshold": 1, "method": "platt", "fitted_on": {"dataset": "d"},
                          "metrics": {"ece_before": 0.2, "ece_after": 0.03, "brier_before": 0.3, "brier_after": 0.2}}
    page = render_report(result)
    assert 'aria-label="reliability diagram"' in page and "held-out ECE 0.200 → 0.030" in page
    assert f'points="{fig["kept"]["cut"]}"' in page and f'points="{fig["kept"]["by_probability"]}"' in page
    result.calibration = None
    assert "reliability diagram" not in render_report(result)


def test_select_options_are_parsed_and_checked():
    from thinkrank.calibration.selection import parse_selection, selection_options

    assert parse_selection("recall=0.9") == {"recall": 0.9, "alpha": 0.1, "rule": "recall-probability"}
    assert parse_selection("recall=0.8, alpha=0.05,rule=top-k") == {"recall": 0.8, "alpha": 0.05, "rule": "top-k"}
    assert parse_selection("p=0.5") == {"probability": 0.5}
    for bad, message in [("recall=0.9,probability=0.5", "give recall"), ("alpha=0.1", "give recall"),
                         ("recall=abc", "not a number"), ("k=3", "expected recall"), ("probability=2", r"\[0, 1\]"),
                         ("recall=1.5", "recall target"), ("recall=0.9,rule=best", "one of recall-probability"),
                         ("probability=0.5,rule=score", "give recall")]:
        with pytest.raises(InvalidInputError, match=message):
            parse_selection(bad)
    for kwargs, message in [({"recall": True}, "must be a number"), ({"recall": "0.9"}, "must be a number"),
                            ({}, "give recall"), ({"recall": 0.9, "alpha": 1.0}, "alpha")]:
        with pytest.raises(InvalidInputError, match=message):
            selection_options(**kwargs, where="select")


def test_a_run_folder_is_read_with_its_labels_and_bad_folders_are_named(tmp_path):
    from thinkrank.calibration import load_labelled_run

    with pytest.raises(InvalidInputError, match="no metrics.json"):
        load_labelled_run(tmp_path)
    (tmp_path / "metrics.json").write_text(json.dumps({"dataset": "d", "run": "bm25", "top_k": 3, "reranker": None}))
    with pytest.raises(InvalidInputError, match="without a reranker"):
        load_labelled_run(tmp_path)
    (tmp_path / "metrics.json").write_text(json.dumps({"dataset": "d", "run": "bm25", "top_k": 3, "reranker": SETTINGS}))
    rows = [{"query_id": "1", "results": [{"doc_id": "a", "score": 0.9}, {"doc_id": "b", "score": 0.4},
                                          {"doc_id": "c", "score": 0.1}]},
            {"query_id": "2", "results": [{"doc_id": "d", "score": 0.7}, {"doc_id": "e", "score": 0.2}]},
            {"query_id": "3", "results": [{"doc_id": "f", "score": 0.5}]}]
    (tmp_path / "rankings.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InvalidInputError, match="--qrels"):
        load_labelled_run(tmp_path)
    (tmp_path / "qrels.trec").write_text("1 0 a 2\n1 0 c 1\n2 0 d 0\n2 0 e 1\n")
    run = load_labelled_run(tmp_path)
    assert [q.query_id for q in run.queries] == ["1", "2"]  # query 3 has no judgments
    assert [q.labels for q in run.queries] == [(1, 0, 1), (0, 1)] and run.unjudged == 1  # b is unjudged
    assert [q.labels for q in load_labelled_run(tmp_path, relevance_threshold=2).queries] == [(1, 0, 0), (0, 0)]
    with pytest.raises(InvalidInputError, match="no candidate .* is relevant"):
        load_labelled_run(tmp_path, relevance_threshold=3)
