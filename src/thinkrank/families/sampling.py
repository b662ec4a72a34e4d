"""The generation settings a family's released code runs its model with.

Kept apart from :mod:`thinkrank.families.base` (shared with the pointwise families) so that a
family module can state its released budget, temperature and stops as data; a reranker maps
them onto its engine's request.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sampling:
    """Released sampling for one model call. ``temperature`` 0 is greedy; ``top_p``/``top_k``/
    ``min_p`` None mean the engine's neutral value; ``stop`` lists stop strings (none: the model's
    end-of-turn token ends the call)."""

    max_tokens: int
    temperature: float = 0.0
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    stop: tuple[str, ...] = ()
