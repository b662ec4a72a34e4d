"""The Rank1 reasoning cascade: score every candidate without reasoning, reason where it counts.

Stage 1 scores every candidate of a query with reasoning off (one forward pass each). Stage 2
runs the full reasoning chain only for the candidates that can change the top of the ranking:
the ``top_m`` by stage-1 score, and/or those whose stage-1 score lies in an uncertainty
``band``. A reasoned judgment is exactly the judgment plain Rank1 would give that document.

**Making the two kinds of score comparable.** Reasoning only reorders documents *inside the
stretch of the stage-1 ranking they were chosen from*: the reasoned documents of the top-m (or
of the band, a contiguous stretch of stage-1 scores too) form blocks of consecutive stage-1
positions, and a reasoned document's final ``score`` is its reasoned probability mapped
linearly into its block's stage-1 score range, ``lo + (hi - lo) * p_reasoned``. Unreasoned
documents keep their stage-1 score. So a reasoned score is never compared with an unreasoned
one directly: documents outside a block stay above or below it, and within a block the order
is the reasoned order. Each judgment says which it is (``reasoned``), and keeps its stage-1
score (``quick_score``); the reasoned probability is ``p_true / (p_true + p_false)``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from thinkrank.errors import InvalidInputError
from thinkrank.types import Judgment, Ranking

_PART = re.compile(r"^\s*(?:(top)\s*=\s*(\d+)|(band)\s*=\s*([0-9.]+)\s*:\s*([0-9.]+)|(\d+))\s*$")


@dataclass(frozen=True)
class Cascade:
    """Which candidates of a query get a reasoning chain.

    Args:
        top_m: reason about the best ``top_m`` candidates by stage-1 score (None: none by rank).
        band: reason about every candidate whose stage-1 score ``s`` has ``lo <= s <= hi``.

    Raises:
        InvalidInputError: ``top_m`` < 1, a band outside [0, 1] or reversed, or neither given.
    """

    top_m: int | None = 20
    band: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.top_m is not None and (not isinstance(self.top_m, int) or self.top_m < 1):
            raise InvalidInputError(f"cascade top_m must be an int >= 1 or None, got {self.top_m!r}")
        if self.band is not None:
            lo, hi = self.band
            if not 0.0 <= lo <= hi <= 1.0:
                raise InvalidInputError(f"cascade band must be lo:hi with 0 <= lo <= hi <= 1, got {lo}:{hi}")
        if self.top_m is None and self.band is None:
            raise InvalidInputError("a cascade needs top_m, a band, or both (e.g. 'top=20' or 'band=0.2:0.8')")

    @classmethod
    def parse(cls, spec: str | int | Cascade) -> Cascade:
        """``20``, ``"top=20"``, ``"band=0.2:0.8"`` or ``"top=10,band=0.3:0.7"``.

        Raises:
            InvalidInputError: any other text.
        """
        if isinstance(spec, Cascade):
            return spec
        if isinstance(spec, int) and not isinstance(spec, bool):
            return cls(top_m=spec)
        top: int | None = None
        band: tuple[float, float] | None = None
        for part in str(spec).split(","):
            m = _PART.match(part)
            if not m:
                raise InvalidInputError(
                    f"cannot read cascade {spec!r}: use 'top=M', 'band=LO:HI' or both, e.g. 'top=10,band=0.3:0.7'"
                )
            if m.group(1) or m.group(6):
                top = int(m.group(2) or m.group(6))
            else:
                band = (float(m.group(4)), float(m.group(5)))
        return cls(top_m=top, band=band)

    @property
    def settings(self) -> dict[str, object]:
        return {"top_m": self.top_m, "band": list(self.band) if self.band else None}

    def select(self, scores: Sequence[float]) -> list[int]:
        """Positions (in ``scores``) of the candidates to reason about, best stage-1 score first."""
        order = _order(scores)
        chosen = set(order[: self.top_m] if self.top_m else [])
        if self.band:
            lo, hi = self.band
            chosen |= {i for i, s in enumerate(scores) if lo <= s <= hi}
        return [i for i in order if i in chosen]


def _order(scores: Sequence[float]) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def combine(quick: Sequence[Judgment], reasoned: dict[int, Judgment]) -> list[Judgment]:
    """One query's final judgments: ``quick`` (stage 1, every candidate, in input order) with
    the candidates at positions in ``reasoned`` replaced by their reasoned judgment, scored as
    the module docstring explains."""
    out = [replace(q, reasoned=False, quick_score=q.score) for q in quick]
    order = _order([q.score for q in quick])
    start = 0
    while start < len(order):
        if order[start] not in reasoned:
            start += 1
            continue
        end = start
        while end < len(order) and order[end] in reasoned:
            end += 1
        hi, lo = quick[order[start]].score, quick[order[end - 1]].score
        for i in order[start:end]:
            r = reasoned[i]
            out[i] = replace(r, score=lo + (hi - lo) * r.score, reasoned=True, quick_score=quick[i].score)
        start = end
    return out


@dataclass(frozen=True)
class CascadeStats:
    """What the cascade spent on one query. ``tokens_saved`` is an estimate: the unreasoned
    candidates times the mean length of this query's reasoned chains."""

    candidates: int
    chains: int
    chain_tokens: int
    tokens_saved: int


def cascade_stats(ranking: Ranking) -> CascadeStats:
    """Chains generated and tokens spent and saved for one cascade ranking (from its judgments'
    ``reasoned`` flags)."""
    reasoned = [j for j in ranking if j.reasoned]
    tokens = sum(j.reasoning_tokens for j in reasoned)
    mean = tokens / len(reasoned) if reasoned else 0.0
    return CascadeStats(len(ranking), len(reasoned), tokens, round(mean * (len(ranking) - len(reasoned))))
