"""`thinkrank rerank` as a user runs it: a real subprocess, real model, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tolerances import LAYOUT_TOL

DOCS = [
    {"id": "cat", "text": "Cats are small domesticated carnivorous mammals."},
    {"id": "stocks", "title": "Markets", "text": "The stock market fell today after the tariff news."},
    {"id": "dog", "text": "Dogs are loyal companions."},
]


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "thinkrank", *args], capture_output=True, text=True, timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


@pytest.fixture()
def docs_file(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    return path


def test_jsonl_output_has_one_scored_explained_record_per_document_in_rank_order(smollm2_path, docs_file):
    out = run_cli("rerank", "--model", str(smollm2_path), "--query", "what is a cat", "--docs", str(docs_file),
                  "--format", "jsonl", "--think-budget", "16", "--quiet").stdout
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["rank"] for r in records] == [1, 2, 3]
    assert sorted(r["id"] for r in records) == ["cat", "dog", "stocks"]
    assert [r["score"] for r in records] == sorted((r["score"] for r in records), reverse=True)
    for r in records:
        assert {"rank", "index", "id", "score", "answer", "forced", "reasoning", "truncated"} <= r.keys()
        assert 0.0 <= r["score"] <= 1.0 and r["answer"] in ("true", "false")
        assert DOCS[r["index"]]["id"] == r["id"]
        assert r["reasoning_tokens"] <= 16


def test_trec_output_and_top_n_with_plain_text_docs_and_queries_file(smollm2_path, tmp_path):
    (tmp_path / "docs.txt").write_text("Cats purr.\nStocks fell.\n\nDogs bark.\n")
    (tmp_path / "queries.jsonl").write_text('{"id": "q1", "text": "cats"}\n{"id": "q2", "text": "dogs"}\n')
    out = run_cli("rerank", "--model", str(smollm2_path), "--queries", str(tmp_path / "queries.jsonl"),
                  "--docs", str(tmp_path / "docs.txt"), "--reasoning", "off", "--format", "trec", "--top-n", "2").stdout
    lines = [line.split() for line in out.splitlines()]
    assert [(l[0], l[1], l[3], l[5]) for l in lines] == [
        ("q1", "Q0", "1", "thinkrank"), ("q1", "Q0", "2", "thinkrank"),
        ("q2", "Q0", "1", "thinkrank"), ("q2", "Q0", "2", "thinkrank"),
    ]
    assert {l[2] for l in lines} <= {"0", "1", "2"}  # blank lines are not documents


def test_docs_grouped_by_qid_go_to_their_own_query(smollm2_path, tmp_path):
    (tmp_path / "docs.jsonl").write_text(
        '{"qid": "a", "id": "a1", "text": "x y"}\n{"qid": "b", "id": "b1", "text": "z w"}\n{"qid": "b", "id": "b2", "text": "v"}\n'
    )
    (tmp_path / "q.jsonl").write_text('{"id": "a", "text": "first"}\n{"id": "b", "text": "second"}\n')
    out = run_cli("rerank", "--model", str(smollm2_path), "--queries", str(tmp_path / "q.jsonl"), "--docs",
                  str(tmp_path / "docs.jsonl"), "--reasoning", "off", "--format", "jsonl", "--quiet").stdout
    records = [json.loads(line) for line in out.splitlines()]
    assert {(r["query_id"], r["id"]) for r in records} == {("a", "a1"), ("b", "b1"), ("b", "b2")}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--query", "q", "--queries", "x.jsonl"], "exactly one of --query"),
        (["--query", "q", "--docs", "/no/such/docs.jsonl"], "file not found"),
        (["--query", "q", "--model", "/no/such/model"], "model path not found"),
        (["--query", "q", "--prompt", "msmarco"], "unknown prompt 'msmarco'"),
        (["--query", "", ], "query is empty"),
        (["--query", "q", "--engine", "openai", "--base-url", "http://127.0.0.1:9/v1", "--extra-body", "[1]"],
         "--extra-body must be a JSON object"),
        (["--query", "q", "--reasoning", "off", "--reasoning-close", "</answer>"], "reasoning_close='</answer>'"),
    ],
)
def test_bad_invocations_exit_2_with_one_clear_line(smollm2_path, docs_file, args, message):
    if "--docs" not in args:
        args = [*args, "--docs", str(docs_file)]
    if "--model" not in args:
        args = [*args, "--model", str(smollm2_path)]
    proc = run_cli("rerank", *args, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_malformed_jsonl_names_file_and_line(smollm2_path, tmp_path):
    bad = tmp_path / "docs.jsonl"
    bad.write_text('{"id": "a", "text": "fine"}\n{"id": "b", "text": oops}\n')
    proc = run_cli("rerank", "--model", str(smollm2_path), "--query", "q", "--docs", str(bad), check=False)
    assert proc.returncode == 2 and f"{bad}:2: not valid JSON" in proc.stderr


def test_help_lists_every_option():
    out = run_cli("rerank", "--help").stdout
    for option in ("--model", "--query", "--queries", "--docs", "--mode", "--reasoning", "--think-budget", "--prompt",
                   "--instruction", "--top-n", "--format", "--engine", "--base-url", "--max-passage-tokens",
                   "--temperature", "--seed", "--window", "--stride", "--depth"):
        assert option in out, option


@pytest.mark.slow
def test_gguf_model_file_works_from_the_cli(docs_file):
    from thinkrank.testing import smollm2_gguf

    out = run_cli("rerank", "--model", str(smollm2_gguf()), "--query", "what is a cat", "--docs", str(docs_file),
                  "--format", "jsonl", "--think-budget", "8", "--quiet").stdout
    assert len(out.splitlines()) == 3


def test_openai_engine_from_the_cli_matches_the_in_process_scores(smollm2_engine, smollm2_path, docs_file):
    from thinkrank import Rank1
    from thinkrank.testing.openai_server import EngineServer, serving

    with serving(EngineServer(smollm2_engine, "smol").app) as url:
        out = run_cli("rerank", "--engine", "openai", "--base-url", url, "--model", "smol", "--tokenizer",
                      str(smollm2_path), "--concurrency", "2", "--query", "what is a cat", "--docs", str(docs_file),
                      "--reasoning", "off", "--format", "jsonl", "--quiet").stdout
    over_http = {r["id"]: r["score"] for r in map(json.loads, out.splitlines())}
    local = Rank1(engine=smollm2_engine, reasoning=False).rerank("what is a cat", DOCS)
    assert over_http == pytest.approx({j.doc_id: j.score for j in local}, abs=LAYOUT_TOL)


def test_a_flag_of_another_engine_is_refused(smollm2_path, docs_file):
    proc = run_cli("rerank", "--engine", "transformers", "--model", str(smollm2_path), "--query", "q", "--docs",
                   str(docs_file), "--concurrency", "4", check=False)
    assert proc.returncode == 2 and "--concurrency is an option of the openai engine" in proc.stderr


def test_a_rerun_with_the_same_cache_generates_nothing_and_prints_the_same(smollm2_path, docs_file, tmp_path):
    import sqlite3

    cache = tmp_path / "judgments.sqlite"
    args = ("rerank", "--model", str(smollm2_path), "--query", "what is a cat", "--docs", str(docs_file), "--format",
            "jsonl", "--think-budget", "8", "--cache", str(cache))
    first, second = run_cli(*args), run_cli(*args)
    assert "judgment cache" in first.stderr and "3 judgments computed, 0 read from the cache" in first.stderr
    assert "0 judgments computed, 3 read from the cache" in second.stderr
    assert second.stdout == first.stdout and len(first.stdout.splitlines()) == 3
    db = sqlite3.connect(cache)
    # The cache logs each computation with the process that made it: three, all by the first run.
    rows = db.execute("SELECT key, pid FROM computations").fetchall()
    assert len(rows) == 3 and len({key for key, _ in rows}) == 3 and len({pid for _, pid in rows}) == 1
    db.close()


def test_an_unwritable_cache_path_fails_before_the_model_loads(docs_file, tmp_path):
    proc = run_cli("rerank", "--model", str(tmp_path / "missing-model"), "--query", "q", "--docs", str(docs_file),
                   "--cache", str(tmp_path), check=False)
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: --cache {tmp_path} is a folder")
