"""Checks for the numbers and flags callers pass in: each names the argument, says what it must
be, and raises :class:`~thinkrank.errors.InvalidInputError` (never a foreign ``TypeError``).

They run before anything expensive, so a bad setting fails in milliseconds instead of after a
model has loaded. ``name`` is how the caller spells the argument: ``"think_budget"`` in the
library, ``"--think-budget"`` on the command line.
"""

from __future__ import annotations

import math
from typing import Any

from thinkrank.errors import InvalidInputError


def _kind(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def check_int(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None,
              optional: bool = False) -> int | None:
    """``value`` if it is an int (not a bool) within ``[minimum, maximum]``; None when ``optional``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{name} must be a whole number{' or None' if optional else ''}, got {_kind(value)}")
    if minimum is not None and value < minimum:
        raise InvalidInputError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise InvalidInputError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_float(name: str, value: Any, *, minimum: float | None = None, maximum: float | None = None,
                positive: bool = False, optional: bool = False) -> float | None:
    """``value`` as a float if it is a finite real number within range (``positive``: > 0)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"{name} must be a number{' or None' if optional else ''}, got {_kind(value)}")
    if not math.isfinite(value):
        raise InvalidInputError(f"{name} must be a finite number, got {value}")
    if positive and value <= 0:
        raise InvalidInputError(f"{name} must be > 0, got {value}")
    if minimum is not None and value < minimum:
        raise InvalidInputError(f"{name} must be >= {minimum:g}, got {value:g}")
    if maximum is not None and value > maximum:
        raise InvalidInputError(f"{name} must be <= {maximum:g}, got {value:g}")
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is a bool (``1`` or ``"yes"`` are refused: they hide typos)."""
    if not isinstance(value, bool):
        raise InvalidInputError(f"{name} must be True or False, got {_kind(value)}")
    return value


def check_optional_str(name: str, value: Any) -> str | None:
    """``value`` if it is a string or None."""
    if value is not None and not isinstance(value, str):
        raise InvalidInputError(f"{name} must be a string or None, got {_kind(value)}")
    return value


def check_top_n(value: Any, name: str = "top_n") -> int | None:
    """A ``top_n`` is None (all) or a whole number >= 1."""
    return check_int(name, value, minimum=1, optional=True)


def check_sampling(temperature: Any, seed: Any, *, temperature_name: str = "temperature",
                   seed_name: str = "seed") -> None:
    """A finite ``temperature`` >= 0 and an int ``seed`` (or None)."""
    check_float(temperature_name, temperature, minimum=0.0)
    check_int(seed_name, seed, optional=True)
