"""How good probabilities are: expected calibration error (equal-mass bins), Brier score, log loss.

All take probabilities ``p`` and 0/1 labels ``y`` of the same length. ECE uses equal-mass bins:
the pairs sorted by probability are cut into ``bins`` groups of (nearly) equal size (ties kept
together), so that every bin holds enough pairs to estimate its frequency (equal-width bins leave most of the
mass of a polarised reranker in the two end bins).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from thinkrank.errors import InvalidInputError

LOG_LOSS_EPS = 1e-15  # probabilities are clipped to [eps, 1 - eps]: isotonic maps may give exact 0 or 1


@dataclass(frozen=True)
class ReliabilityBin:
    """One equal-mass bin: its pairs' mean probability, fraction relevant and count."""

    mean_probability: float
    fraction_relevant: float
    count: int


def _arrays(p: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    if p.shape != y.shape or p.ndim != 1 or not len(p):
        raise InvalidInputError(f"need equally long, non-empty lists of probabilities and labels, got {p.shape} and {y.shape}")
    if np.any((p < 0) | (p > 1)) or not np.all(np.isfinite(p)):
        raise InvalidInputError("probabilities must be finite and within [0, 1]")
    if not np.all((y == 0) | (y == 1)):
        raise InvalidInputError("labels must be 0 or 1")
    return p, y


def reliability_bins(p: ArrayLike, y: ArrayLike, bins: int = 10) -> list[ReliabilityBin]:
    """The equal-mass bins of a reliability diagram (fewer when there are fewer pairs than bins).
    Pairs are ordered by probability and cut into ``bins`` groups of (nearly) equal size, except
    that equal probabilities always share a bin (the one their first member falls in): a bin
    boundary inside a tie would make the result depend on the pairs' input order (a flat map,
    or an isotonic step, would be scored by how its labels happen to be listed)."""
    p, y = _arrays(p, y)
    if bins < 1:
        raise InvalidInputError(f"bins must be >= 1, got {bins}")
    order = np.argsort(p, kind="stable")
    count = min(bins, len(p))
    sizes = [len(g) for g in np.array_split(order, count)]
    bin_at = np.repeat(np.arange(count), sizes)  # the bin of each sorted position
    which = bin_at[np.searchsorted(p[order], p[order], side="left")]  # a tie goes with its first member
    groups = [order[which == b] for b in range(count)]
    return [ReliabilityBin(float(p[g].mean()), float(y[g].mean()), len(g)) for g in groups if len(g)]


def ece(p: ArrayLike, y: ArrayLike, bins: int = 10) -> float:
    """Expected calibration error over equal-mass bins: sum over bins of
    ``count / n * |mean probability - fraction relevant|``."""
    found = reliability_bins(p, y, bins)
    n = sum(b.count for b in found)
    return float(sum(b.count / n * abs(b.mean_probability - b.fraction_relevant) for b in found))


def brier(p: ArrayLike, y: ArrayLike) -> float:
    """Mean squared difference between probability and label."""
    p, y = _arrays(p, y)
    return float(np.mean((p - y) ** 2))


def log_loss(p: ArrayLike, y: ArrayLike) -> float:
    """Mean negative log-likelihood of the labels (natural log), probabilities clipped to
    ``[1e-15, 1 - 1e-15]``."""
    p, y = _arrays(p, y)
    q = np.clip(p, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log1p(-q)))


def summary(p: ArrayLike, y: ArrayLike, bins: int = 10) -> dict[str, float]:
    """``{"ece", "brier", "log_loss"}`` of one set of probabilities."""
    return {"ece": ece(p, y, bins), "brier": brier(p, y), "log_loss": log_loss(p, y)}
