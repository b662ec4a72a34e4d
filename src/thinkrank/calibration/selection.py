"""How many documents to keep per query: conformal selection with a recall guarantee, or a
threshold on calibrated probability.

**Conformal mode** (split conformal prediction over queries). The calibration holds ``n``
labelled queries with at least one relevant candidate. A *rule* turns each query's ranking into
a nested family of cuts (keep the top 1, 2, … of its ranking, indexed by a level); for query
``i`` let ``k_i`` be the depth at which its kept candidates first hold a share ``target`` of its
relevant ones, and ``s_i`` the level that cut needs. The level used is the ``j``-th smallest
``s_i``, ``j = ceil((n + 1)(1 - alpha))`` (everything is kept when ``j > n``). If a new query is
exchangeable with the calibration queries (drawn from the same distribution, reranked with the
same setting, with at least one relevant candidate), then

    P(recall of the kept candidates >= target) >= 1 - alpha,

over the draw of the calibration queries and the new query; without ties among the ``s_i`` it
is also ``<= 1 - alpha + 1 / (n + 1)``. The rules:

* ``recall-probability`` (the default): keep the shortest top of the ranking whose probability
  of holding a share ``target`` of the query's relevant candidates, given that it has one, is
  above the level. The probability is computed from the calibrated probabilities of *all* the
  query's candidates, as if their relevance were independent (:func:`recall_probabilities`), so
  a query whose candidates look alike keeps more, and one with a few clear favourites keeps
  fewer. Queries at exactly the level (equal probabilities give every query of the same length
  the same curve) are told apart by the raw score of the next candidate: a query at the level
  stops before a candidate scoring below the level's ``tie_score``. The map only makes this efficient: the guarantee holds for any map fixed before the
  calibration queries' outcomes are seen (``thinkrank calibrate`` fits it on the same run; the
  measured coverage is at its exact value, docs/calibration.md).
* ``score``: keep every candidate whose raw score is at least one threshold for all queries
  (the ``(n + 1 - j)``-th smallest raw score of a query's ``ceil(target * R_i)``-th best relevant
  candidate). It keeps too many when score levels differ between queries.
* ``top-k``: the same number for every query (:func:`conformal_top_k`), the baseline an
  adaptive rule should beat.

**Threshold mode**: keep the candidates whose calibrated probability is ``>= probability``
(no guarantee beyond the calibration's).

Expected recall and precision of a selection are estimated from calibrated probabilities:
``sum(p of kept) / sum(p of all)`` and ``sum(p of kept) / kept``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from thinkrank.calibration.file import Calibration, ConformalQuery, load_calibration
from thinkrank.errors import InvalidInputError
from thinkrank.types import Judgment, Ranking

Rule = Literal["recall-probability", "score", "top-k"]
"""Conformal mode's rules (the module's docstring says what each keeps)."""
RULES: tuple[str, ...] = get_args(Rule)
DEFAULT_RULE: Rule = "recall-probability"


@dataclass
class Selection:
    """What a selection kept of one query's ranking.

    Attributes:
        kept: the judgments kept, best first; ``candidates``: how many there were.
        mode: ``"conformal"`` or ``"threshold"``; ``rule``: conformal mode's rule, and its cut:
            ``recall_probability_level`` and ``tie_score`` (None: everything kept), ``score_threshold`` (-inf:
            everything kept) or ``top_k`` (None: everything kept); ``probability_threshold``:
            threshold mode's cut.
        expected_recall / expected_precision: estimated from calibrated probabilities (None
            when nothing is kept, or the probabilities sum to 0).
    """

    query_id: str | None
    mode: str
    kept: list[Judgment]
    candidates: int
    expected_recall: float | None
    expected_precision: float | None
    score_threshold: float | None = None
    probability_threshold: float | None = None
    target_recall: float | None = None
    alpha: float | None = None
    rule: str | None = None
    recall_probability_level: float | None = None
    tie_score: float | None = None
    top_k: int | None = None
    doc_ids: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.doc_ids = [j.doc_id for j in self.kept]

    def to_dict(self) -> dict[str, object]:
        """The summary written beside a ranking (no judgments: their ids)."""
        return {"mode": self.mode, "kept": len(self.kept), "candidates": self.candidates, "doc_ids": self.doc_ids,
                "expected_recall": self.expected_recall, "expected_precision": self.expected_precision,
                **({"target_recall": self.target_recall, "alpha": self.alpha, "rule": self.rule,
                    **self._cut()} if self.mode == "conformal"
                   else {"probability_threshold": self.probability_threshold})}

    def _cut(self) -> dict[str, object]:
        if self.rule == "score":
            return {"score_threshold": _json_float(self.score_threshold)}
        if self.rule == "top-k":
            return {"top_k": self.top_k}
        return {"recall_probability_level": self.recall_probability_level, "tie_score": _json_float(self.tie_score)}


def _json_float(value: float | None) -> float | None | str:
    return "-inf" if value == -math.inf else value


def _check(target: float, alpha: float, rule: str = DEFAULT_RULE) -> None:
    if not (isinstance(target, (int, float)) and 0 < target <= 1):
        raise InvalidInputError(f"the recall target must be in (0, 1], got {target!r}")
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise InvalidInputError(f"alpha must be in (0, 1), got {alpha!r}")
    if rule not in RULES:
        raise InvalidInputError(f"the conformal rule must be one of {', '.join(RULES)}, got {rule!r}")


def _checked(queries: Sequence[ConformalQuery], target: float, alpha: float) -> None:
    """The checks every conformal cut starts with: values in range, and a query to calibrate on."""
    _check(target, alpha)
    if not queries:
        raise InvalidInputError("the calibration holds no labelled query with a relevant candidate: no conformal selection")


def _reaching(query: ConformalQuery, target: float) -> tuple[int, float]:
    """The 1-based rank and raw score of the relevant candidate with which the query's top first
    holds a share ``target`` of its relevant candidates (at least one)."""
    return query.relevant[max(1, math.ceil(target * len(query.relevant) - 1e-9)) - 1]


def conformal_threshold(queries: Sequence[ConformalQuery], target: float, alpha: float) -> float:
    """The raw-score threshold ``lambda_hat`` of conformal mode (-inf: keep everything)."""
    _checked(queries, target, alpha)
    lambdas = sorted(_reaching(q, target)[1] for q in queries)
    k = math.floor((len(lambdas) + 1) * alpha)
    return -math.inf if k < 1 else lambdas[k - 1]


def conformal_top_k(queries: Sequence[ConformalQuery], target: float, alpha: float) -> int | None:
    """The fixed number of documents per query with the same guarantee (None: all of them)."""
    _checked(queries, target, alpha)
    ranks = sorted(_reaching(q, target)[0] for q in queries)
    k = math.ceil((len(ranks) + 1) * (1 - alpha))
    return None if k > len(ranks) else ranks[k - 1]


def recall_probabilities(probabilities: Sequence[float], target: float) -> np.ndarray:
    """``P[k]`` for ``k = 0 … n``: the probability that the top ``k`` of a ranking hold at least
    a share ``target`` of its relevant candidates, given that it has at least one, when
    candidate ``j`` (in ranking order) is relevant with probability ``probabilities[j]``,
    independently of the others. Non-decreasing in ``k``; ``P[0] = 0``, ``P[n] = 1``.

    Computed exactly from the Poisson-binomial distributions of the relevant counts above
    (``a``) and below (``b``) each depth: recall ``a / (a + b) >= target`` exactly when
    ``b <= a (1 - target) / target``.
    """
    p = np.clip(np.asarray(probabilities, dtype=float), 1e-12, 1.0)  # 0 everywhere would leave nothing to condition on
    n = len(p)
    above = np.zeros((n + 1, n + 1))  # above[k, a]: P(a relevant among the top k)
    above[0, 0] = 1.0
    for k in range(n):
        above[k + 1] = above[k] * (1 - p[k])
        above[k + 1, 1:] += above[k, :-1] * p[k]
    below = np.zeros((n + 1, n + 1))  # below[k, b]: P(b relevant below the top k)
    below[n, 0] = 1.0
    for k in range(n - 1, -1, -1):
        below[k] = below[k + 1] * (1 - p[k])
        below[k, 1:] += below[k + 1, :-1] * p[k]
    a = np.arange(1, n + 1)
    most_below = np.minimum(np.floor(a * (1 - target) / target + 1e-9), n).astype(int)
    reached = (above[:, 1:] * np.cumsum(below, axis=1)[:, most_below]).sum(axis=1)
    out = np.maximum.accumulate(np.clip(reached / above[n, 1:].sum(), 0.0, 1.0))  # given one is relevant
    out[n] = 1.0
    return out


Level = tuple[float, float]
"""A recall-probability level: ``(P, -score)``, compared in that order (see :func:`cut_keys`)."""


def cut_keys(probabilities: Sequence[float], scores: Sequence[float], target: float) -> list[Level]:
    """The key of keeping the top ``k`` of a ranking, ``k = 0 … n``: ``(P_k, -s)`` with ``P_k``
    from :func:`recall_probabilities` and ``s`` the raw score of the next candidate (the running
    minimum of the scores, so keys rise with ``k`` even in a ranking not sorted by score; ``-inf``
    after the last). The recall-probability rule keeps the shortest top whose key is above the
    level; the score only separates tops whose probabilities are equal."""
    reach = recall_probabilities(probabilities, target)
    following = np.minimum.accumulate(np.append(np.asarray(scores, dtype=float), -math.inf))
    return [(float(p), float(-s)) for p, s in zip(reach, following)]


def recall_probability_level(queries: Sequence[ConformalQuery], calibration: Calibration, target: float,
                             alpha: float) -> Level | None:
    """The level of the ``recall-probability`` rule (None: every candidate is kept): the
    ``ceil((n + 1)(1 - alpha))``-th smallest key of the calibration queries' tops one short of
    the target.

    Raises:
        InvalidInputError: no calibration query, or a calibration file without its queries'
            scores (version 1).
    """
    _checked(queries, target, alpha)
    if any(not q.scores for q in queries):
        raise InvalidInputError(
            "this calibration file does not hold its queries' scores (it was written by an older thinkrank), and the "
            "recall-probability rule needs them: refit it with `thinkrank calibrate RUN_DIR`, or choose rule=score"
        )
    levels = sorted(
        cut_keys(calibration.probabilities(q.scores), q.scores, target)[_reaching(q, target)[0] - 1]
        for q in queries
    )
    j = math.ceil((len(levels) + 1) * (1 - alpha))
    return None if j > len(levels) else levels[j - 1]


@dataclass(frozen=True)
class ConformalCut:
    """Conformal mode's cut for one rule, target and alpha (only the rule's own field is set)."""

    rule: str
    recall_probability_level: float | None = None
    tie_score: float | None = None
    score_threshold: float | None = None
    top_k: int | None = None

    def keep(self, scores: Sequence[float], probabilities: Sequence[float], target: float) -> list[int]:
        """The positions (in ranking order) a ranking with these scores and probabilities keeps."""
        if self.rule == "score":
            assert self.score_threshold is not None
            return [i for i, s in enumerate(scores) if s >= self.score_threshold]
        if self.rule == "top-k":
            return list(range(len(scores) if self.top_k is None else min(self.top_k, len(scores))))
        if self.recall_probability_level is None or self.tie_score is None or not len(scores):
            return list(range(len(scores)))
        level = (self.recall_probability_level, -self.tie_score)
        keys = cut_keys(probabilities, scores, target)
        return list(range(next((k for k, key in enumerate(keys) if key > level), len(scores))))


def conformal_cut(calibration: Calibration | str, target: float, alpha: float = 0.1,
                  rule: str = DEFAULT_RULE) -> ConformalCut:
    """Conformal mode's cut from ``calibration``'s labelled queries (computed once per rule,
    target and alpha, then kept on the calibration).

    Raises:
        InvalidInputError: a value out of range, an unknown rule, no labelled query, or a rule
            the file cannot serve.
    """
    cal = load_calibration(calibration)
    _check(target, alpha, rule)
    key = (rule, float(target), float(alpha))
    if key not in cal.cuts:
        if rule == "score":
            cut = ConformalCut(rule, score_threshold=conformal_threshold(cal.conformal, target, alpha))
        elif rule == "top-k":
            cut = ConformalCut(rule, top_k=conformal_top_k(cal.conformal, target, alpha))
        else:
            level = recall_probability_level(cal.conformal, cal, target, alpha)
            cut = ConformalCut(rule) if level is None else ConformalCut(
                rule, recall_probability_level=level[0], tie_score=-level[1])
        cal.cuts[key] = cut
    return cal.cuts[key]  # type: ignore[no-any-return]


def select(ranking: Ranking, calibration: Calibration | str, *, recall: float | None = None, alpha: float = 0.1,
           probability: float | None = None, rule: str = DEFAULT_RULE) -> Selection:
    """Choose which of ``ranking``'s documents to keep: conformal mode with ``recall`` (and
    ``alpha``, ``rule``), or threshold mode with ``probability``. Judgments without a
    ``probability`` get one from ``calibration`` (the ranking itself is not changed).

    Raises:
        InvalidInputError: neither or both of ``recall`` and ``probability``, values out of range,
            an unknown rule.
    """
    cal = load_calibration(calibration)
    if (recall is None) == (probability is None):
        raise InvalidInputError("select needs exactly one of recall= (conformal mode) and probability= (threshold mode)")
    judgments = ranking.judgments
    given = [j.probability for j in judgments]
    probs = [p for p in given if p is not None]
    if len(probs) < len(given):
        probs = cal.probabilities([j.score for j in judgments])
    extra: dict[str, object]
    if recall is not None:
        cut = conformal_cut(cal, recall, alpha, rule)
        keep = cut.keep([j.score for j in judgments], probs, recall)
        extra = {"target_recall": recall, "alpha": alpha, **asdict(cut)}  # the cut's rule and fields
        mode = "conformal"
    else:
        if not (isinstance(probability, (int, float)) and 0 <= probability <= 1):
            raise InvalidInputError(f"the probability threshold must be in [0, 1], got {probability!r}")
        keep = [i for i, p in enumerate(probs) if p >= probability]
        extra = {"probability_threshold": probability}
        mode = "threshold"
    total, kept_mass = sum(probs), sum(probs[i] for i in keep)
    return Selection(
        query_id=ranking.query_id, mode=mode, kept=[judgments[i] for i in keep], candidates=len(judgments),
        expected_recall=kept_mass / total if total > 0 else None,
        expected_precision=kept_mass / len(keep) if keep else None, **extra,  # type: ignore[arg-type]
    )


def selection_options(recall: float | None = None, alpha: float | None = None,
                      probability: float | None = None, rule: str | None = None, *,
                      where: str = "select") -> dict[str, Any]:
    """Checked keyword arguments for :func:`select`: ``recall`` (with an optional ``alpha``,
    default 0.1, and ``rule``, default ``recall-probability``) for conformal mode, or
    ``probability`` for threshold mode. The one check shared by the CLI's ``--select``, the
    server's ``select`` field and the integrations' option.

    Raises:
        InvalidInputError: a mix of modes, neither, or a value out of range (the message starts
            with ``where``).
    """
    hint = "give recall=R[,alpha=A][,rule=RULE] (conformal mode) or probability=P (threshold mode)"
    values = {"recall": recall, "alpha": alpha, "probability": probability}
    for name, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InvalidInputError(f"{where}: {name} must be a number, got {value!r}")
    if (recall is None) == (probability is None) or ((alpha is not None or rule is not None) and recall is None):
        raise InvalidInputError(f"{where}: {hint}")
    if recall is not None:
        out: dict[str, Any] = {"recall": float(recall), "alpha": 0.1 if alpha is None else float(alpha),
                               "rule": DEFAULT_RULE if rule is None else rule}
        try:
            _check(out["recall"], out["alpha"], out["rule"])
        except InvalidInputError as exc:
            raise InvalidInputError(f"{where}: {exc}") from None
        return out
    assert probability is not None
    if not 0 <= probability <= 1:
        raise InvalidInputError(f"{where}: the probability threshold must be in [0, 1], got {probability!r}")
    return {"probability": float(probability)}


def parse_selection(text: str) -> dict[str, Any]:
    """``"recall=0.9"``, ``"recall=0.9,alpha=0.05,rule=score"`` or ``"probability=0.5"``
    (``p=0.5``) as :func:`select`'s keyword arguments.

    Raises:
        InvalidInputError: an unknown key, a value that is not a number, or a mix of modes.
    """
    names = {"recall": "recall", "alpha": "alpha", "probability": "probability", "p": "probability", "rule": "rule"}
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        if key.strip() not in names or not value:
            raise InvalidInputError(
                f"--select {text!r}: expected recall=R[,alpha=A][,rule=RULE] (conformal) or probability=P (threshold), "
                f"got {part!r}"
            )
        name = names[key.strip()]
        if name == "rule":
            out[name] = value.strip()
            continue
        try:
            out[name] = float(value)
        except ValueError:
            raise InvalidInputError(f"--select {text!r}: {value!r} is not a number") from None
    return selection_options(**out, where=f"--select {text!r}")
