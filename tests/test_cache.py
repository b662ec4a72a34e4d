"""The SQLite judgment cache: keys, durability across SIGKILL, concurrent readers, bad files,
and rerankers in front of it (real Rank1/Rank-K on SmolLM2, compared with the plain reranker)."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from thinkrank.cache import JudgmentCache
from thinkrank.rerankers.cached import CachedReranker, CacheUse, judge_with_cache, pair_key, request_key
from thinkrank.errors import InvalidInputError
from thinkrank.rerankers.base import RerankRequest
from thinkrank.rerankers.pointwise import Pair, Rank1
from thinkrank.types import Document

from tolerances import LAYOUT_TOL

SETTINGS = {"mode": "pointwise", "model": "m", "think_budget": 8}
DOCS = [
    Document("cat", "Cats are small domesticated carnivorous mammals."),
    Document("stocks", "The stock market fell today after the tariff news.", title="Markets"),
    Document("dog", "Dogs are loyal companions that bark."),
    Document("cat-copy", "Cats are small domesticated carnivorous mammals."),  # same text, other id
]


def pairs_for(query: str, docs=DOCS, instruction=None) -> list[Pair]:
    return [Pair(query, d, i, instruction) for i, d in enumerate(docs)]


class Counting:
    """A real Rank1, delegated to, that records every pair it is asked to judge."""

    def __init__(self, reranker: Rank1) -> None:
        self.inner, self.judged, self.calls = reranker, [], 0

    @property
    def settings(self):
        return self.inner.settings

    @property
    def progress(self):
        return self.inner.progress

    @progress.setter
    def progress(self, value):
        self.inner.progress = value

    def judge(self, pairs, **options):
        self.calls += 1
        self.judged += [(p.query, p.document.id) for p in pairs]
        return self.inner.judge(pairs, **options)


@pytest.fixture(scope="module")
def rank1_off(smollm2_engine):
    return Rank1(engine=smollm2_engine, reasoning=False)


# ---- keys ---------------------------------------------------------------------------------------
def test_key_changes_with_every_input_that_changes_a_judgment_and_not_with_the_doc_id():
    base = Pair("q", Document("a", "text", "title"), 0, None)
    same_text_other_id = Pair("q", Document("b", "text", "title"), 5, None)
    variants = [
        Pair("q2", base.document), Pair("q", base.document, 0, "only recent"),
        Pair("q", Document("a", "text2", "title")), Pair("q", Document("a", "text", "other")),
        Pair("q", Document("a", "text", None)),
    ]
    key = pair_key(SETTINGS, base)
    assert pair_key(SETTINGS, same_text_other_id) == key
    assert len({key, *(pair_key(SETTINGS, p) for p in variants)}) == 1 + len(variants)
    assert pair_key({**SETTINGS, "think_budget": 9}, base) != key
    assert pair_key({**SETTINGS, "prompt": "x"}, base) != key
    # listwise keys depend on the order of the candidates
    docs = [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}]
    assert request_key(SETTINGS, RerankRequest("q", docs)) != request_key(SETTINGS, RerankRequest("q", docs[::-1]))


# ---- the store ----------------------------------------------------------------------------------
def test_values_round_trip_and_persist_with_one_logged_computation_each(tmp_path):
    path = tmp_path / "sub" / "cache.sqlite"
    with JudgmentCache(path) as cache:
        cache.put("pointwise", SETTINGS, [("k1", {"score": 0.25, "reasoning": "<b>é</b>"}), ("k2", {"score": 1.0})])
        cache.put("pointwise", SETTINGS, [("k1", {"score": 0.99})])  # a racing duplicate keeps the first value
    with JudgmentCache(path) as cache:
        assert len(cache) == 2
        assert cache.get(["k1", "k2", "k3"]) == {"k1": {"score": 0.25, "reasoning": "<b>é</b>"}, "k2": {"score": 1.0}}
        assert cache.computations() == {"k1": 2, "k2": 1}
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert json.loads(db.execute("SELECT json FROM settings").fetchone()[0]) == SETTINGS


def test_committed_chunk_survives_sigkill_and_the_chunk_in_progress_leaves_no_trace(tmp_path):
    path = tmp_path / "cache.sqlite"
    script = textwrap.dedent(f"""
        import os, signal
        from thinkrank.cache import JudgmentCache
        cache = JudgmentCache({str(path)!r})
        cache.put("pointwise", {{"m": 1}}, [("done-1", {{"score": 0.5}}), ("done-2", {{"score": 0.7}})])
        cache._db.execute("BEGIN IMMEDIATE")  # a chunk half written when the kill comes
        cache._db.execute("INSERT INTO entries VALUES ('half', 'pointwise', 'x', '{{}}', 0)")
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    with JudgmentCache(path) as cache:
        assert cache.get(["done-1", "done-2", "half"]) == {"done-1": {"score": 0.5}, "done-2": {"score": 0.7}}
        assert cache._db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_reader_is_not_blocked_by_an_open_write_and_sees_only_committed_values(tmp_path):
    path = tmp_path / "cache.sqlite"
    writer, reader = JudgmentCache(path), JudgmentCache(path, timeout=1)
    writer.put("pointwise", SETTINGS, [("a", {"score": 0.1})])
    writer._db.execute("BEGIN IMMEDIATE")
    writer._db.execute("INSERT INTO entries VALUES ('b', 'pointwise', 'x', '{\"score\": 0.2}', 0)")
    assert reader.get(["a", "b"]) == {"a": {"score": 0.1}}  # returns at once, without 'b'
    writer._db.execute("COMMIT")
    assert set(reader.get(["a", "b"])) == {"a", "b"}
    writer.close(), reader.close()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"qid Q0 doc 1 0.5 run\n", "not an SQLite file"),
        ("sqlite-other-app", "not a thinkrank judgment cache (tables: ['notes'])"),
        ("sqlite-newer", "written by a newer thinkrank"),
    ],
)
def test_a_file_that_is_not_a_usable_cache_is_refused_and_left_as_it_was(tmp_path, content, message):
    path = tmp_path / "file.sqlite"
    if content == "sqlite-other-app":
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE notes (x)"), db.commit(), db.close()
    elif content == "sqlite-newer":
        JudgmentCache(path).close()
        db = sqlite3.connect(path)
        db.execute("UPDATE meta SET value = '99' WHERE key = 'version'"), db.commit(), db.close()
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        JudgmentCache(path)
    assert path.read_bytes() == before


def test_a_folder_is_refused_with_a_hint(tmp_path):
    with pytest.raises(InvalidInputError, match="is a folder"):
        JudgmentCache(tmp_path)


# ---- rerankers in front of the cache ------------------------------------------------------------
def test_judge_with_cache_matches_plain_rank1_and_judges_each_missing_pair_once(tmp_path, rank1_off):
    pairs = pairs_for("what is a cat")
    reference = rank1_off.judge(pairs)  # the plain reranker, no cache
    counting, cache = Counting(rank1_off), JudgmentCache(tmp_path / "c.sqlite")
    seen: list[tuple[int, int]] = []
    use = CacheUse()
    first = judge_with_cache(counting, pairs[:3], cache, chunk_size=2, progress=lambda d, t: seen.append((d, t)), use=use)
    assert counting.judged == [("what is a cat", "cat"), ("what is a cat", "stocks"), ("what is a cat", "dog")]
    assert counting.calls == 2 and (use.cached, use.computed) == (0, 3)
    assert seen[-1] == (3, 3) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert counting.progress is None  # the reranker's own callback is restored after each chunk
    # all four: "cat-copy" has the text of "cat", so nothing is left to judge
    counting.judged.clear()
    use = CacheUse()
    again = judge_with_cache(counting, pairs, cache, chunk_size=2, use=use)
    assert counting.judged == [] and (use.cached, use.computed) == (4, 0)
    assert [(j.doc_id, j.index) for j in again] == [("cat", 0), ("stocks", 1), ("dog", 2), ("cat-copy", 3)]
    for got, ref in zip(first + again, reference[:3] + reference):
        assert got.score == pytest.approx(ref.score, abs=LAYOUT_TOL)
        assert (got.answer, got.reasoning, got.truncated) == (ref.answer, ref.reasoning, ref.truncated)
    assert set(cache.computations().values()) == {1}


def test_a_new_instruction_or_setting_is_a_miss(tmp_path, smollm2_engine, rank1_off):
    cache = JudgmentCache(tmp_path / "c.sqlite")
    judge_with_cache(rank1_off, pairs_for("cats")[:2], cache)
    counting = Counting(rank1_off)
    judge_with_cache(counting, pairs_for("cats", instruction="only about dogs")[:2], cache)
    assert len(counting.judged) == 2
    other = Counting(Rank1(engine=smollm2_engine, reasoning=False, max_passage_tokens=8))
    judge_with_cache(other, pairs_for("cats")[:2], cache)
    assert len(other.judged) == 2 and len(cache) == 6


def test_cached_reranker_gives_the_rankings_of_the_plain_reranker(tmp_path, rank1_off):
    requests = [RerankRequest("what is a cat", DOCS[:3], "q1"), RerankRequest("stock news", DOCS[:2], "q2", "markets")]
    plain = rank1_off.rerank_many(requests)
    cached = CachedReranker(rank1_off, tmp_path / "c.sqlite", chunk_size=3)
    for _ in range(2):
        got = cached.rerank_many(requests, top_n=3)
        for g, p in zip(got, plain):
            assert g.query_id == p.query_id and g.doc_ids == p.doc_ids[:3]
            assert [j.score for j in g] == pytest.approx([j.score for j in p][:3], abs=LAYOUT_TOL)
    assert (cached.use.computed, cached.use.cached) == (5, 5)  # computed once, then all read back
    assert cached.settings == rank1_off.settings


def test_a_wrapper_has_the_kind_and_judges_of_the_reranker_it_wraps(tmp_path, rank1_off, smollm2_engine, smollm2_path):
    from thinkrank.rerankers.lazy import LazyReranker
    from thinkrank.rerankers.spec import RerankerSpec

    plain = CachedReranker(rank1_off, tmp_path / "a.sqlite")
    cascade = CachedReranker(Rank1(engine=smollm2_engine, cascade=2), tmp_path / "b.sqlite")
    assert [(c.kind, c.judges) for c in (plain, cascade)] == [("pair", "pair"), ("pair", "query")]
    with JudgmentCache(tmp_path / "c.sqlite") as cache:
        lazy = LazyReranker(RerankerSpec(mode="listwise", model=str(smollm2_path), engine="transformers"), cache)
        assert (lazy.kind, lazy.judges, lazy.loaded) == ("query", "query", False)  # known before a model loads
        assert CachedReranker(lazy, cache).kind == "query"
    with pytest.raises(AttributeError, match="ask an instance"):
        CachedReranker.kind  # noqa: B018 (only an instance knows what it wraps)


def test_bad_chunk_size_is_refused(tmp_path, rank1_off):
    with JudgmentCache(tmp_path / "c.sqlite") as cache, pytest.raises(InvalidInputError, match="chunk_size"):
        judge_with_cache(rank1_off, pairs_for("q"), cache, chunk_size=0)


@pytest.mark.slow
def test_listwise_rankings_are_cached_per_ordered_candidate_list(tmp_path, smollm2_engine):
    from thinkrank.rerankers.listwise import RankK

    rankk = RankK(engine=smollm2_engine, window=3, stride=2, max_tokens=12)
    docs = [{"id": f"d{i}", "text": t} for i, t in enumerate(["Cats purr.", "Stocks fell.", "Rain today.", "Cats nap."])]
    plain = rankk.rerank("cats", docs, query_id="q")
    cached = CachedReranker(rankk, tmp_path / "c.sqlite")
    first = cached.rerank("cats", docs, query_id="q")
    again = cached.rerank("cats", docs, top_n=2, query_id="q")
    assert first.doc_ids == plain.doc_ids and again.doc_ids == plain.doc_ids[:2]
    assert [w.to_dict() for w in first.windows] == [w.to_dict() for w in plain.windows] == [w.to_dict() for w in again.windows]
    assert [j.reasoning for j in first] == [j.reasoning for j in plain]
    assert (cached.use.computed, cached.use.cached) == (1, 1)
    cached.rerank("cats", docs[::-1])  # other order, other windows: a miss
    assert cached.use.computed == 2
