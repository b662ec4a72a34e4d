"""A fitted calibration: the map, the reranker setting it belongs to, its held-out metrics, and
the labelled queries conformal selection needs; saved as a small versioned JSON file.

A calibration belongs to one reranker setting: the ``settings`` dict a reranker reports (the
one the judgment cache keys by: model, family, prompt, budget, reasoning, cascade, …).
Applying it to a reranker with other settings is refused, naming what differs; only
``engine`` may differ, because the score is the same on every engine.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from thinkrank.cache import digest
from thinkrank.calibration.maps import CalibrationMap, feature
from thinkrank.errors import InvalidInputError
from thinkrank.io import write_text_atomic
from thinkrank.types import Judgment, Ranking

FORMAT = "thinkrank-calibration"
VERSION = 2
"""2: each conformal query also holds every candidate's raw score (the recall-probability rule
needs them); version 1 files are read, and work with the other rules."""
SCORE_NEUTRAL = ("engine",)
"""Settings that do not change a score, so a calibration carries over between them."""


@dataclass(frozen=True)
class ConformalQuery:
    """A labelled calibration query as conformal selection reads it: its number of candidates,
    the 1-based rank and raw score of each relevant candidate, best first, and every candidate's
    raw score in ranking order (empty in files of version 1)."""

    candidates: int
    relevant: tuple[tuple[int, float], ...]
    scores: tuple[float, ...] = ()


@dataclass
class Calibration:
    """Scores to probabilities for one reranker setting.

    Attributes:
        map: the fitted monotone map; ``family``: ``"pointwise"`` or ``"listwise"``.
        settings: the reranker settings it was fitted for.
        relevance_threshold: the lowest qrels grade counted relevant.
        metrics: held-out (query-level cross-validated) ``ece_before``, ``ece_after``,
            ``brier_before``, ``brier_after``, ``log_loss_before``, ``log_loss_after``.
        fitted_on: dataset, run, queries and pairs of the fit; ``cross_validation``: folds,
            seed and each method's held-out metrics.
        conformal: the labelled queries with at least one relevant candidate, for
            :func:`~thinkrank.calibration.selection.select`; ``cuts``: the conformal cuts
            computed from them so far.
    """

    map: CalibrationMap
    family: str
    settings: dict[str, Any]
    relevance_threshold: int
    metrics: dict[str, float] = field(default_factory=dict)
    fitted_on: dict[str, Any] = field(default_factory=dict)
    cross_validation: dict[str, Any] = field(default_factory=dict)
    conformal: list[ConformalQuery] = field(default_factory=list)
    cuts: dict[tuple[str, float, float], Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    """Conformal cuts already computed from ``conformal`` (by rule, target, alpha)."""

    @property
    def method(self) -> str:
        return self.map.method

    # ---- applying --------------------------------------------------------------------------
    def probabilities(self, scores: Sequence[float] | np.ndarray) -> list[float]:
        """Calibrated probabilities of raw scores (non-decreasing in the score)."""
        if not len(scores):
            return []
        return [float(p) for p in self.map(feature(scores, self.family))]

    def apply(self, rankings: Iterable[Ranking]) -> None:
        """Set ``probability`` on every judgment of ``rankings`` (in place; order unchanged)."""
        for ranking in rankings:
            self.apply_judgments(ranking.judgments)

    def apply_judgments(self, judgments: Sequence[Judgment]) -> None:
        """Set ``probability`` on each judgment from its score (in place)."""
        for judgment, p in zip(judgments, self.probabilities([j.score for j in judgments])):
            judgment.probability = p

    def fits(self, settings: dict[str, Any]) -> bool:
        """Whether this calibration belongs to a reranker with ``settings``."""
        return digest(_scoring(self.settings)) == digest(_scoring(settings))

    def check_settings(self, settings: dict[str, Any], where: str = "this reranker") -> None:
        """Refuse a reranker whose settings are not the ones this calibration was fitted for.

        Raises:
            InvalidInputError: naming each setting that differs, with both values.
        """
        if self.fits(settings):
            return
        mine, theirs = _scoring(self.settings), _scoring(settings)
        differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        shown = "; ".join(f"{k}: calibrated {_short(mine.get(k))}, {where} {_short(theirs.get(k))}" for k in differ[:6])
        raise InvalidInputError(
            f"the calibration was fitted for another reranker setting ({shown}); fit one for this setting with "
            "`thinkrank calibrate RUN_DIR` on an evaluate run made with the same options"
        )

    # ---- the file ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION,
            "method": self.map.method, "params": self.map.params, "family": self.family,
            "feature": "logit(score)" if self.family == "pointwise" else "log(score)",
            "settings": self.settings, "settings_digest": digest(self.settings),
            "relevance_threshold": self.relevance_threshold,
            "metrics": self.metrics, "fitted_on": self.fitted_on, "cross_validation": self.cross_validation,
            "conformal": {"queries": [[q.candidates, [list(r) for r in q.relevant], list(q.scores)]
                                      for q in self.conformal]},
        }

    def save(self, path: str | Path) -> Path:
        return write_text_atomic(Path(path), json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n")


def load_calibration(source: str | Path | Calibration) -> Calibration:
    """A calibration from its JSON file (a :class:`Calibration` is returned as it is).

    Raises:
        InvalidInputError: a missing or unreadable file, not a thinkrank calibration, or one
            written by a newer thinkrank.
    """
    if isinstance(source, Calibration):
        return source
    path = Path(source)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidInputError(f"calibration file not found: {path} (make one with `thinkrank calibrate RUN_DIR`)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"cannot read calibration {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidInputError(f"{path} is not a thinkrank calibration file (no \"format\": \"{FORMAT}\")")
    if not isinstance(data.get("version"), int) or data["version"] > VERSION:
        raise InvalidInputError(
            f"{path} is calibration version {data.get('version')!r}; this thinkrank reads version {VERSION}: upgrade thinkrank"
        )
    try:
        cal = Calibration(
            map=CalibrationMap(data["method"], dict(data["params"])), family=data["family"],
            settings=dict(data["settings"]), relevance_threshold=int(data["relevance_threshold"]),
            metrics=dict(data.get("metrics", {})), fitted_on=dict(data.get("fitted_on", {})),
            cross_validation=dict(data.get("cross_validation", {})),
            conformal=[_conformal_query(*q) for q in data.get("conformal", {}).get("queries", [])],
        )
        cal.probabilities(np.array([0.5]))  # a map that cannot be evaluated fails here, not mid-rerank
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"{path} is a damaged calibration file ({type(exc).__name__}: {exc})") from None
    return cal


def _conformal_query(candidates: Any, relevant: Any, scores: Any = ()) -> ConformalQuery:
    """One saved conformal query (version 1: no scores)."""
    query = ConformalQuery(int(candidates), tuple((int(r), float(s)) for r, s in relevant),
                           tuple(float(s) for s in scores))
    if query.scores and len(query.scores) != query.candidates:
        raise ValueError(f"a conformal query holds {len(query.scores)} scores for {query.candidates} candidates")
    return query


def _scoring(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings that change a score."""
    return {k: v for k, v in settings.items() if k not in SCORE_NEUTRAL}


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def calibration_for(source: str | Path | Calibration | None, settings: dict[str, Any],
                    where: str = "this reranker") -> Calibration | None:
    """The calibration ``source`` names, checked against a reranker's ``settings`` (None: none).

    Raises:
        InvalidInputError: an unreadable file, or one fitted for other settings.
    """
    if source is None:
        return None
    cal = load_calibration(source)
    cal.check_settings(settings, where)
    return cal
