"""Every CLI command on its default paths, end to end on the real SmolLM2 test model with tiny
budgets: rerank x mode (pointwise, listwise) x output format (table, jsonl, trec) x engine
(transformers; openai against the in-repo OpenAI-compatible server), evaluate x mode x engine,
compare, retrieve x run format, distill sample -> generate (local engine and the API teacher
against the same server) -> filter, cache check, and serve (both modes). Each run must exit 0
and print or write output that parses: JSON and JSONL load, TREC lines have six fields, a table
names every document.

``train`` and ``quantize`` are left out: each takes a training or calibration run, and
tests/test_pipeline.py (sample -> generate -> filter -> train -> rerank, as subprocesses) and
tests/test_quantize.py run them end to end already.

The commands run in process through typer's CliRunner (one interpreter, torch imported once,
the model files read from the page cache), as the other CLI tests do; ``serve`` runs as a real
process. The crash this matrix was written for (``rerank --mode listwise`` with the default table
output: AttributeError after all the model work) fails ``test_rerank`` for the listwise table.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.slow

DOCS = [
    {"id": "d1", "text": "Cats are small domesticated carnivorous mammals."},
    {"id": "d2", "title": "Markets", "text": "The stock market fell today after the tariff news."},
    {"id": "d3", "text": "Dogs are loyal companions."},
]
IDS = {d["id"] for d in DOCS}
SERVED = "smol"  # the name the in-repo OpenAI-compatible server answers to


@pytest.fixture(scope="module")
def app():
    from thinkrank.cli import _register
    from thinkrank.cli import app as typer_app

    _register()
    return typer_app


@pytest.fixture(scope="module")
def openai_url(smollm2_engine):
    """The in-repo OpenAI-compatible server over the session's loaded SmolLM2, on 127.0.0.1."""
    from thinkrank.testing.openai_server import EngineServer, serving

    with serving(EngineServer(smollm2_engine, SERVED).app) as url:
        yield url


@pytest.fixture(scope="module")
def engines(smollm2_path, openai_url):
    """The flags that pick each engine for the same model."""
    return {
        "transformers": ["--model", str(smollm2_path), "--engine", "transformers"],
        "openai": ["--model", SERVED, "--engine", "openai", "--base-url", openai_url, "--tokenizer", str(smollm2_path)],
    }


@pytest.fixture(scope="module")
def docs_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("smoke") / "docs.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    return path


def invoke(app, *args: str, stdin: str | None = None):
    result = CliRunner().invoke(app, [str(a) for a in args], input=stdin, env={"HF_HUB_OFFLINE": "1", "COLUMNS": "200"})
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.output[-3000:]}\n{result.exception!r}"
    return result


def budgets(mode: str) -> list[str]:
    return ["--think-budget", "8"] if mode == "pointwise" else ["--mode", "listwise", "--max-tokens", "24"]


def check_trec(lines: list[str]) -> list[list[str]]:
    rows = [line.split() for line in lines if line.strip()]
    assert rows and all(len(row) == 6 for row in rows), lines[:5]
    for qid, q0, _doc, rank, score, _tag in rows:
        assert q0 == "Q0" and int(rank) >= 1 and float(score) == float(score)
    return rows


# ---- rerank ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["transformers", "openai"])
@pytest.mark.parametrize("mode", ["pointwise", "listwise"])
@pytest.mark.parametrize("fmt", ["table", "jsonl", "trec"])
def test_rerank(app, engines, docs_file, engine, mode, fmt):
    out = invoke(app, "rerank", *engines[engine], *budgets(mode), "--query", "what is a cat", "--docs", docs_file,
                 "--format", fmt).stdout
    if fmt == "table":
        assert all(doc_id in out for doc_id in IDS) and "what is a cat" in out, out
    elif fmt == "jsonl":
        records = [json.loads(line) for line in out.splitlines()]
        judged = [r for r in records if "rank" in r]
        assert {r["id"] for r in judged} == IDS and [r["rank"] for r in judged] == [1, 2, 3]
        assert all(0.0 <= r["score"] <= 1.0 for r in judged)
        if mode == "pointwise":  # how each chain ended, consistent with `forced` and the budget of 8
            for r in judged:
                assert r["stop_reason"] in ("stop", "eos", "length") and r["forced"] == (r["stop_reason"] != "stop")
                assert r["reasoning_tokens"] == 8 if r["stop_reason"] == "length" else r["reasoning_tokens"] <= 8
        assert (mode == "listwise") == any("window" in r for r in records)
    else:
        assert {row[2] for row in check_trec(out.splitlines())} == IDS


def test_rerank_reads_documents_from_stdin(app, engines):
    out = invoke(app, "rerank", *engines["transformers"], "--reasoning", "off", "--query", "what is a cat",
                 "--docs", "-", "--format", "jsonl", stdin="".join(json.dumps(d) + "\n" for d in DOCS)).stdout
    assert {json.loads(line)["id"] for line in out.splitlines()} == IDS


# ---- evaluate and compare ---------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["transformers", "openai"])
@pytest.mark.parametrize("mode", ["pointwise", "listwise"])
def test_evaluate(app, engines, data_dir, tmp_path, engine, mode):
    out = tmp_path / "eval"
    printed = invoke(app, "evaluate", "--dataset", data_dir / "dl19", "--run", "bm25", "--queries", "1", "--top-k",
                     "3", *engines[engine], *budgets(mode), "--output", out).stdout
    assert "nDCG@10" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics and json.dumps(metrics)
    rankings = [json.loads(line) for line in (out / "rankings.jsonl").read_text().splitlines()]
    assert len(rankings) == 1 and len(rankings[0]["results"]) == 3
    assert (mode == "listwise") == bool(rankings[0].get("windows"))
    assert len(check_trec((out / "reranked.trec").read_text().splitlines())) == 3
    check_trec((out / "first-stage.trec").read_text().splitlines())
    assert (out / "report.html").read_text().rstrip().endswith("</html>")


def test_compare(app, smollm2_path, data_dir, tmp_path):
    out = tmp_path / "cmp"
    printed = invoke(app, "compare", "--dataset", data_dir / "dl19", "--run", "bm25", "--queries", "1", "--top-k", "3",
                     "--model", smollm2_path, "--compare-model", smollm2_path, "--reasoning", "off", "--engine",
                     "transformers", "--output", out).stdout
    assert printed.strip()
    assert json.loads((out / "comparison.json").read_text())
    for folder in (out, out / "baseline"):
        assert len(check_trec((folder / "reranked.trec").read_text().splitlines())) == 3


# ---- retrieve ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".trec", ".json", ".jsonl"])
def test_retrieve(app, data_dir, tmp_path, suffix):
    out = tmp_path / f"run{suffix}"
    invoke(app, "retrieve", "--dataset", data_dir / "vaswani", "--limit", "2", "--top-k", "5", "--output", out)
    text = out.read_text()
    if suffix == ".trec":
        assert len(check_trec(text.splitlines())) == 10
    elif suffix == ".json":
        assert json.loads(text)
    else:
        assert [json.loads(line) for line in text.splitlines()]


# ---- distill and cache --------------------------------------------------------------------------------
def test_distill_sample_generate_filter(app, smollm2_path, openai_url, data_dir, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    invoke(app, "distill", "sample", "--dataset", data_dir / "scifact" / "train", "--bm25", "--depth", "10",
           "--num-pairs", "4", "--output", pairs)
    drawn = len([json.loads(line) for line in pairs.read_text().splitlines()])
    assert 1 <= drawn <= 4  # a source short of candidates gives what it has
    teachers = {
        "engine": ["--teacher", "engine", "--model", smollm2_path, "--engine", "transformers", "--force-answer"],
        "api": ["--teacher", "api", "--api", "completions", "--base-url", openai_url, "--api-key", "none",
                "--model", SERVED],
    }
    for name, flags in teachers.items():
        traces = tmp_path / f"traces-{name}.jsonl"
        invoke(app, "distill", "generate", "--pairs", pairs, *flags, "--max-tokens", "12", "--store",
               tmp_path / f"{name}.sqlite", "--output", traces)
        made = [json.loads(line) for line in traces.read_text().splitlines()]
        assert len(made) == drawn
    # The engine teacher's chains were forced closed: kept with the flags docs/training.md gives.
    train = tmp_path / "train.jsonl"
    invoke(app, "distill", "filter", "--traces", tmp_path / "traces-engine.jsonl", "--output", train, "--report",
           tmp_path / "f.json", "--keep-forced", "--no-agree", "--no-require-reasoning")
    assert json.loads((tmp_path / "f.json").read_text())["stages"]
    assert [json.loads(line)["prompt"] for line in train.read_text().splitlines()]
    # The API teacher's 12-token chains never closed: nothing survives, and the error says where it went.
    empty = CliRunner().invoke(app, ["distill", "filter", "--traces", str(tmp_path / "traces-api.jsonl"), "--output",
                                     str(tmp_path / "none.jsonl")])
    assert empty.exit_code == 1 and f"no trace survived the filters (input {drawn} -> answer parsed" in empty.output


def test_cache_check_after_a_cached_rerank(app, engines, docs_file, tmp_path):
    cache = tmp_path / "judgments.sqlite"
    for _ in range(2):  # the second run reads every judgment back
        out = invoke(app, "rerank", *engines["transformers"], "--think-budget", "8", "--query", "cats", "--docs",
                     docs_file, "--cache", cache, "--format", "trec")
        assert {row[2] for row in check_trec(out.stdout.splitlines())} == IDS
    assert "0 judgments computed, 3 read from the cache" in out.stderr
    assert invoke(app, "cache", "check", cache).output.strip()


def test_a_fully_cached_rerun_loads_no_model(app, smollm2_path, docs_file, data_dir, tmp_path):
    import os

    model = tmp_path / "model"  # SmolLM2 through links, so its weights can be swapped for junk below
    model.mkdir()
    for f in smollm2_path.iterdir():
        (model / f.name).symlink_to(f)
    cache = tmp_path / "judgments.sqlite"
    rerank = ["rerank", "--model", model, "--think-budget", "8", "--query", "cats", "--docs", docs_file, "--cache",
              cache, "--format", "jsonl"]
    evaluate = ["evaluate", "--dataset", data_dir / "dl19", "--run", "bm25", "--queries", "1", "--top-k", "2",
                "--model", model, "--reasoning", "off", "--output", tmp_path / "eval", "--no-report"]
    first = invoke(app, *rerank).stdout
    invoke(app, *evaluate)
    first_metrics = (tmp_path / "eval" / "metrics.json").read_text()
    # The weights become junk with the same file times: a model load now fails, so passing means none happened.
    weights = model / "model.safetensors"
    times, folder_times = weights.stat(), model.stat()
    weights.unlink()
    weights.write_bytes(b"not weights")
    os.utime(weights, ns=(times.st_atime_ns, times.st_mtime_ns))
    os.utime(model, ns=(folder_times.st_atime_ns, folder_times.st_mtime_ns))
    again = invoke(app, *rerank)
    assert again.stdout == first and "0 judgments computed, 3 read from the cache" in again.stderr
    invoke(app, *evaluate)
    assert (tmp_path / "eval" / "metrics.json").read_text() == first_metrics
    # A judgment that is not cached needs the model: its load fails, as it must.
    missing = CliRunner().invoke(app, ["rerank", "--model", str(model), "--think-budget", "8", "--query", "dogs",
                                       "--docs", str(docs_file), "--cache", str(cache)])
    assert missing.exit_code != 0 and "error:" in missing.output, missing.output


def test_ctrl_c_prints_one_line(smollm2_path, data_dir, tmp_path):
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    # Chunks of 4 pairs: judgments are committed as each chunk finishes, long before the last one.
    cache = tmp_path / "eval" / "judgments.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-m", "thinkrank", "evaluate", "--dataset", str(data_dir / "dl19"), "--run", "bm25",
         "--queries", "2", "--top-k", "20", "--model", str(smollm2_path), "--think-budget", "64", "--chunk-size", "4",
         "--output", str(tmp_path / "eval")], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        # As a terminal's foreground process: a test run started in the background inherits SIGINT
        # ignored (POSIX shells do that to background jobs), and Python then never raises KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    for line in proc.stderr:  # the cache is open (what the message reports) once this line is out
        lines.append(line)
        if line.startswith("judgment cache"):
            break

    def committed() -> int:
        with sqlite3.connect(f"file:{cache}?mode=ro", uri=True, timeout=10) as db:
            return int(db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    # Interrupt while judging, not while third-party code imports or loads the model (a signal
    # landing there can be swallowed or end the process by the signal itself).
    deadline = time.monotonic() + 300
    while committed() == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the evaluation finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    lines += proc.stderr.readlines()
    assert proc.wait(120) == 130
    said = [line for line in lines if "interrupted" in line]
    assert len(said) == 1 and "judgments are saved in" in said[0] and "rerun the same command" in said[0], lines
    saved = int(said[0].split("interrupted: ")[1].split(" judgments")[0])
    assert saved >= 1 and saved == committed(), (saved, committed())


def test_version_and_help(app):
    from thinkrank import __version__

    assert invoke(app, "--version").stdout.strip() == f"thinkrank {__version__}"
    listed = invoke(app, "--help").stdout
    for command in ("rerank", "retrieve", "evaluate", "compare", "distill", "train", "recipe", "quantize", "serve", "cache",
                    "calibrate", "prompt", "families"):
        assert command in listed


# ---- serve ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["pointwise", "listwise"])
def test_serve(smollm2_path, mode):
    import httpx

    from tests.server_process import start_server

    server = start_server("--model", str(smollm2_path), "--served-model-name", SERVED, *budgets(mode))
    try:
        response = httpx.post(server.url + "/v2/rerank", json={"model": SERVED, "query": "what is a cat",
                                                                  "documents": [d["text"] for d in DOCS]}, timeout=600)
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert sorted(r["index"] for r in results) == [0, 1, 2]
    finally:
        assert server.stop() == 0
