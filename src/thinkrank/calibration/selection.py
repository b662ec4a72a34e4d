"""How many documents to keep per query: conformal selection with a recall guarantee, or a
threshold on calibrated probability.

**Conformal mode** (split conformal prediction over queries). The calibration holds ``n``
labelled queries with at least one relevant candidate. For query ``i`` with ``R_i`` relevant
candidates, let ``m_i = ceil(target * R_i)`` and ``lambda_i`` the raw score of its ``m_i``-th best
relevant candidate: keeping every candidate with score ``>= lambda`` reaches recall ``>= target``
exactly when ``lambda <= lambda_i``. The threshold is ``lambda_hat``, the ``k``-th smallest
``lambda_i`` with ``k = floor((n + 1) * alpha)``. If a new query is exchangeable with the
calibration queries (drawn from the same distribution, reranked with the same setting, with
at least one relevant candidate), then

    P(recall of the kept candidates >= target) >= 1 - alpha,

over the draw of the calibration queries and the new query; without ties among the
``lambda_i`` it is also ``<= 1 - alpha + 1 / (n + 1)``. The cut is one score threshold for all
queries, so how many documents are kept adapts to each query's scores. With
``k = 0`` (``n < 1/alpha - 1``) no threshold is safe and every candidate is kept.

:func:`conformal_top_k` is the same guarantee for a fixed number of documents per query
(the ``ceil((n + 1)(1 - alpha))``-th smallest rank at which a query reaches the target), the
baseline an adaptive cut should beat.

**Threshold mode**: keep the candidates whose calibrated probability is ``>= probability``
(no guarantee beyond the calibration's).

Expected recall and precision of a selection are estimated from calibrated probabilities:
``sum(p of kept) / sum(p of all)`` and ``sum(p of kept) / kept``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from thinkrank.calibration.file import Calibration, ConformalQuery, load_calibration
from thinkrank.errors import InvalidInputError
from thinkrank.types import Judgment, Ranking


@dataclass
class Selection:
    """What a selection kept of one query's ranking.

    Attributes:
        kept: the judgments kept, best first; ``candidates``: how many there were.
        mode: ``"conformal"`` or ``"threshold"``; ``score_threshold``: the raw-score cut of
            conformal mode (-inf: everything kept), ``probability_threshold`` that of threshold mode.
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
    doc_ids: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.doc_ids = [j.doc_id for j in self.kept]

    def to_dict(self) -> dict[str, object]:
        """The summary written beside a ranking (no judgments: their ids)."""
        return {"mode": self.mode, "kept": len(self.kept), "candidates": self.candidates, "doc_ids": self.doc_ids,
                "expected_recall": self.expected_recall, "expected_precision": self.expected_precision,
                **({"target_recall": self.target_recall, "alpha": self.alpha,
                    "score_threshold": _json_float(self.score_threshold)} if self.mode == "conformal"
                   else {"probability_threshold": self.probability_threshold})}


def _json_float(value: float | None) -> float | None | str:
    return "-inf" if value == -math.inf else value


def _check(target: float, alpha: float) -> None:
    if not (isinstance(target, (int, float)) and 0 < target <= 1):
        raise InvalidInputError(f"the recall target must be in (0, 1], got {target!r}")
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise InvalidInputError(f"alpha must be in (0, 1), got {alpha!r}")


def _needed(query: ConformalQuery, target: float) -> int:
    """How many of the query's relevant candidates reach recall ``target`` (at least 1)."""
    return max(1, math.ceil(target * len(query.relevant) - 1e-9))


def conformal_threshold(queries: Sequence[ConformalQuery], target: float, alpha: float) -> float:
    """The raw-score threshold ``lambda_hat`` of conformal mode (-inf: keep everything)."""
    _check(target, alpha)
    if not queries:
        raise InvalidInputError("the calibration holds no labelled query with a relevant candidate: no conformal selection")
    lambdas = sorted(q.relevant[_needed(q, target) - 1][1] for q in queries)
    k = math.floor((len(lambdas) + 1) * alpha)
    return -math.inf if k < 1 else lambdas[k - 1]


def conformal_top_k(queries: Sequence[ConformalQuery], target: float, alpha: float) -> int | None:
    """The fixed number of documents per query with the same guarantee (None: all of them)."""
    _check(target, alpha)
    if not queries:
        raise InvalidInputError("the calibration holds no labelled query with a relevant candidate: no conformal selection")
    ranks = sorted(q.relevant[_needed(q, target) - 1][0] for q in queries)
    k = math.ceil((len(ranks) + 1) * (1 - alpha))
    return None if k > len(ranks) else ranks[k - 1]


def select(ranking: Ranking, calibration: Calibration | str, *, recall: float | None = None, alpha: float = 0.1,
           probability: float | None = None) -> Selection:
    """Choose which of ``ranking``'s documents to keep: conformal mode with ``recall`` (and
    ``alpha``), or threshold mode with ``probability``. Judgments without a ``probability``
    get one from ``calibration`` (the ranking itself is not changed).

    Raises:
        InvalidInputError: neither or both of ``recall`` and ``probability``, values out of range.
    """
    cal = load_calibration(calibration)
    if (recall is None) == (probability is None):
        raise InvalidInputError("select needs exactly one of recall= (conformal mode) and probability= (threshold mode)")
    judgments = ranking.judgments
    given = [j.probability for j in judgments]
    probs = [p for p in given if p is not None]
    if len(probs) < len(given):
        probs = cal.probabilities([j.score for j in judgments])
    if recall is not None:
        lam = conformal_threshold(cal.conformal, recall, alpha)
        keep = [i for i, j in enumerate(judgments) if j.score >= lam]
        extra = {"score_threshold": lam, "target_recall": recall, "alpha": alpha}
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
        expected_precision=kept_mass / len(keep) if keep else None, **extra,
    )


def selection_options(recall: float | None = None, alpha: float | None = None,
                      probability: float | None = None, *, where: str = "select") -> dict[str, float]:
    """Checked keyword arguments for :func:`select`: ``recall`` (with an optional ``alpha``,
    default 0.1) for conformal mode, or ``probability`` for threshold mode. The one check shared
    by the CLI's ``--select``, the server's ``select`` field and the integrations' option.

    Raises:
        InvalidInputError: a mix of modes, neither, or a value out of range (the message starts
            with ``where``).
    """
    hint = "give recall=R[,alpha=A] (conformal mode) or probability=P (threshold mode)"
    values = {"recall": recall, "alpha": alpha, "probability": probability}
    for name, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InvalidInputError(f"{where}: {name} must be a number, got {value!r}")
    if (recall is None) == (probability is None) or (alpha is not None and recall is None):
        raise InvalidInputError(f"{where}: {hint}")
    if recall is not None:
        out = {"recall": float(recall), "alpha": 0.1 if alpha is None else float(alpha)}
        try:
            _check(out["recall"], out["alpha"])
        except InvalidInputError as exc:
            raise InvalidInputError(f"{where}: {exc}") from None
        return out
    assert probability is not None
    if not 0 <= probability <= 1:
        raise InvalidInputError(f"{where}: the probability threshold must be in [0, 1], got {probability!r}")
    return {"probability": float(probability)}


def parse_selection(text: str) -> dict[str, float]:
    """``"recall=0.9"``, ``"recall=0.9,alpha=0.05"`` or ``"probability=0.5"`` (``p=0.5``) as
    :func:`select`'s keyword arguments.

    Raises:
        InvalidInputError: an unknown key, a value that is not a number, or a mix of modes.
    """
    names = {"recall": "recall", "alpha": "alpha", "probability": "probability", "p": "probability"}
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        if key.strip() not in names or not value:
            raise InvalidInputError(
                f"--select {text!r}: expected recall=R[,alpha=A] (conformal) or probability=P (threshold), got {part!r}"
            )
        try:
            out[names[key.strip()]] = float(value)
        except ValueError:
            raise InvalidInputError(f"--select {text!r}: {value!r} is not a number") from None
    return selection_options(**out, where=f"--select {text!r}")
