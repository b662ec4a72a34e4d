"""Pair sampling for distillation (Rank1 §2.1): the data mix, labels, seeds and edge cases,
checked against qrels and run ranks computed independently in each test."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from thinkrank.datasets import load_collection
from thinkrank.datasets.collection import Collection
from thinkrank.datasets.runs import Run
from thinkrank.distill.records import LabeledPair, read_pairs, write_jsonl
from thinkrank.distill.sampling import MixConfig, parse_band, sample_pairs, split_total
from thinkrank.errors import InvalidInputError
from thinkrank.types import Document

N_QUERIES, N_DOCS, DEPTH = 12, 60, 30


def _toy() -> tuple[Collection, Run]:
    """12 queries over 60 documents; query i has 2 positives and one grade-0 judgment; a run
    ranks 30 documents per query with the positives at ranks 2 and 7 (so they sit inside the
    hard bands and must be skipped there)."""
    corpus = {f"d{j}": Document(f"d{j}", f"text of document {j}", f"title {j}") for j in range(N_DOCS)}
    queries = {f"q{i}": f"query number {i}" for i in range(N_QUERIES)}
    qrels: dict[str, dict[str, int]] = {}
    rankings = {}
    for i in range(N_QUERIES):
        pos = [f"d{(5 * i) % N_DOCS}", f"d{(5 * i + 1) % N_DOCS}"]
        zero = f"d{(5 * i + 2) % N_DOCS}"
        qrels[f"q{i}"] = {pos[0]: 1, pos[1]: 2, zero: 0}
        others = [f"d{(5 * i + 3 + k) % N_DOCS}" for k in range(DEPTH)]
        others = [d for d in others if d not in pos][: DEPTH - 2]
        ranked = others[:1] + [pos[0]] + others[1:5] + [pos[1]] + others[5:]
        rankings[f"q{i}"] = [(d, float(DEPTH - r)) for r, d in enumerate(ranked)]
    return Collection(corpus, queries, qrels, name="toy"), Run(rankings, "toy-run")


@pytest.fixture(scope="module")
def toy():
    return _toy()


def _rank(run: Run, qid: str, docid: str) -> int:
    return [d for d, _ in run[qid]].index(docid) + 1


def test_the_default_mix_has_equal_parts_with_labels_from_qrels_and_ranks_from_the_run(toy):
    collection, run = toy
    result = sample_pairs(collection, run, MixConfig(total=40, seed=1))
    by_source = Counter(p.source for p in result.pairs)
    assert by_source == {"positive": 10, "negative": 10, "hard:1-5": 10, "hard:6-10": 10}
    for p in result.pairs:
        grade = collection.qrels[p.qid].get(p.docid)
        assert p.label == (p.source == "positive")
        assert p.query == collection.queries[p.qid]
        assert p.passage == f"title {p.docid[1:]} text of document {p.docid[1:]}"
        if p.source == "positive":
            assert grade is not None and grade >= 1
        else:
            assert not grade  # never judged relevant (grade 0 or unjudged)
        if p.source.startswith("hard:"):
            a, b = map(int, p.source[5:].split("-"))
            assert a <= _rank(run, p.qid, p.docid) <= b == {1: 5, 6: 10}[a]
            assert p.rank == _rank(run, p.qid, p.docid)
        if p.source == "negative":  # auto with a run: from the deep band 11-100
            assert _rank(run, p.qid, p.docid) >= 11
    assert [c.drawn for c in result.counts] == [10, 10, 10, 10]
    assert result.queries == len({p.qid for p in result.pairs})


def test_custom_shares_are_split_by_largest_remainder(toy):
    collection, run = toy
    shares = {"positive": 1, "hard:1-5": 2, "negative": 3}
    result = sample_pairs(collection, run, MixConfig(total=20, shares=shares, negatives="random"))
    # 20 * (1/6, 2/6, 3/6) = 3.33, 6.67, 10 -> 3, 7, 10
    assert Counter(p.source for p in result.pairs) == {"positive": 3, "hard:1-5": 7, "negative": 10}
    assert split_total(10, {"a": 1, "b": 1, "c": 1}) in ({"a": 4, "b": 3, "c": 3}, {"a": 3, "b": 4, "c": 3}, {"a": 3, "b": 3, "c": 4})
    assert sum(split_total(997, {"a": 0.1, "b": 0.7, "c": 0.2}).values()) == 997


def test_random_negatives_are_corpus_documents_never_judged_relevant(toy):
    collection, _ = toy
    config = MixConfig(total=30, shares={"positive": 1, "negative": 2}, negatives="random", seed=3)
    result = sample_pairs(collection, None, config)  # random negatives need no run
    negatives = [p for p in result.pairs if p.source == "negative"]
    assert len(negatives) == 20
    for p in negatives:
        assert p.docid in collection.corpus and p.label is False
        assert collection.qrels[p.qid].get(p.docid, 0) == 0


def test_the_same_seed_gives_the_same_pairs_and_another_seed_others(toy):
    collection, run = toy
    first = sample_pairs(collection, run, MixConfig(total=32, seed=7)).pairs
    again = sample_pairs(*_toy(), MixConfig(total=32, seed=7)).pairs  # rebuilt inputs, same seed
    other = sample_pairs(collection, run, MixConfig(total=32, seed=8)).pairs
    assert first == again
    assert {(p.qid, p.docid) for p in first} != {(p.qid, p.docid) for p in other}


def test_no_query_document_pair_is_drawn_twice_even_with_overlapping_bands(toy):
    collection, run = toy
    shares = {"positive": 1, "hard:1-5": 1, "hard:5-10": 1, "negative": 1}
    result = sample_pairs(collection, run, MixConfig(total=200, shares=shares, negatives="run", deep_band=(1, 12)))
    keys = [(p.qid, p.docid) for p in result.pairs]
    assert len(keys) == len(set(keys))
    # hard:1-5 has 4 non-positive docs per query (48), hard:5-10 has 5 (60) minus those at rank 5 taken already.
    counts = {c.source: c for c in result.counts}
    assert counts["hard:1-5"].available == N_QUERIES * 4 and counts["hard:1-5"].drawn == N_QUERIES * 4
    assert counts["hard:5-10"].available == N_QUERIES * 4  # rank 5 went to hard:1-5, rank 7 is a positive


def test_a_source_with_too_few_candidates_gives_all_it_has_and_reports_it(toy):
    collection, run = toy
    result = sample_pairs(collection, run, MixConfig(total=200, shares={"positive": 1, "hard:1-5": 1}))
    counts = {c.source: c for c in result.counts}
    total_positives = sum(1 for q in collection.qrels.values() for g in q.values() if g >= 1)
    assert total_positives == 24
    assert (counts["positive"].requested, counts["positive"].available, counts["positive"].drawn) == (100, 24, 24)
    assert (counts["hard:1-5"].requested, counts["hard:1-5"].available, counts["hard:1-5"].drawn) == (100, 48, 48)
    assert len(result.pairs) == 72  # nothing refilled from another source
    assert result.summary()["pairs"] == 72


def test_random_negatives_from_a_tiny_corpus_count_what_is_left(toy):
    collection, _ = toy
    tiny = Collection({d: collection.corpus[d] for d in ("d0", "d1", "d2", "d3")}, {"q0": "query number 0"},
                      {"q0": {"d0": 1, "d1": 2, "d2": 0}}, name="tiny")
    result = sample_pairs(tiny, None, MixConfig(total=20, shares={"positive": 1, "negative": 1}, negatives="random"))
    counts = {c.source: c for c in result.counts}
    # d2 (grade 0) and d3 are the only negatives of q0.
    assert (counts["negative"].available, counts["negative"].drawn) == (2, 2)
    assert sorted(p.docid for p in result.pairs if not p.label) == ["d2", "d3"]
    # once a hard band has taken both, no random negative is left, and the count says so
    run = Run({"q0": [("d2", 3.0), ("d0", 2.0), ("d3", 1.0)]})
    result = sample_pairs(tiny, run, MixConfig(total=20, shares={"hard:1-3": 1, "negative": 1}, negatives="random"))
    counts = {c.source: c for c in result.counts}
    assert (counts["hard:1-3"].available, counts["hard:1-3"].drawn) == (2, 2)
    assert (counts["negative"].requested, counts["negative"].available, counts["negative"].drawn) == (10, 0, 0)


def test_min_grade_moves_lower_grades_out_of_both_classes(toy):
    collection, run = toy
    result = sample_pairs(collection, run, MixConfig(total=400, shares={"positive": 1, "hard:1-10": 1}, min_grade=2))
    positives = {(p.qid, p.docid) for p in result.pairs if p.label}
    assert positives == {(q, d) for q, docs in collection.qrels.items() for d, g in docs.items() if g >= 2}
    grade1 = {(q, d) for q, docs in collection.qrels.items() for d, g in docs.items() if g == 1}
    assert not grade1 & {(p.qid, p.docid) for p in result.pairs}


@pytest.mark.parametrize("config, words", [
    (MixConfig(total=0), "number of pairs"),
    (MixConfig(shares={"positive": -1, "negative": 2}), "shares"),
    (MixConfig(shares={"positive": 0, "negative": 0}), "shares"),
    (MixConfig(shares={"positive": float("nan")}), "shares"),
    (MixConfig(shares={"positives": 1}), "unknown source"),
    (MixConfig(shares={"hard:0-5": 1}), "band"),
    (MixConfig(shares={"hard:9-3": 1}), "band"),
    (MixConfig(shares={"hard:1-x": 1}), "unknown source"),
    (MixConfig(negatives="deep"), "negatives"),
    (MixConfig(deep_band=(50, 10)), "band"),
])
def test_bad_configs_are_refused_with_a_clear_message(toy, config, words):
    with pytest.raises(InvalidInputError, match=words):
        sample_pairs(*toy, config)


def test_bad_band_text_and_a_missing_run_are_refused(toy):
    collection, _ = toy
    with pytest.raises(InvalidInputError, match="A-B"):
        parse_band("11:100")
    assert parse_band(" 11-100 ") == (11, 100)
    with pytest.raises(InvalidInputError, match="need a first-stage run"):
        sample_pairs(collection, None, MixConfig(total=10))
    with pytest.raises(InvalidInputError, match="no query with a judgment"):
        sample_pairs(Collection(collection.corpus, collection.queries, {}, name="nojudge"), None,
                     MixConfig(total=4, shares={"positive": 1}))


def test_pairs_from_real_scifact_train_respect_qrels_and_round_trip_as_jsonl(data_dir, tmp_path):
    collection = load_collection(data_dir / "scifact" / "train")
    result = sample_pairs(collection, None, MixConfig(total=60, shares={"positive": 1, "negative": 1}, seed=5))
    assert len(result.pairs) == 60
    for p in result.pairs:
        assert (collection.qrels[p.qid].get(p.docid, 0) >= 1) == p.label
    write_jsonl((p.to_dict() for p in result.pairs), tmp_path / "pairs.jsonl")
    assert read_pairs(tmp_path / "pairs.jsonl") == result.pairs
    line = json.loads((tmp_path / "pairs.jsonl").read_text().splitlines()[0])
    assert set(line) == {"qid", "docid", "query", "passage", "label", "source", "rank"}


def test_read_pairs_names_the_bad_line(tmp_path):
    good = LabeledPair("q", "d", "a query", "a passage", True).to_dict()
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "label": "maybe"}) + "\n")
    with pytest.raises(InvalidInputError, match=r"pairs.jsonl:2: label"):
        read_pairs(path)
