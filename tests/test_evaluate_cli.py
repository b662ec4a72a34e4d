"""`thinkrank evaluate` as a user runs it: real subprocesses, real DL19 data, the real SmolLM2
model; an evaluation SIGKILLed mid-way resumes without judging anything twice and ends with
exactly the files of an uninterrupted run."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "thinkrank", "evaluate", *args]


def run_cli(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cli(*args), capture_output=True, text=True, timeout=600, cwd=cwd,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def ndcg_at_10(ranked: list[str], labels: dict[str, int]) -> float:
    dcg = sum(labels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]) if labels.get(d, 0) > 0)
    ideal = sorted((g for g in labels.values() if g > 0), reverse=True)[:10]
    return dcg / sum(g / math.log2(i + 2) for i, g in enumerate(ideal))


def trec_lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()]


def test_the_bm25_run_as_given_scores_the_published_figure(data_dir, tmp_path):
    proc = run_cli("--dataset", str(data_dir / "dl19"), "--run", "bm25", "--output", str(tmp_path / "out"))
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert round(metrics["first_stage"]["aggregate"]["nDCG@10"], 4) == 0.5058  # Anserini's BM25 on DL19
    assert metrics["reranked"] is None and len(metrics["queries"]) == 43
    assert "nDCG@10" in proc.stdout and "0.5058" in proc.stdout
    def by_query(path: Path) -> dict[str, list[str]]:
        ranked: dict[str, list[str]] = {}
        for qid, _, doc, *_ in trec_lines(path):
            ranked.setdefault(qid, []).append(doc)
        return ranked

    assert by_query(tmp_path / "out" / "first-stage.trec") == by_query(data_dir / "dl19" / "runs" / "bm25.trec")
    assert (tmp_path / "out" / "report.html").is_file() and not (tmp_path / "out" / "reranked.trec").exists()


def test_a_run_file_query_ids_and_measures_default_output_folder(data_dir, tmp_path):
    shutil.copy(data_dir / "dl19" / "runs" / "bm25_rm3.trec", tmp_path / "mine.trec")
    run_cli("--dataset", str(data_dir / "dl19"), "--run", "mine.trec", "--query-ids", "19335,1037798", "--top-k", "10",
            "--measures", "nDCG@10,MAP", "--no-report", "--quiet", cwd=tmp_path)
    out = tmp_path / "runs" / "dl19-mine"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["queries"] == ["19335", "1037798"] and metrics["measures"] == ["nDCG@10", "AP"]
    assert not (out / "report.html").exists()
    qrels: dict[str, dict[str, int]] = {}
    for qid, _, doc, grade in (l.split() for l in (data_dir / "dl19" / "qrels.trec").read_text().splitlines()):
        qrels.setdefault(qid, {})[doc] = int(grade)
    ranked = [l[2] for l in trec_lines(tmp_path / "mine.trec") if l[0] == "19335"][:10]
    assert metrics["first_stage"]["per_query"]["19335"]["nDCG@10"] == pytest.approx(ndcg_at_10(ranked, qrels["19335"]))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run", "nope"], "neither a file nor a run of 'dl19'"),
        (["--run", "bm25", "--query-ids", "1037798,x1"], "not in both collection"),
        (["--run", "bm25", "--top-k", "0"], "--top-k must be >= 1"),
        (["--run", "bm25", "--queries", "0"], "must be >= 1"),
        (["--run", "bm25", "--queries", "2", "--query-ids", "19335"], "at most one of --queries"),
        (["--run", "bm25", "--measures", "nDCG@10,bogus"], "unknown measure 'bogus'"),
    ],
)
def test_bad_arguments_get_one_clear_line(data_dir, tmp_path, args, message):
    proc = run_cli("--dataset", str(data_dir / "dl19"), "--output", str(tmp_path / "o"), *args, check=False)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_a_cache_file_that_is_not_a_cache_is_refused_before_the_model_loads_and_kept(data_dir, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("my notes\n")
    proc = run_cli("--dataset", str(data_dir / "dl19"), "--run", "bm25", "--model", "/no/such/model", "--cache",
                   str(bad), "--output", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2 and "not a thinkrank judgment cache" in proc.stderr
    assert bad.read_text() == "my notes\n"


# ---- kill and resume ----------------------------------------------------------------------------
# One chunk (the default 64 pairs) holds every pair; the engine decodes them 2 at a time and each
# finished engine batch is committed.
QUERIES, TOP_K, BATCH = 3, 4, 2
TOTAL = QUERIES * TOP_K


def slice_args(data_dir: Path, model: Path, out: Path) -> list[str]:
    return ["--dataset", str(data_dir / "dl19"), "--run", "bm25", "--queries", str(QUERIES), "--top-k", str(TOP_K),
            "--model", str(model), "--think-budget", "16", "--batch-size", str(BATCH), "--output", str(out)]


def entries(db_path: Path) -> dict[str, str]:
    if not db_path.exists():
        return {}
    db = sqlite3.connect(db_path, timeout=30)  # a concurrent reader of the running evaluation's cache
    try:
        return dict(db.execute("SELECT key, value FROM entries"))
    except sqlite3.OperationalError:  # the schema is not there yet
        return {}
    finally:
        db.close()


@pytest.mark.slow
def test_sigkill_then_rerun_judges_only_the_missing_pairs_and_matches_an_uninterrupted_run(
    data_dir, smollm2_path, tmp_path
):
    out = tmp_path / "resumed"
    db = out / "judgments.sqlite"
    proc = subprocess.Popen(cli(*slice_args(data_dir, smollm2_path, out), "--quiet"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 300
    while not entries(db) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # right after the first engine batch committed, mid-chunk
    assert proc.wait(timeout=30) == -signal.SIGKILL
    saved = entries(db)
    assert 0 < len(saved) < TOTAL, f"{len(saved)} of {TOTAL} judgments were saved when the process was killed"
    assert len(saved) % BATCH == 0  # whole engine batches, though the chunk of all 12 pairs never finished
    assert not (out / "metrics.json").exists()

    resumed = run_cli(*slice_args(data_dir, smollm2_path, out))
    assert f"{TOTAL - len(saved)} judgments computed, {len(saved)} read from the cache" in resumed.stderr
    after = sqlite3.connect(db)
    assert {k: v for k, v in after.execute("SELECT key, value FROM entries") if k in saved} == saved  # none lost
    counts = dict(after.execute("SELECT key, COUNT(*) FROM computations GROUP BY key"))
    assert len(counts) == TOTAL and set(counts.values()) == {1}  # every pair judged exactly once
    per_process = [n for (n,) in after.execute("SELECT COUNT(*) FROM computations GROUP BY pid ORDER BY MIN(id)")]
    assert per_process == [len(saved), TOTAL - len(saved)]

    fresh = tmp_path / "fresh"
    run_cli(*slice_args(data_dir, smollm2_path, fresh), "--quiet")
    for name in ("reranked.trec", "metrics.json", "rankings.jsonl", "first-stage.trec"):
        assert (out / name).read_bytes() == (fresh / name).read_bytes(), name
    assert entries(fresh / "judgments.sqlite") == entries(db)
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["queries"]) == QUERIES and metrics["reranker"]["think_budget"] == 16
    assert set(metrics["paired_tests"]) == set(metrics["measures"])
    assert len(trec_lines(out / "reranked.trec")) == TOTAL
