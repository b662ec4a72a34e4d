"""Monotone maps from a reranker's raw score to a calibrated probability, and their fits.

Every map works on a *feature* of the score that is a strictly increasing function of it:
``logit(score)`` for pointwise rerankers (Rank1's score is a sigmoid of the answer tokens'
log-odds, so this is those log-odds) and ``log(score)`` for listwise ones (Rank-K's score is
``1 / (rank + 1)``, so this is ``-log(rank + 1)``). Each map is non-decreasing in its
feature, so a document with a higher score never gets a lower probability: rankings, which
stay ordered by the raw score, and the probabilities agree.

* ``platt``: ``sigmoid(a * x + b)``, maximum likelihood; ``a`` is held at 0 (the base rate)
  when the unconstrained fit would make the map decreasing.
* ``temperature``: ``sigmoid(x / T)``, one parameter (no shift), maximum likelihood.
* ``isotonic``: the non-decreasing step fit of the labels (pool-adjacent-violators, ties in
  ``x`` pooled first), interpolated linearly between its knots and clipped outside them, as
  scikit-learn's ``IsotonicRegression(out_of_bounds="clip")`` predicts.

Only numpy: applying a calibration needs no extra.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from thinkrank.errors import InvalidInputError

METHODS = ("platt", "temperature", "isotonic")
SCORE_EPS = 1e-12  # scores of exactly 0 or 1 (float saturation) get a finite feature


def feature(scores: Sequence[float] | np.ndarray, family: str) -> np.ndarray:
    """The increasing feature a map reads: ``logit(score)`` (pointwise) or ``log(score)`` (listwise)."""
    s = np.asarray(scores, dtype=float)
    if family == "pointwise":
        s = np.clip(s, SCORE_EPS, 1 - SCORE_EPS)
        return np.log(s) - np.log1p(-s)
    if family == "listwise":
        return np.log(np.clip(s, SCORE_EPS, 1.0))
    raise InvalidInputError(f"unknown reranker family {family!r}: expected 'pointwise' or 'listwise'")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out = np.empty_like(z, dtype=float)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    e = np.exp(z[~pos])
    out[~pos] = e / (1.0 + e)
    return out


@dataclass(frozen=True)
class CalibrationMap:
    """A fitted map: ``method`` and its ``params`` (JSON values)."""

    method: str
    params: dict[str, Any]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Probabilities for features ``x``."""
        x = np.asarray(x, dtype=float)
        if self.method == "platt":
            return _sigmoid(self.params["a"] * x + self.params["b"])
        if self.method == "temperature":
            return _sigmoid(x / self.params["temperature"])
        if self.method == "isotonic":
            return np.interp(x, self.params["x"], self.params["y"])
        raise InvalidInputError(f"unknown calibration method {self.method!r}; expected one of {', '.join(METHODS)}")


def fit_map(method: str, x: ArrayLike, y: ArrayLike) -> CalibrationMap:
    """Fit ``method`` to features ``x`` and 0/1 labels ``y``.

    Raises:
        InvalidInputError: an unknown method, or no pairs.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if not len(x):
        raise InvalidInputError("no labelled pairs to fit a calibration to")
    if method == "platt":
        a, b = _fit_platt(x, y)
        return CalibrationMap("platt", {"a": a, "b": b})
    if method == "temperature":
        return CalibrationMap("temperature", {"temperature": _fit_temperature(x, y)})
    if method == "isotonic":
        knots_x, knots_y = _fit_isotonic(x, y)
        return CalibrationMap("isotonic", {"x": knots_x, "y": knots_y})
    raise InvalidInputError(f"unknown calibration method {method!r}; expected one of {', '.join(METHODS)}")


def _base_rate_logit(y: np.ndarray) -> float:
    rate = min(max(float(y.mean()), SCORE_EPS), 1 - SCORE_EPS)
    return math.log(rate / (1 - rate))


def _newton(grad_hess, theta: np.ndarray, loss, iterations: int = 100) -> np.ndarray:
    """Damped Newton steps on a convex loss (step halved until the loss does not rise)."""
    current = loss(theta)
    for _ in range(iterations):
        g, h = grad_hess(theta)
        step = np.linalg.solve(h + 1e-12 * np.eye(len(theta)), g)
        scale = 1.0
        while scale > 1e-10:
            candidate = theta - scale * step
            value = loss(candidate)
            if value <= current:
                break
            scale /= 2
        else:
            break
        done = abs(current - value) < 1e-14 * max(1.0, abs(current))
        theta, current = candidate, value
        if done or np.max(np.abs(scale * step)) < 1e-12:
            break
    return theta


def _nll(z: np.ndarray, y: np.ndarray) -> float:
    # -log sigmoid(z) = logaddexp(0, -z); -log(1 - sigmoid(z)) = logaddexp(0, z)
    return float(np.sum(y * np.logaddexp(0, -z) + (1 - y) * np.logaddexp(0, z)))


def _fit_platt(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    design = np.column_stack([x, np.ones_like(x)])

    def grad_hess(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = _sigmoid(design @ theta)
        w = p * (1 - p)
        return design.T @ (p - y), (design * w[:, None]).T @ design

    theta = _newton(grad_hess, np.array([1.0, 0.0]), lambda t: _nll(design @ t, y))
    if theta[0] < 0:  # a decreasing map would reorder documents: the best monotone Platt map is flat
        return 0.0, _base_rate_logit(y)
    return float(theta[0]), float(theta[1])


def _fit_temperature(x: np.ndarray, y: np.ndarray) -> float:
    # Fit the inverse temperature beta (the loss is convex in it); beta <= 0 is not a temperature.
    def grad_hess(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = _sigmoid(theta[0] * x)
        return np.array([x @ (p - y)]), np.array([[np.sum(x * x * p * (1 - p))]])

    beta = float(_newton(grad_hess, np.array([1.0]), lambda t: _nll(t[0] * x, y))[0])
    if beta <= 1e-6:
        raise InvalidInputError(
            "temperature scaling does not fit these scores: higher scores are not more often relevant "
            f"(inverse temperature {beta:.3g}); use --method isotonic or platt"
        )
    return 1.0 / beta


def _fit_isotonic(x: np.ndarray, y: np.ndarray) -> tuple[list[float], list[float]]:
    """Knots of the weighted pool-adjacent-violators fit, duplicates of ``x`` pooled first."""
    ux, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=y) / counts
    values: list[float] = []
    weights: list[float] = []
    sizes: list[int] = []
    for mean, weight in zip(means.tolist(), counts.tolist()):
        values.append(mean)
        weights.append(float(weight))
        sizes.append(1)
        while len(values) > 1 and values[-2] > values[-1]:
            w = weights[-2] + weights[-1]
            v = (values[-2] * weights[-2] + values[-1] * weights[-1]) / w
            n = sizes[-2] + sizes[-1]
            del values[-1], weights[-1], sizes[-1]
            values[-1], weights[-1], sizes[-1] = v, w, n
    fitted = np.repeat(values, sizes)
    # Inside a flat block only its two ends matter for interpolation.
    keep = np.ones(len(ux), dtype=bool)
    keep[1:-1] = (fitted[1:-1] != fitted[:-2]) | (fitted[1:-1] != fitted[2:])
    return ux[keep].tolist(), fitted[keep].tolist()
