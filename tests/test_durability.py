"""Nothing computed is lost: damaged caches are salvaged row by row, judgments are committed per
engine batch, result files are written whole or not at all, and stale results are not shown."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from thinkrank.cache import JudgmentCache, check_cache, repair_cache
from thinkrank.errors import InvalidInputError
from thinkrank.io import AtomicWriter
from thinkrank.rerankers.cached import CachedReranker

SETTINGS = {"mode": "pointwise", "model": "m"}


def _value(i: int) -> dict:
    return {"score": (i % 10) / 10, "reasoning": f"chain {i} " + "x" * 1500, "answer": "true"}


def _cache_with(path: Path, n: int = 120) -> list[str]:
    keys = [f"key-{i:04d}" for i in range(n)]
    with JudgmentCache(path) as cache:
        for start in range(0, n, 10):  # committed in chunks, as a run does
            cache.put("pointwise", SETTINGS, [(k, _value(int(k[4:]))) for k in keys[start:start + 10]])
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything into the main file, as after a clean exit
    db.close()
    return keys


def test_a_damaged_row_is_skipped_reported_and_replaced_when_recomputed(tmp_path):
    path = tmp_path / "c.sqlite"
    keys = _cache_with(path, 20)
    db = sqlite3.connect(path)
    db.execute("UPDATE entries SET value = '{\"score\": 0.' WHERE key = ?", (keys[3],))
    db.execute("UPDATE entries SET value = '{\"score\": \"high\"}' WHERE key = ?", (keys[4],))
    db.commit()
    db.close()
    report = check_cache(path)
    assert report.readable == 18 and sorted(k for k, _ in report.bad) == [keys[3], keys[4]] and not report.ok
    with JudgmentCache(path) as cache:
        found = cache.get(keys)
        assert set(keys) - set(found) == {keys[3], keys[4]} and cache.bad_keys == {keys[3], keys[4]}
        cache.put("pointwise", SETTINGS, [(keys[3], _value(3))])  # the rerun recomputes it
        assert cache.get([keys[3]]) == {keys[3]: _value(3)}


@pytest.mark.parametrize("keep", [0.9, 0.5])
def test_a_truncated_cache_gives_back_every_row_before_the_cut(tmp_path, keep):
    path = tmp_path / "c.sqlite"
    keys = _cache_with(path)
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.truncate(int(size * keep))
    with pytest.raises(InvalidInputError, match="thinkrank cache repair"):
        JudgmentCache(path)
    report = check_cache(path)
    assert not report.ok and 0 < report.readable < len(keys)
    repaired = repair_cache(path, tmp_path / "fixed.sqlite")
    assert repaired.written == report.readable
    with JudgmentCache(tmp_path / "fixed.sqlite") as fixed:
        back = fixed.get(keys)
    # What survives is a prefix of the rows, each exactly as written.
    assert list(back) == keys[: len(back)] and all(back[k] == _value(int(k[4:])) for k in back)
    assert check_cache(tmp_path / "fixed.sqlite").ok


def test_cache_repair_cli_keeps_the_damaged_file_and_replaces_it(tmp_path):
    path = tmp_path / "judgments.sqlite"
    keys = _cache_with(path, 40)
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size * 3 // 4)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    check = subprocess.run([sys.executable, "-m", "thinkrank", "cache", "check", str(path)], capture_output=True,
                           text=True, env=env, timeout=120)
    assert check.returncode == 1 and "readable judgments" in check.stdout and "Traceback" not in check.stderr
    repair = subprocess.run([sys.executable, "-m", "thinkrank", "cache", "repair", str(path)], capture_output=True,
                            text=True, env=env, timeout=120)
    assert repair.returncode == 0, repair.stderr
    backups = list(tmp_path.glob("judgments.sqlite.damaged-*"))
    assert len(backups) >= 1
    with JudgmentCache(path) as cache:
        assert 0 < len(cache) < len(keys)
    again = subprocess.run([sys.executable, "-m", "thinkrank", "cache", "check", str(path)], capture_output=True,
                           text=True, env=env, timeout=120)
    assert again.returncode == 0 and "0 damaged rows" in again.stdout


def test_pointwise_judgments_are_committed_per_engine_batch_inside_a_larger_chunk(smollm2_engine, tmp_path):
    from thinkrank import Rank1
    from thinkrank.rerankers.pointwise import Pair
    from thinkrank.types import as_documents

    docs = ["Cats purr.", "Dogs bark.", "Stocks fell.", "Rain is wet.", "Tea is hot."]
    saved = smollm2_engine.batch_size
    smollm2_engine.batch_size = 2
    try:
        def stop_after_second_batch(done: int, total: int) -> None:
            if done > 2:  # counted once the second engine batch is done: the third is never started
                raise KeyboardInterrupt

        with JudgmentCache(tmp_path / "c.sqlite") as cache:
            cached = CachedReranker(Rank1(engine=smollm2_engine, reasoning=False), cache,
                                    progress=stop_after_second_batch)
            assert cached.chunk_size == 64  # all five pairs go to the engine together
            with pytest.raises(KeyboardInterrupt):
                cached.rerank("cats", docs)
            assert len(cache) == 4  # both finished batches are on disk, though the chunk never finished
            resumed = CachedReranker(Rank1(engine=smollm2_engine, reasoning=False), cache)
            ranking = resumed.rerank("cats", docs)
            assert (resumed.use.cached, resumed.use.computed) == (4, 1) and len(ranking) == 5
        # The same batches were formed again from what was left: equal to an uncached run, bit for bit.
        plain = Rank1(engine=smollm2_engine, reasoning=False).judge([Pair("cats", d, i) for i, d in
                                                                     enumerate(as_documents(docs))])
        assert sorted((j.index, j.score, j.p_true) for j in ranking) == [(j.index, j.score, j.p_true) for j in plain]
    finally:
        smollm2_engine.batch_size = saved


def test_a_sampled_run_resumed_mid_chunk_samples_each_pair_as_an_uninterrupted_run(smollm2_engine, tmp_path):
    from thinkrank import Rank1

    docs = ["Cats purr.", "Dogs bark.", "Stocks fell.", "Rain is wet.", "Tea is hot."]
    saved = smollm2_engine.batch_size
    smollm2_engine.batch_size = 2
    try:
        def rank1() -> Rank1:
            return Rank1(engine=smollm2_engine, think_budget=6, temperature=1.0, seed=11)

        def stop_after_first_batch(done: int, total: int) -> None:
            if done >= 2:
                raise KeyboardInterrupt

        with JudgmentCache(tmp_path / "killed.sqlite") as cache:
            with pytest.raises(KeyboardInterrupt):
                CachedReranker(rank1(), cache, progress=stop_after_first_batch).rerank("cats", docs)
            assert len(cache) == 2
            resumed = CachedReranker(rank1(), cache).rerank("cats", docs)
        fresh = CachedReranker(rank1(), tmp_path / "fresh.sqlite").rerank("cats", docs)
        assert len({j.reasoning for j in fresh}) > 1  # really sampled
        # Each pair keeps its seed (its place in the chunk), not its place among what was left.
        assert [(j.index, j.reasoning, j.score) for j in resumed] == [(j.index, j.reasoning, j.score) for j in fresh]
    finally:
        smollm2_engine.batch_size = saved


def test_an_atomic_writer_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), AtomicWriter(path) as out:
        out.write("half of the new")
        raise RuntimeError("killed")
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    with AtomicWriter(path) as out:
        out.write("new\n")
    assert path.read_text() == "new\n"


def test_evaluate_removes_stale_results_when_a_run_starts(data_dir, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    for name in ("metrics.json", "reranked.trec", "report.html"):
        (out / name).write_text("STALE from an earlier run\n")
    (out / "notes.txt").write_text("mine\n")
    base = [sys.executable, "-m", "thinkrank", "evaluate", "--dataset", str(data_dir / "dl19"), "--run", "bm25",
            "--queries", "2", "--top-k", "5", "--output", str(out), "--quiet", "--no-report"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    failed = subprocess.run(base + ["--model", "never-loaded/model"], capture_output=True, text=True, env=env,
                            timeout=300)
    assert failed.returncode == 2
    # The run died after it started: no result of the earlier run is left looking current.
    left = sorted(p.name for p in out.iterdir() if not p.name.startswith(("judgments.sqlite", ".")))
    assert left == ["notes.txt"]
    ok = subprocess.run(base, capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["queries"] and metrics["top_k"] == 5 and (out / "notes.txt").read_text() == "mine\n"
    assert not list(out.glob(".*tmp*"))
    shutil.rmtree(out)
