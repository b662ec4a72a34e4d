"""Every bad input to the CLI, as a user meets it: a real subprocess, exit code 2, one `error:`
line naming the problem, no traceback, no output file left behind.

The runs name a model that does not exist (``never-loaded/model``, offline): a check that only
happened after the model loads would fail with the model's error instead of its own, so a
passing case shows the check came before any model work. The subprocesses run concurrently
(they are mostly interpreter start-up), once per session; each case then checks its own result.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

NEVER = "never-loaded/model"  # offline and not cached: loading it fails loudly with its own message
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _files(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    f = {name: root / name for name in (
        "docs.jsonl", "bad-utf8.txt", "dup.jsonl", "empty-text.jsonl", "int-text.jsonl", "surrogate.jsonl",
        "list-id.jsonl", "bad-config", "traces-null-prompt.jsonl", "traces-latin1.jsonl", "damaged.sqlite", "not-a-cache.txt",
        "out")}
    f["docs.jsonl"].write_text('{"id": "a", "text": "cats eat meat"}\n{"id": "b", "text": "dogs bark"}\n')
    f["bad-utf8.txt"].write_bytes(b"fine line\ncaf\xe9 au lait\n")
    f["dup.jsonl"].write_text('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n')
    f["empty-text.jsonl"].write_text('{"id": "a", "text": "  "}\n')
    f["int-text.jsonl"].write_text('{"id": "a", "text": 5}\n')
    f["list-id.jsonl"].write_text('{"id": "a", "text": "x"}\n\n{"id": [1, 2], "text": "y"}\n')
    f["surrogate.jsonl"].write_text('{"id": "a", "text": "broken \\udc80 text"}\n')
    f["bad-config"].mkdir(exist_ok=True)
    (f["bad-config"] / "config.json").write_text("{not json")
    trace = {"qid": "q", "docid": "d", "query": "q", "passage": "p", "label": 1, "prompt": None,
             "reasoning": "r", "answer_text": "true"}
    f["traces-null-prompt.jsonl"].write_text(json.dumps(trace) + "\n")
    f["traces-latin1.jsonl"].write_bytes(json.dumps({**trace, "prompt": "caf\u00e9"}, ensure_ascii=False).encode("latin-1") + b"\n")
    db = sqlite3.connect(f["damaged.sqlite"])
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    data = f["damaged.sqlite"].read_bytes()
    f["damaged.sqlite"].write_bytes(data[:100] + b"\xff" * 200 + data[300:])  # a wrecked schema page
    f["not-a-cache.txt"].write_text("my notes\n")
    return f


def _cases(f: dict[str, Path], tmp: Path) -> dict[str, tuple[list[str], str]]:
    docs = str(f["docs.jsonl"])
    rr = ["rerank", "--model", NEVER, "--query", "what do cats eat"]
    vaswani = ["retrieve", "--dataset", str(DATA / "vaswani")]
    ev = ["evaluate", "--dataset", str(DATA / "dl19"), "--run", "bm25"]
    return {
        # rerank: input files
        "docs not UTF-8": (rr + ["--docs", str(f["bad-utf8.txt"])], "bad-utf8.txt:2: not UTF-8"),
        "docs is a folder": (rr + ["--docs", str(tmp)], "is a folder"),
        "queries not UTF-8": (["rerank", "--model", NEVER, "--queries", str(f["bad-utf8.txt"]), "--docs", docs],
                              "bad-utf8.txt:2: not UTF-8"),
        "duplicate doc ids": (rr + ["--docs", str(f["dup.jsonl"])], "share the id 'a'"),
        "empty document": (rr + ["--docs", str(f["empty-text.jsonl"])], "has empty text"),
        "non-string document": (rr + ["--docs", str(f["int-text.jsonl"])], "'text' must be a string, got int"),
        "list as doc id": (rr + ["--docs", str(f["list-id.jsonl"])],
                           "list-id.jsonl:3: document: an id must be a string or an integer, got list [1, 2]"),
        "lone surrogate": (rr + ["--docs", str(f["surrogate.jsonl"])], "lone surrogate"),
        "stdin twice": (["rerank", "--model", NEVER, "--queries", "-", "--docs", "-"], "both read standard input"),
        "empty query": (["rerank", "--model", NEVER, "--query", " ", "--docs", docs], "query is empty"),
        # rerank: numbers
        "temperature nan": (rr + ["--docs", docs, "--temperature", "nan"], "--temperature must be a finite number"),
        "temperature negative": (rr + ["--docs", docs, "--temperature", "-1"], "--temperature must be >= 0"),
        "batch size 0": (rr + ["--docs", docs, "--batch-size", "0"], "--batch-size must be >= 1"),
        "batch size negative": (rr + ["--docs", docs, "--batch-size", "-4"], "--batch-size must be >= 1"),
        "top-n 0": (rr + ["--docs", docs, "--top-n", "0"], "--top-n must be >= 1"),
        "top-n negative": (rr + ["--docs", docs, "--top-n", "-2"], "--top-n must be >= 1"),
        "think budget 0": (rr + ["--docs", docs, "--think-budget", "0"], "--think-budget must be >= 1"),
        "passage tokens 0": (rr + ["--docs", docs, "--max-passage-tokens", "0"], "--max-passage-tokens must be >= 1"),
        "window 1": (rr + ["--docs", docs, "--mode", "listwise", "--window", "1"], "--window must be >= 2"),
        "concurrency 0": (rr + ["--docs", docs, "--engine", "openai", "--concurrency", "0"],
                          "--concurrency must be >= 1"),
        "timeout negative": (rr + ["--docs", docs, "--engine", "openai", "--timeout", "-1"], "--timeout must be > 0"),
        "gpu memory 1.5": (rr + ["--docs", docs, "--engine", "vllm", "--gpu-memory-utilization", "1.5"],
                           "--gpu-memory-utilization must be <= 1"),
        # rerank: options the run would ignore
        "think budget in listwise": (rr + ["--docs", docs, "--mode", "listwise", "--think-budget", "64"],
                                     "--think-budget applies only to --mode pointwise"),
        "reasoning in listwise": (rr + ["--docs", docs, "--mode", "listwise", "--reasoning", "off"],
                                  "--reasoning applies only to --mode pointwise"),
        "window in pointwise": (rr + ["--docs", docs, "--window", "5"], "--window applies only to --mode listwise"),
        "budget with reasoning off": (rr + ["--docs", docs, "--reasoning", "off", "--think-budget", "8"],
                                      "--think-budget has no effect with --reasoning off"),
        "seed with greedy": (rr + ["--docs", docs, "--seed", "3"], "--seed has no effect with --temperature 0"),
        "chat without openai": (rr + ["--docs", docs, "--engine", "transformers", "--chat"],
                                "--chat is an option of the openai engine"),
        "transformers flag on openai": (rr + ["--docs", docs, "--engine", "openai", "--batch-size", "4"],
                                        "--batch-size is an option of the transformers engine"),
        # rerank: models that are not what they seem
        "file as model": (["rerank", "--model", docs, "--query", "q", "--docs", docs], "is a file but not a .gguf"),
        "bad config.json": (["rerank", "--model", str(f["bad-config"]), "--query", "q", "--docs", docs],
                            "config.json is not valid JSON"),
        "hub id offline": (["rerank", "--model", NEVER, "--query", "q", "--docs", docs, "--engine", "transformers"],
                           "HF_HUB_OFFLINE=1 is set and it is not in the local Hugging Face cache"),
        # retrieve
        "limit -1": (vaswani + ["--output", str(tmp / "r1.trec"), "--limit", "-1"], "--limit must be >= 1"),
        "limit 0": (vaswani + ["--output", str(tmp / "r2.trec"), "--limit", "0"], "--limit must be >= 1"),
        "k1 negative": (vaswani + ["--output", str(tmp / "r3.trec"), "--k1", "-1"], "--k1 must be >= 0"),
        "b above 1": (vaswani + ["--output", str(tmp / "r4.trec"), "--b", "5"], "--b must be <= 1"),
        "model with bm25": (vaswani + ["--output", str(tmp / "r5.trec"), "--model", "x"],
                            "--model is an option of --method dense"),
        "k1 with dense": (vaswani + ["--output", str(tmp / "r6.trec"), "--method", "dense", "--model", "m", "--k1", "1"],
                          "--k1 is an option of --method bm25"),
        "missing dense model": (vaswani + ["--output", str(tmp / "r7.trec"), "--method", "dense", "--model",
                                           "./no-such-model"], "dense model folder not found"),
        "output is a folder": (vaswani + ["--output", str(tmp)], "is a folder"),
        "output under a file": (vaswani + ["--output", str(f["docs.jsonl"] / "run.trec")], "is a file, not a folder"),
        "output unwritable": (vaswani + ["--output", "/proc/thinkrank/run.trec"], "cannot write in /proc/thinkrank"),
        # evaluate
        "chunk size 0": (ev + ["--model", NEVER, "--chunk-size", "0", "--output", str(tmp / "e1")],
                         "--chunk-size must be >= 1"),
        "queries 0": (ev + ["--queries", "0", "--output", str(tmp / "e2")], "--queries must be >= 1"),
        "reranker option without model": (ev + ["--think-budget", "8", "--output", str(tmp / "e3")],
                                          "--think-budget configure a reranker, but no --model"),
        "evaluate budget in listwise": (ev + ["--model", NEVER, "--mode", "listwise", "--think-budget", "8",
                                              "--output", str(tmp / "e4")], "--think-budget applies only"),
        "evaluate output under a file": (ev + ["--output", str(f["docs.jsonl"] / "o")], "cannot write the results"),
        "damaged cache": (ev + ["--model", NEVER, "--cache", str(f["damaged.sqlite"]), "--output", str(tmp / "e5")],
                          "thinkrank cache repair"),
        "cache is a folder": (ev + ["--model", NEVER, "--cache", str(tmp), "--output", str(tmp / "e6")],
                              "is a folder"),
        # distill filter
        "null prompt in traces": (["distill", "filter", "--traces", str(f["traces-null-prompt.jsonl"]), "--output",
                                   str(tmp / "train1.jsonl")], "'prompt' must be non-empty text"),
        "traces not UTF-8": (["distill", "filter", "--traces", str(f["traces-latin1.jsonl"]), "--output",
                              str(tmp / "train2.jsonl")], "not UTF-8"),
        # cache
        "cache check on notes": (["cache", "check", str(f["not-a-cache.txt"])], "is not an SQLite file"),
        "cache check missing": (["cache", "check", str(tmp / "none.sqlite")], "cache file not found"),
    }


# Outputs a failed case must not leave behind (relative to the case folder).
LEFT_BEHIND = ["r1.trec", "r2.trec", "r3.trec", "r4.trec", "r5.trec", "r6.trec", "r7.trec", "train1.jsonl",
               "train2.jsonl", "e1/metrics.json", "e4/metrics.json", "e5/metrics.json", "e6/metrics.json"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad-inputs")
    cases = _cases(_files(tmp / "files"), tmp)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "THINKRANK_DEBUG": ""}

    def run(args: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "thinkrank", *args], capture_output=True, text=True,
                              timeout=300, env=env)

    with ThreadPoolExecutor(max_workers=4) as pool:
        procs = dict(zip(cases, pool.map(run, [args for args, _ in cases.values()])))
    return tmp, {name: (procs[name], message) for name, (_, message) in cases.items()}


CASE_NAMES = list(_cases({k: Path(k) for k in (
    "docs.jsonl", "bad-utf8.txt", "dup.jsonl", "empty-text.jsonl", "int-text.jsonl", "surrogate.jsonl", "list-id.jsonl",
    "bad-config",
    "traces-null-prompt.jsonl", "traces-latin1.jsonl", "damaged.sqlite", "not-a-cache.txt", "out")}, Path("t")))


@pytest.mark.parametrize("case", CASE_NAMES)
def test_bad_input_gets_exit_2_and_one_error_line_naming_it(results, case):
    _, table = results
    proc, message = table[case]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    assert len(errors) == 1 and message in errors[0], proc.stderr[-2000:]
    if case != "hub id offline":  # the check came before any model was looked for
        assert NEVER not in proc.stderr
    assert proc.stdout == ""


def test_failed_runs_leave_no_output_file(results):
    tmp, _ = results
    assert [p for p in LEFT_BEHIND if (tmp / p).exists()] == []
    assert not list(tmp.rglob(".*.tmp-*"))
