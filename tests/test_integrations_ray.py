"""Ray Data scale-out on a local Ray with two workers and SmolLM2: the same results as one process,
and a worker killed mid-job retried with nothing lost or computed twice (the judgment cache's
computation log is the witness)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from thinkrank.errors import InvalidInputError

from tolerances import LAYOUT_TOL

REPO = Path(__file__).resolve().parents[1]
BUDGET = 6


def _cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, "-m", "thinkrank", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def _close(a, b):
    """Equal, with floats to LAYOUT_TOL (tests/tolerances.py): Ray's workers run torch with one
    thread (Ray sets OMP_NUM_THREADS=1 in its workers) on chunks of their own, another thread count
    and batch layout than the one process; everything else (ids, order, chains, flags) must be identical."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and a == pytest.approx(b, abs=LAYOUT_TOL)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    return a == b


def _parsed(name, text):
    """A result file as values: JSON lines, JSON, or TREC rows with their score as a float."""
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in text.splitlines()]
    if name.endswith(".json"):
        return json.loads(text)
    rows = [row.split() for row in text.splitlines()]
    return [[*cols[:4], float(cols[4]), *cols[5:]] for cols in rows]


def _computations(path):
    with sqlite3.connect(path) as db:
        return db.execute("SELECT key, pid FROM computations").fetchall()


@pytest.mark.slow
def test_evaluate_on_ray_with_two_workers_equals_one_process(data_dir, smollm2_path, tmp_path):
    common = ["evaluate", "--dataset", str(data_dir / "dl19"), "--run", "bm25", "--top-k", "4", "--queries", "3",
              "--model", str(smollm2_path), "--engine", "transformers", "--device", "cpu",
              "--think-budget", str(BUDGET), "--chunk-size", "3", "--no-report", "--quiet"]
    one = _cli(*common, "--output", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    ray = _cli(*common, "--output", str(tmp_path / "ray"), "--ray", "--workers", "2")
    assert ray.returncode == 0, ray.stderr
    for name in ("rankings.jsonl", "metrics.json", "reranked.trec"):
        ray_values = _parsed(name, (tmp_path / "ray" / name).read_text())
        assert _close(ray_values, _parsed(name, (tmp_path / "one" / name).read_text())), name
    log = _computations(tmp_path / "ray" / "judgments.sqlite")
    keys = [k for k, _ in log]
    assert len(keys) == 12 and len(set(keys)) == 12  # 3 queries x 4 candidates, each computed once
    assert len({pid for _, pid in log}) == 2 and os.getpid() not in {pid for _, pid in log}  # both workers worked

    # Rerun: everything is read back from the cache by the workers, nothing computed again.
    again = _cli(*common, "--output", str(tmp_path / "ray"), "--ray", "--workers", "2")
    assert again.returncode == 0, again.stderr
    assert len(_computations(tmp_path / "ray" / "judgments.sqlite")) == 12
    assert _close(_parsed("rankings.jsonl", (tmp_path / "ray" / "rankings.jsonl").read_text()),
                  _parsed("rankings.jsonl", (tmp_path / "one" / "rankings.jsonl").read_text()))


@pytest.mark.slow
def test_rerank_cli_on_ray_prints_what_one_process_prints(smollm2_path, tmp_path):
    queries = tmp_path / "queries.jsonl"
    queries.write_text('{"id": "q1", "text": "what do cats eat"}\n{"id": "q2", "text": "capital of france"}\n')
    docs = tmp_path / "docs.txt"
    docs.write_text("Cats eat meat and fish.\nParis is the capital of France.\nStocks fell on Monday.\n")
    args = ["rerank", "--model", str(smollm2_path), "--engine", "transformers", "--device", "cpu", "--queries",
            str(queries), "--docs", str(docs), "--think-budget", str(BUDGET), "--format", "jsonl", "--quiet"]
    one, ray = _cli(*args), _cli(*args, "--ray", "--workers", "2")
    assert one.returncode == 0 and ray.returncode == 0, (one.stderr, ray.stderr)
    assert len(ray.stdout.splitlines()) == 6 and _close(_parsed(".jsonl", ray.stdout), _parsed(".jsonl", one.stdout))


@pytest.mark.slow
def test_rerank_cli_cascade_on_ray_through_a_cache_equals_one_process(smollm2_path, tmp_path):
    queries = tmp_path / "queries.jsonl"
    queries.write_text('{"id": "q1", "text": "what do cats eat"}\n{"id": "q2", "text": "capital of france"}\n')
    docs = tmp_path / "docs.txt"
    docs.write_text("Cats eat meat and fish.\nParis is the capital of France.\nStocks fell on Monday.\n")
    args = ["rerank", "--model", str(smollm2_path), "--engine", "transformers", "--device", "cpu", "--queries",
            str(queries), "--docs", str(docs), "--think-budget", str(BUDGET), "--format", "jsonl", "--cascade", "top=1"]
    # Through a cache of its own, one process judges a query at a time, as the Ray chunks do (the same
    # batches, so the same floats up to Ray's thread count).
    one = _cli(*args, "--quiet", "--cache", str(tmp_path / "one.sqlite"))
    cache = tmp_path / "judgments.sqlite"
    ray = _cli(*args, "--ray", "--workers", "2", "--cache", str(cache))
    assert one.returncode == 0 and ray.returncode == 0, (one.stderr, ray.stderr)
    got = _parsed(".jsonl", ray.stdout)
    assert _close(got, _parsed(".jsonl", one.stdout)) and sum(r["reasoned"] for r in got) == 2  # one per query
    assert "2 query rankings computed, 0 read from the cache" in ray.stderr
    assert len(_computations(cache)) == 2  # a cascade is cached per query
    again = _cli(*args, "--quiet", "--cache", str(cache))
    assert again.stdout == ray.stdout and len(_computations(cache)) == 2


@pytest.mark.slow
def test_a_worker_killed_mid_job_is_retried_with_nothing_lost_or_repeated(smollm2_engine, smollm2_path, tmp_path):
    from thinkrank import Rank1
    from thinkrank.rerankers.cached import CachedReranker
    from thinkrank.integrations.ray import RayReranker

    docs = ["Cats eat meat and fish.", "Paris is the capital of France.", "Stocks fell on Monday.",
            "Dogs eat kibble.", "Milk can upset adult cats."]
    requests = [(q, docs) for q in ("what do cats eat", "capital of france", "why did stocks fall")]
    cache = tmp_path / "judgments.sqlite"
    factory = partial(Rank1, str(smollm2_path), engine="transformers", device="cpu", think_budget=BUDGET)
    reranker = RayReranker(factory, cache=cache, workers=2, chunk_size=2)  # 15 pairs, 8 chunks
    killed: list[int] = []

    def kill_the_first_writer() -> None:
        # As soon as a worker has committed a chunk, SIGKILL it: it may be half way through the next.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            try:
                log = _computations(cache)
            except sqlite3.OperationalError:
                log = []
            if log:
                killed.append(log[0][1])
                os.kill(log[0][1], signal.SIGKILL)
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_the_first_writer, daemon=True)
    watcher.start()
    try:
        rankings = reranker.rerank_many(requests)
    finally:
        reranker.close()
    watcher.join(timeout=5)
    assert killed, "no worker was killed"
    log = _computations(cache)
    keys = [k for k, _ in log]
    assert len(keys) == 15 and len(set(keys)) == 15  # nothing lost, nothing computed twice
    assert killed[0] in {pid for _, pid in log} and len({pid for _, pid in log}) >= 2
    # A chunk the killed worker had committed but not yet handed back is read from the cache on the retry.
    assert reranker.use.computed + reranker.use.cached == 15 and reranker.use.computed <= 15

    # The same chunks judged by one process, through its own cache, give the same rankings.
    reference = CachedReranker(Rank1(engine=smollm2_engine, think_budget=BUDGET), tmp_path / "one.sqlite",
                               chunk_size=2).rerank_many(requests)
    assert _close([r.to_dict() for r in rankings], [r.to_dict() for r in reference])


def test_bad_ray_settings_fail_before_ray_starts(tmp_path, smollm2_path):
    from thinkrank import Rank1
    from thinkrank.integrations.ray import RayReranker

    factory = partial(Rank1, str(smollm2_path))
    with pytest.raises(InvalidInputError, match="workers must be"):
        RayReranker(factory, workers=0)
    with pytest.raises(InvalidInputError, match="chunk_size must be"):
        RayReranker(factory, chunk_size=0)
    with pytest.raises(InvalidInputError, match="pass judges='pair'"):
        RayReranker(lambda: Rank1(str(smollm2_path)))
    with pytest.raises(InvalidInputError, match="judges must be one of pair, query, set"):
        RayReranker(factory, judges="pointwise")
    (tmp_path / "not-a-cache").write_text("hello")
    with pytest.raises(InvalidInputError, match="not a thinkrank judgment cache"):
        RayReranker(factory, cache=tmp_path / "not-a-cache")
    docs = tmp_path / "d.txt"
    docs.write_text("a\n")
    out = _cli("rerank", "--model", str(smollm2_path), "--query", "q", "--docs", str(docs), "--workers", "2")
    assert out.returncode == 2 and out.stderr.strip().endswith("--workers needs --ray")


def test_a_factory_says_what_its_reranker_judges_with_the_options_it_passes(smollm2_path):
    from thinkrank import Rank1
    from thinkrank.integrations.ray import RayReranker
    from thinkrank.rerankers.listwise import RankK

    # Asked of the class with the partial's options, before Ray starts or a model loads.
    assert RayReranker(partial(Rank1, str(smollm2_path))).judges == "pair"
    assert RayReranker(partial(Rank1, str(smollm2_path), cascade="top=1")).judges == "query"
    assert RayReranker(partial(RankK, str(smollm2_path))).judges == "query"
    assert RayReranker(lambda: Rank1(str(smollm2_path)), judges="query").judges == "query"
    # kind (what one model call judges) is the class's, whatever the cascade makes it judge.
    assert RayReranker(partial(Rank1, str(smollm2_path), cascade="top=1")).kind == "pair"
    assert RayReranker(partial(RankK, str(smollm2_path))).kind == "query"


@pytest.mark.slow
def test_a_library_ray_run_of_a_cascade_honours_it(smollm2_engine, smollm2_path):
    # Before, partial(Rank1, cascade=...) was taken for a pair-by-pair reranker: the actors called
    # judge, which reasons about every pair and ignores the cascade.
    from thinkrank import Rank1
    from thinkrank.integrations.ray import RayReranker

    docs = ["Cats eat meat and fish.", "Paris is the capital of France.", "Stocks fell on Monday."]
    requests = [(q, docs) for q in ("what do cats eat", "capital of france")]
    reranker = RayReranker(partial(Rank1, str(smollm2_path), engine="transformers", device="cpu",
                                   think_budget=BUDGET, cascade="top=1"), workers=1)
    try:
        rankings = reranker.rerank_many(requests)
    finally:
        reranker.close()
    assert [sum(bool(j.reasoned) for j in r) for r in rankings] == [1, 1]  # 2 chains for 6 pairs
    reference = Rank1(engine=smollm2_engine, think_budget=BUDGET, cascade="top=1").rerank_many(requests)
    assert _close([r.to_dict() for r in rankings], [r.to_dict() for r in reference])


def test_ray_takes_an_optional_address():
    from thinkrank.cli.ray_options import bare_ray_flag

    assert bare_ray_flag(["rerank", "--ray"]) == ["rerank", "--ray=local"]
    assert bare_ray_flag(["--ray", "--workers", "2"]) == ["--ray=local", "--workers", "2"]
    assert bare_ray_flag(["--ray", "auto", "--workers", "2"]) == ["--ray", "auto", "--workers", "2"]
    assert bare_ray_flag(["--ray", "ray://head:10001"]) == ["--ray", "ray://head:10001"]


@pytest.mark.slow
def test_listwise_reranking_on_ray_equals_one_process(smollm2_engine, smollm2_path, tmp_path):
    from thinkrank.rerankers.cached import CachedReranker
    from thinkrank.integrations.ray import RayReranker
    from thinkrank.rerankers.listwise import RankK

    docs = [{"id": f"d{i}", "text": t} for i, t in enumerate(
        ["Cats eat meat and fish.", "Paris is the capital of France.", "Stocks fell on Monday.", "Dogs eat kibble."])]
    requests = [(q, docs) for q in ("what do cats eat", "capital of france", "why did stocks fall")]
    options = dict(window=3, stride=2, max_tokens=8)
    reranker = RayReranker(partial(RankK, str(smollm2_path), engine="transformers", device="cpu", **options),
                           cache=tmp_path / "ray.sqlite", workers=2)
    try:
        rankings = reranker.rerank_many(requests, top_n=3)
        # A factory that is no Reranker class: its kind is asked of the reranker a Ray task builds.
        built = RayReranker(lambda: RankK(str(smollm2_path), engine="transformers", device="cpu"), judges="query")
        assert built.kind == "query"
    finally:
        reranker.close()
    assert reranker.judges == "query" and reranker.use.computed == 3  # one chunk per query
    reference = CachedReranker(RankK(engine=smollm2_engine, **options), tmp_path / "one.sqlite").rerank_many(
        requests, top_n=3)
    assert [r.to_dict() for r in rankings] == [r.to_dict() for r in reference]
    assert all(len(r) == 3 and r.windows for r in rankings)
