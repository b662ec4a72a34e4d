"""Retrieval metrics: ir-measures per query and averaged, FollowIR's p-MRR, NevIR's paired
accuracy, and paired significance tests between two runs."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from thinkrank.datasets.nevir import NevIRPair
from thinkrank.datasets.runs import Run
from thinkrank.errors import InvalidInputError, require

DEFAULT_MEASURES: tuple[str, ...] = ("nDCG@10", "nDCG@20", "AP", "R@100", "RR@10", "Judged@10")
"""nDCG@10/@20, MAP (AP over the whole run), Recall@100, MRR@10 (RR@10), Judged@10."""
_ALIASES = {"MAP": "AP", "MRR": "RR", "MRR@10": "RR@10", "Recall@100": "R@100"}


@dataclass
class RunMetrics:
    """Scores of one run.

    Attributes:
        per_query: qid -> measure name -> value, for every evaluated query.
        aggregate: measure name -> mean over ``per_query`` (trec_eval's averages).
        missing: judged queries the run does not have (scored 0 when ``missing_as_zero``).
    """

    per_query: dict[str, dict[str, float]]
    aggregate: dict[str, float]
    measures: tuple[str, ...]
    missing: list[str] = field(default_factory=list)

    def values(self, measure: str) -> dict[str, float]:
        """qid -> value of one measure."""
        name = measure_name(measure)
        if name not in self.aggregate:
            raise InvalidInputError(f"measure {measure!r} was not computed; computed: {list(self.aggregate)}")
        return {q: m[name] for q, m in self.per_query.items()}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_name(measure: str) -> str:
    """The canonical ir-measures name: ``"MAP"`` -> ``"AP"``, ``"MRR@10"`` -> ``"RR@10"``."""
    ir_measures = require("ir_measures", "eval")
    try:
        return str(ir_measures.parse_measure(_ALIASES.get(measure, measure)))
    except (ValueError, NameError, SyntaxError, TypeError) as exc:
        raise InvalidInputError(f"unknown measure {measure!r}; use ir-measures names like nDCG@10, AP, R@100, RR@10") from exc


def evaluate_run(run: Run | Mapping[str, Mapping[str, float]], qrels: Mapping[str, Mapping[str, int]],
                 measures: Iterable[str] = DEFAULT_MEASURES, *, exclude: Mapping[str, Iterable[str]] | None = None,
                 missing_as_zero: bool = False) -> RunMetrics:
    """Score ``run`` against ``qrels`` with ir-measures (trec_eval definitions).

    Documents are ranked in the run's order (ties keep their listed order). Only queries that
    are both judged and in the run are scored, as trec_eval does; with
    ``missing_as_zero`` judged queries absent from the run count 0 (``trec_eval -c``).
    ``exclude`` drops documents per query before scoring (BRIGHT's ``excluded_ids``).

    Raises:
        InvalidInputError: an unknown measure, or no query in common between run and qrels.
    """
    ir_measures = require("ir_measures", "eval")
    run = run if isinstance(run, Run) else Run.from_scores(run)
    if exclude:
        run = run.without(exclude)
    names = tuple(dict.fromkeys(measure_name(m) for m in measures))
    judged = {q: {d: int(g) for d, g in docs.items()} for q, docs in qrels.items()}
    # Scores handed to ir-measures follow the run's order, so ties keep the order the system
    # listed them in (trec_eval would re-break them by docid; Anserini's published figures,
    # e.g. DL19 BM25+RM3 nDCG@10 0.5216 rather than 0.5221, follow the listed order).
    scored = {q: {d: float(len(run[q]) - i) for i, (d, _) in enumerate(run[q])} for q in run if q in judged and run[q]}
    missing = [q for q in judged if q not in scored]
    if not scored and not missing_as_zero:
        raise InvalidInputError(
            f"run {run.name!r} and the qrels share no query ids (run: {run.qids[:3]}…, qrels: {list(judged)[:3]}…); "
            "are they from the same collection?"
        )
    per_query: dict[str, dict[str, float]] = {q: {} for q in scored}
    evaluator = ir_measures.evaluator([ir_measures.parse_measure(n) for n in names], {q: judged[q] for q in scored})
    for metric in evaluator.iter_calc(scored):
        per_query[metric.query_id][str(metric.measure)] = float(metric.value)
    for values in per_query.values():
        for name in names:
            values.setdefault(name, 0.0)  # a provider may skip a query with no relevant document
    if missing_as_zero:
        per_query.update({q: dict.fromkeys(names, 0.0) for q in missing})
    aggregate = {n: sum(v[n] for v in per_query.values()) / max(len(per_query), 1) for n in names}
    return RunMetrics(per_query, aggregate, names, missing)


@dataclass
class PMRR:
    """FollowIR's p-MRR in [-1, 1] (papers print it x100): > 0 when documents the changed
    instruction made non-relevant move down, < 0 when they move up."""

    score: float
    per_query: dict[str, float]
    per_doc: dict[str, dict[str, float]]
    skipped: list[str] = field(default_factory=list)


def p_mrr(original: Run, changed: Run, changed_docs: Mapping[str, Iterable[str]]) -> PMRR:
    """p-MRR between the run for the original instructions and the run for the changed ones.

    For each document relevant under the original instruction and not under the changed one
    (``changed_docs``, FollowIR's ``qrel_diff``), with ranks r_og and r_new (1 = best; a
    document a run lacks ranks one past its end): ``r_new/r_og - 1`` when it moved up or
    stayed (r_og >= r_new), else ``1 - r_og/r_new``. Averaged per query, then over queries.
    Runs may key queries by the bare id or FollowIR's ``{qid}-og``/``{qid}-changed``, so one
    run holding both versions can be passed twice.

    Raises:
        InvalidInputError: no query of ``changed_docs`` is in both runs.
    """
    per_query, per_doc, skipped = {}, {}, []
    for qid, docs in changed_docs.items():
        og, new = _lookup(original, qid, "-og"), _lookup(changed, qid, "-changed")
        docs = list(docs)
        if og is None or new is None or not docs:
            skipped.append(qid)
            continue
        per_doc[qid] = {d: _rank_change(_rank(og, d), _rank(new, d)) for d in docs}
        per_query[qid] = sum(per_doc[qid].values()) / len(per_doc[qid])
    if not per_query:
        raise InvalidInputError(f"none of the {len(changed_docs)} queries with changed documents is in both runs")
    return PMRR(sum(per_query.values()) / len(per_query), per_query, per_doc, skipped)


def _lookup(run: Run, qid: str, suffix: str) -> list[str] | None:
    for key in (qid + suffix, qid):
        if key in run:
            return run.doc_ids(key)
    return None


def _rank(docids: list[str], docid: str) -> int:
    return docids.index(docid) + 1 if docid in docids else len(docids) + 1


def _rank_change(og_rank: int, new_rank: int) -> float:
    return new_rank / og_rank - 1 if og_rank >= new_rank else 1 - og_rank / new_rank


@dataclass
class PairedAccuracy:
    """NevIR's paired accuracy and which pairs were right."""

    accuracy: float
    correct: dict[str, bool]


def nevir_paired_accuracy(run: Run, pairs: Iterable[NevIRPair]) -> PairedAccuracy:
    """A pair is right only when q1 scores doc1 above doc2 **and** q2 scores doc2 above doc1
    (ties are wrong). ``run`` uses the ids of :meth:`NevIR.collection`.

    Raises:
        InvalidInputError: the run lacks a pair's query or one of its two documents.
    """
    correct = {}
    for pair in pairs:
        (q1, q2), (d1, d2) = pair.qids, pair.docids
        s1, s2 = _pair_scores(run, q1, d1, d2), _pair_scores(run, q2, d1, d2)
        correct[pair.id] = s1[0] > s1[1] and s2[1] > s2[0]
    if not correct:
        raise InvalidInputError("no NevIR pairs given")
    return PairedAccuracy(sum(correct.values()) / len(correct), correct)


def _pair_scores(run: Run, qid: str, d1: str, d2: str) -> tuple[float, float]:
    scores = dict(run[qid]) if qid in run else {}
    if d1 not in scores or d2 not in scores:
        raise InvalidInputError(f"run {run.name!r} must score both {d1!r} and {d2!r} for query {qid!r}")
    return scores[d1], scores[d2]


@dataclass
class PairedTest:
    """Does run B differ from run A on ``measure``? ``diff`` = mean_b - mean_a over ``n`` queries."""

    measure: str
    n: int
    mean_a: float
    mean_b: float
    diff: float
    t_statistic: float
    p_value: float
    permutation_p_value: float | None = None


def paired_test(a: RunMetrics | Mapping[str, float], b: RunMetrics | Mapping[str, float], measure: str = "nDCG@10",
                *, permutations: int = 10_000, seed: int = 0) -> PairedTest:
    """Paired two-sided t-test (scipy ``ttest_rel``) and, unless ``permutations`` is 0, a paired
    randomization test (sign flips of the per-query differences, scipy ``permutation_test``,
    exact when 2^n <= permutations, else ``permutations`` seeded draws).

    Raises:
        InvalidInputError: the two runs were scored on different queries, or fewer than 2.
    """
    stats = require("scipy.stats", "eval")
    va, vb = (x.values(measure) if isinstance(x, RunMetrics) else dict(x) for x in (a, b))
    if set(va) != set(vb):
        only = sorted(set(va) ^ set(vb))
        raise InvalidInputError(f"the runs were scored on different queries ({len(only)} differ, e.g. {only[:3]}); "
                                "evaluate both with missing_as_zero=True or on the same queries")
    if len(va) < 2:
        raise InvalidInputError(f"a paired test needs at least 2 queries, got {len(va)}")
    qids = sorted(va)
    xa, xb = [va[q] for q in qids], [vb[q] for q in qids]
    diffs = [y - x for x, y in zip(xa, xb)]
    if all(d == diffs[0] for d in diffs):  # no variance: scipy returns NaN; the test is degenerate
        t, p = (0.0, 1.0) if diffs[0] == 0 else (math.copysign(math.inf, diffs[0]), 0.0)
    else:
        result = stats.ttest_rel(xb, xa)
        t, p = float(result.statistic), float(result.pvalue)
    perm = None
    if permutations > 0:
        perm = float(stats.permutation_test(
            (xb, xa), lambda x, y, axis: (x - y).mean(axis=axis), permutation_type="samples", vectorized=True,
            n_resamples=permutations, alternative="two-sided", rng=seed,
        ).pvalue)
    mean_a, mean_b = sum(xa) / len(xa), sum(xb) / len(xb)
    return PairedTest(measure_name(measure), len(qids), mean_a, mean_b, mean_b - mean_a, t, p, perm)
