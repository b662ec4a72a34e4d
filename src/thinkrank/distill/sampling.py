"""Draw the paper's data mix of (query, passage) pairs from a collection and a first-stage run.

Rank1 (§2.1) prompted its teacher with equal parts of: qrels positives, sampled negatives, and
hard negatives from two rank bands of a strong run (1–5 and 5–10). Here each part is a
*source* with a share of the total:

* ``positive``: a judged relevant document (grade >= ``min_grade``);
* ``negative``: a sampled negative: a random corpus document (``negatives="random"``) or one
  from deep in the run (``negatives="run"``, ranks ``deep_band``), never a qrels positive;
* ``hard:A-B``: a document the run ranks A..B (inclusive, from 1) that is not a qrels positive.

The paper's second band is "5–10"; the default here is ``hard:6-10`` so the two bands do not
overlap (pass ``hard:5-10`` for the literal reading). A pair is drawn at most once.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from thinkrank.datasets.collection import Collection
from thinkrank.datasets.runs import Run
from thinkrank.distill.records import LabeledPair
from thinkrank.errors import InvalidInputError

DEFAULT_SHARES: dict[str, float] = {"positive": 0.25, "negative": 0.25, "hard:1-5": 0.25, "hard:6-10": 0.25}
_BAND = re.compile(r"^hard:(\d+)-(\d+)$")


@dataclass
class MixConfig:
    """What to draw.

    Attributes:
        total: pairs to draw in all (each source gets its share, rounded to sum to ``total``).
        shares: source -> weight (normalised to 1).
        negatives: ``"random"`` (any corpus document), ``"run"`` (ranks ``deep_band`` of the
            run) or ``"auto"`` (run when there is one, else random).
        deep_band: inclusive rank range for run-sampled negatives.
        min_grade: the lowest qrels grade that counts as relevant.
        seed: everything drawn is a function of the inputs and this seed.
    """

    total: int = 1000
    shares: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SHARES))
    negatives: str = "auto"
    deep_band: tuple[int, int] = (11, 100)
    min_grade: int = 1
    seed: int = 0

    def validate(self) -> None:
        """Raises :class:`InvalidInputError` on a bad total, share, source name or band."""
        if self.total < 1:
            raise InvalidInputError(f"the number of pairs must be >= 1, got {self.total}")
        if (not self.shares or any(not math.isfinite(v) or v < 0 for v in self.shares.values())
                or sum(self.shares.values()) <= 0):
            raise InvalidInputError(f"shares must be >= 0 and not all zero, got {self.shares}")
        for source in self.shares:
            parse_source(source)
        if self.negatives not in ("auto", "random", "run"):
            raise InvalidInputError(f"negatives must be auto, random or run, got {self.negatives!r}")
        _check_band(self.deep_band, "deep band")


@dataclass
class SourceCount:
    """How one source fared: asked for, could have had, and drew."""

    source: str
    requested: int
    available: int
    drawn: int


@dataclass
class SampleResult:
    """The drawn pairs (shuffled) and a per-source account of the draw."""

    pairs: list[LabeledPair]
    counts: list[SourceCount]
    queries: int

    def summary(self) -> dict[str, object]:
        return {"pairs": len(self.pairs), "queries": self.queries,
                "sources": [c.__dict__ for c in self.counts]}


def parse_source(source: str) -> tuple[str, tuple[int, int] | None]:
    """``("positive", None)``, ``("negative", None)`` or ``("hard", (a, b))``.

    Raises:
        InvalidInputError: an unknown source or a bad band.
    """
    if source in ("positive", "negative"):
        return source, None
    match = _BAND.match(source)
    if not match:
        raise InvalidInputError(f"unknown source {source!r}: use positive, negative or hard:A-B (e.g. hard:1-5)")
    band = (int(match.group(1)), int(match.group(2)))
    _check_band(band, source)
    return "hard", band


def parse_band(text: str) -> tuple[int, int]:
    """``"11-100"`` -> ``(11, 100)``. Raises :class:`InvalidInputError` when malformed."""
    match = re.match(r"^(\d+)-(\d+)$", text.strip())
    if not match:
        raise InvalidInputError(f"a rank band is written A-B (e.g. 11-100), got {text!r}")
    band = (int(match.group(1)), int(match.group(2)))
    _check_band(band, text)
    return band


def _check_band(band: tuple[int, int], name: str) -> None:
    if band[0] < 1 or band[1] < band[0]:
        raise InvalidInputError(f"{name}: a rank band needs 1 <= A <= B, got {band[0]}-{band[1]}")


def split_total(total: int, shares: Mapping[str, float]) -> dict[str, int]:
    """``total`` split by ``shares`` with largest remainders, so the parts sum to ``total``."""
    weight = sum(shares.values())
    exact = {k: total * v / weight for k, v in shares.items()}
    parts = {k: int(v) for k, v in exact.items()}
    for key in sorted(exact, key=lambda k: -(exact[k] - parts[k]))[: total - sum(parts.values())]:
        parts[key] += 1
    return parts


def sample_pairs(collection: Collection, run: Run | None, config: MixConfig) -> SampleResult:
    """Draw ``config.total`` labelled pairs from ``collection`` (and ``run`` for hard/deep negatives).

    Only queries with at least one positive are used. Sources whose pool is smaller than their
    share give all they have (see :attr:`SampleResult.counts`); nothing is silently refilled.

    Raises:
        InvalidInputError: a bad config, no judged query, or a run-based source without a run.
    """
    config.validate()
    positives = _positives(collection, config.min_grade)
    if not positives:
        raise InvalidInputError(
            f"collection {collection.name!r} has no query with a judgment of grade >= {config.min_grade}; "
            "pairs need qrels positives"
        )
    qids = list(positives)
    # Documents judged somewhat relevant (0 < grade < min_grade) are neither positives nor negatives.
    not_negative = {q: {d for d, g in collection.qrels.get(q, {}).items() if g > 0} | set(positives[q]) for q in qids}
    method = config.negatives if config.negatives != "auto" else ("run" if run is not None else "random")
    needs_run = [s for s in config.shares if config.shares[s] > 0 and (s.startswith("hard:") or (s == "negative" and method == "run"))]
    if needs_run and run is None:
        raise InvalidInputError(f"sources {needs_run} need a first-stage run: pass one (or a BM25 run), or set their share to 0")
    rng = random.Random(config.seed)
    targets = split_total(config.total, config.shares)
    taken: set[tuple[str, str]] = set()
    drawn: list[LabeledPair] = []
    counts = []
    # Fixed order: positives, then the run's bands, then sampled negatives, so a document in a
    # hard band is counted as hard rather than as a sampled negative.
    for source in sorted(config.shares, key=_source_order):
        kind, band = parse_source(source)
        if kind == "positive":
            pool = [_pair(collection, q, d, True, source) for q in qids for d in positives[q]]
        elif kind == "hard" or method == "run":
            assert run is not None
            band = band or config.deep_band
            label = source if kind == "hard" else "negative"
            pool = [_pair(collection, q, d, False, label, rank)
                    for q in qids if q in run for rank, d in _band(run, q, band) if d not in not_negative[q]]
        else:
            pool = []
        if kind == "negative" and method == "random":
            picked, available = _random_negatives(collection, qids, not_negative, targets[source], taken, rng)
        else:
            pool = [p for p in pool if (p.qid, p.docid) not in taken]
            available = len(pool)
            picked = rng.sample(pool, min(targets[source], available))
        taken.update((p.qid, p.docid) for p in picked)
        drawn.extend(picked)
        counts.append(SourceCount(source, targets[source], available, len(picked)))
    rng.shuffle(drawn)
    return SampleResult(drawn, counts, len({p.qid for p in drawn}))


def _source_order(source: str) -> tuple[int, str]:
    kind, band = parse_source(source)
    return ({"positive": 0, "hard": 1, "negative": 2}[kind], f"{band[0]:09d}" if band else source)


def _positives(collection: Collection, min_grade: int) -> dict[str, list[str]]:
    out = {}
    for qid in collection.queries:
        docs = [d for d, g in collection.qrels.get(qid, {}).items() if g >= min_grade and d in collection.corpus]
        if docs:
            out[qid] = docs
    return out


def _band(run: Run, qid: str, band: tuple[int, int]) -> list[tuple[int, str]]:
    docs = run.doc_ids(qid)
    return [(rank, docs[rank - 1]) for rank in range(band[0], min(band[1], len(docs)) + 1)]


def _pair(collection: Collection, qid: str, docid: str, label: bool, source: str, rank: int | None = None) -> LabeledPair:
    doc = collection.corpus.get(docid)
    if doc is None:
        raise InvalidInputError(f"document {docid!r} (query {qid!r}) is not in the corpus of {collection.name!r}; is the run from another collection?")
    return LabeledPair(qid, docid, collection.queries[qid], doc.passage, label, source, rank)


def _random_negatives(
    collection: Collection, qids: Sequence[str], not_negative: Mapping[str, set[str]], n: int,
    taken: set[tuple[str, str]], rng: random.Random,
) -> tuple[list[LabeledPair], int]:
    """``n`` random (query, document) pairs that are not judged relevant and not taken yet.

    Rejection sampling: the corpus dwarfs any query's positives, so a draw almost never misses.
    """
    docids = sorted(collection.corpus)
    judged_pos = {(q, d) for q in qids for d in not_negative[q]}
    # Only pairs that could still be drawn: corpus documents, not judged relevant, not taken
    # by an earlier source (the other sources count their pools the same way).
    in_corpus = collection.corpus.keys()
    excluded = {(q, d) for q, d in judged_pos if d in in_corpus} | {(q, d) for q, d in taken if q in not_negative}
    available = len(qids) * len(docids) - len(excluded)
    out: list[LabeledPair] = []
    seen = set(taken)
    attempts = 0
    while len(out) < min(n, available) and attempts < 50 * n + 1000:
        attempts += 1
        qid, docid = rng.choice(qids), rng.choice(docids)
        if (qid, docid) in seen or (qid, docid) in judged_pos:
            continue
        seen.add((qid, docid))
        out.append(_pair(collection, qid, docid, False, "negative"))
    return out, available
