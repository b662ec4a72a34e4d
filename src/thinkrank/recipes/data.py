"""Stage 1, data: the training claims split by query into train and dev, a BM25 run over the
same corpus for the hard negatives, and the drawn pairs. The test claims are read only to prove
that none of them (by id or by text) reaches training."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from thinkrank.datasets.collection import Collection, load_collection, read_queries
from thinkrank.datasets.runs import Run, read_trec_run, write_trec_run
from thinkrank.distill import LabeledPair, read_pairs, sample_pairs, write_jsonl
from thinkrank.errors import InvalidInputError
from thinkrank.recipes.config import RecipeConfig

RUN_DEPTH = 100  # the mix's sampled negatives come from ranks 11-100 of the run


@dataclass
class Split:
    """Training claims by role; ``dropped`` share their text with a test claim."""

    train: list[str]
    dev: list[str]
    dropped: list[str]

    def to_dict(self) -> dict[str, list[str]]:
        return {"train": self.train, "dev": self.dev, "dropped_same_text_as_test": self.dropped}


def normal(text: str) -> str:
    return " ".join(text.lower().split())


def test_claims(config: RecipeConfig) -> dict[str, str]:
    """The test claims' ids and texts: only what the leakage check needs (no judgments)."""
    queries, _ = read_queries(config.data / "queries.jsonl")
    return queries


def assert_no_test_leak(qids: list[str], texts: list[str], test: dict[str, str], where: str) -> None:
    """Raises :class:`InvalidInputError` when a test claim's id or text is among the given ones."""
    by_id = sorted(set(qids) & set(test))
    test_texts = {normal(t) for t in test.values()}
    by_text = sorted({t for t in texts if normal(t) in test_texts})
    if by_id or by_text:
        raise InvalidInputError(f"{where} holds test claims (ids {by_id[:5]}, texts {by_text[:2]}); "
                                "the recipe must never train or select on test data")


def split_queries(train: Collection, test: dict[str, str], config: RecipeConfig) -> Split:
    """Judged training claims, minus those whose text is a test claim's, shuffled by the seed and
    cut into dev (``dev_queries`` or ``dev_fraction``) and train."""
    test_texts = {normal(t) for t in test.values()}
    judged = [q for q in train.queries if train.qrels.get(q)]
    dropped = [q for q in judged if q in test or normal(train.queries[q]) in test_texts]
    kept = [q for q in judged if q not in set(dropped)]
    random.Random(config.seed).shuffle(kept)
    if config.train_queries is not None:
        kept = kept[: config.train_queries]
    n_dev = config.dev_queries if config.dev_queries is not None else max(2, round(len(kept) * config.dev_fraction))
    if n_dev >= len(kept) - 1:
        raise InvalidInputError(f"{len(kept)} training claims cannot hold a dev split of {n_dev}; lower dev_queries")
    return Split(sorted(kept[n_dev:], key=int), sorted(kept[:n_dev], key=int), dropped)


def load_train(config: RecipeConfig) -> Collection:
    return load_collection(config.data / "train")


def build_data(config: RecipeConfig, folder: Path) -> None:
    """Write ``split.json``, ``bm25-train.trec`` and ``pairs.jsonl`` into ``folder``."""
    from thinkrank.retrieval.bm25 import bm25_run

    train = load_train(config)
    test = test_claims(config)
    split = split_queries(train, test, config)
    used = split.train + split.dev
    assert_no_test_leak(used, [train.queries[q] for q in used], test, "the training split")
    run = bm25_run(train, RUN_DEPTH, queries={q: train.queries[q] for q in used})
    drawn = sample_pairs(train.subset(split.train), run, config.mix())
    assert_no_test_leak([p.qid for p in drawn.pairs], [p.query for p in drawn.pairs], test, "the drawn pairs")
    folder.mkdir(parents=True, exist_ok=True)
    write_trec_run(run, folder / "bm25-train.trec", tag="bm25")
    write_jsonl([p.to_dict() for p in drawn.pairs], folder / "pairs.jsonl")
    summary = {**split.to_dict(), "test_claims_checked": len(test), "mix": drawn.summary()}
    # Written last: its presence marks the stage done.
    (folder / "split.json").write_text(json.dumps(summary, indent=2) + "\n")


def read_split(folder: Path) -> Split:
    raw = json.loads((folder / "split.json").read_text())
    return Split(raw["train"], raw["dev"], raw["dropped_same_text_as_test"])


def training_pairs(folder: Path) -> list[LabeledPair]:
    return read_pairs(folder / "pairs.jsonl")


def read_train_run(folder: Path) -> Run:
    return read_trec_run(folder / "bm25-train.trec", "bm25")
