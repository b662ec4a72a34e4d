"""`thinkrank distill sample | generate | filter` end to end on real files: SciFact train, a
real HTTP teacher server, the OpenAI batch files and a local SmolLM2 teacher."""

from __future__ import annotations

import json
import re
import sqlite3
import threading

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from typer.testing import CliRunner

from thinkrank.cli.distill import distill_app
from thinkrank.datasets import load_collection
from thinkrank.datasets.runs import write_trec_run
from thinkrank.distill.records import read_pairs
from thinkrank.prompts.rank1 import build_rank1_prompt
from thinkrank.testing.openai_server import serving


def cli(*args: str):
    return CliRunner().invoke(distill_app, [str(a) for a in args], catch_exceptions=True)


def ok(*args: str):
    result = cli(*args)
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result


def assert_clean_error(result, words: str, code: int = 2) -> None:
    """A failed command: the exit code, one `error:` line naming the problem, no traceback."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and words in errors[0], result.output
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def scifact(data_dir):
    return load_collection(data_dir / "scifact" / "train")


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory, data_dir):
    path = tmp_path_factory.mktemp("sample") / "pairs.jsonl"
    ok("sample", "--dataset", data_dir / "scifact" / "train", "--bm25", "--num-pairs", 40, "--output", path, "--seed", 3)
    return path


# ---- sample ----------------------------------------------------------------------------------
def test_sample_with_bm25_writes_the_mix_from_scifact_train(pairs_file, scifact):
    pairs = read_pairs(pairs_file)
    assert len(pairs) == 40
    assert sorted({p.source for p in pairs}) == ["hard:1-5", "hard:6-10", "negative", "positive"]
    assert all(sum(p.source == s for p in pairs) == 10 for s in ("positive", "negative", "hard:1-5", "hard:6-10"))
    for p in pairs:
        relevant = scifact.qrels.get(p.qid, {}).get(p.docid, 0) >= 1
        assert p.label == relevant == (p.source == "positive")
        assert p.query == scifact.queries[p.qid] and p.passage == scifact.corpus[p.docid].passage
        if p.source.startswith("hard:"):
            a, b = map(int, p.source[5:].split("-"))
            assert a <= p.rank <= b
    assert len({(p.qid, p.docid) for p in pairs}) == 40


def test_sample_with_bm25_equals_sampling_from_the_same_bm25_run_file(pairs_file, scifact, data_dir, tmp_path):
    from thinkrank.retrieval import BM25

    run = BM25(scifact.corpus).search(scifact.queries, 100)
    write_trec_run(run, tmp_path / "bm25.trec")
    for p in read_pairs(pairs_file):
        if p.rank is not None:
            assert run.doc_ids(p.qid)[p.rank - 1] == p.docid
    ok("sample", "-d", data_dir / "scifact" / "train", "--run", tmp_path / "bm25.trec", "-n", 40, "-o", tmp_path / "p.jsonl", "--seed", 3)
    assert (tmp_path / "p.jsonl").read_text() == pairs_file.read_text()
    ok("sample", "-d", data_dir / "scifact" / "train", "--run", tmp_path / "bm25.trec", "-n", 40, "-o", tmp_path / "q.jsonl", "--seed", 4)
    assert (tmp_path / "q.jsonl").read_text() != pairs_file.read_text()


def test_sample_reports_a_source_that_runs_short(data_dir, tmp_path):
    result = ok("sample", "-d", data_dir / "scifact" / "train", "-n", 3000, "--share", "positive=1", "-o", tmp_path / "p.jsonl")
    total_positives = sum(1 for line in (data_dir / "scifact" / "train" / "qrels.trec").read_text().splitlines()
                          if line.split() and int(line.split()[3]) >= 1)
    assert len(read_pairs(tmp_path / "p.jsonl")) == total_positives
    assert re.search(rf"positive\s*│\s*3,000\s*│\s*{total_positives:,}\s*│\s*{total_positives:,}", result.output)


@pytest.mark.parametrize("args, words", [
    (["--share", "junk"], "--share takes SOURCE=WEIGHT"),
    (["--share", "hard:1-5=lots"], "--share takes SOURCE=WEIGHT"),
    (["--share", "middle=1"], "unknown source 'middle'"),
    (["--share", "positive=nan"], "shares must be >= 0"),
    (["--share", "hard:7-2=1"], "rank band needs 1 <= A <= B"),
    (["--deep-band", "11..100"], "a rank band is written A-B"),
    (["--num-pairs", "0"], "number of pairs must be >= 1"),
    (["--run", "nope.trec", "--bm25"], "not both"),
    (["--share", "hard:1-5=1"], "need a first-stage run"),
])
def test_sample_refuses_bad_options_with_one_line(data_dir, tmp_path, args, words):
    assert_clean_error(cli("sample", "-d", data_dir / "scifact" / "train", "-o", tmp_path / "p.jsonl", *args), words)
    assert not (tmp_path / "p.jsonl").exists()


def test_sample_refuses_a_missing_collection_or_run(tmp_path, data_dir):
    assert_clean_error(cli("sample", "-d", tmp_path / "nowhere", "-o", tmp_path / "p.jsonl"), "nowhere")
    assert_clean_error(cli("sample", "-d", data_dir / "scifact" / "train", "--run", tmp_path / "missing.trec",
                           "-o", tmp_path / "p.jsonl"), "missing.trec")


# ---- generate (API and batch teachers) and filter ----------------------------------------------
class Teacher:
    """A real OpenAI-compatible server: the chain in reasoning_content, the qrels label as the
    answer except for the pairs whose qid is in ``wrong``, and 500s for those in ``broken``."""

    def __init__(self, pairs) -> None:
        self.labels = {build_rank1_prompt(p.query, p.passage): p for p in pairs}
        self.wrong: set[str] = set()
        self.broken: set[str] = set()
        self.prompts: list[str] = []
        self._lock = threading.Lock()
        self.app = FastAPI()

        @self.app.post("/v1/chat/completions")
        async def chat(request: Request) -> JSONResponse:
            body = await request.json()
            prompt = body["messages"][0]["content"]
            with self._lock:
                self.prompts.append(prompt)
            pair = self.labels[prompt]
            if pair.docid in self.broken:
                return JSONResponse({"error": {"message": "down"}}, status_code=500)
            answer = pair.label != (pair.docid in self.wrong)
            message = {"role": "assistant", "content": "true" if answer else "false",
                       "reasoning_content": f"Reasoning about {pair.docid}."}
            return JSONResponse({"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                                 "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})


def test_generate_with_an_api_teacher_resumes_and_filter_writes_training_data(pairs_file, tmp_path):
    pairs = read_pairs(pairs_file)[:8]
    teacher = Teacher(pairs)
    teacher.broken = {pairs[0].docid, pairs[1].docid}
    teacher.wrong = {pairs[2].docid}
    store, traces = tmp_path / "t.sqlite", tmp_path / "traces.jsonl"
    with serving(teacher.app) as url:
        args = ["generate", "--pairs", pairs_file, "--store", store, "--model", "r1", "--base-url", url,
                "--limit", 8, "--max-retries", 1, "--backoff", 0.01, "--output", traces, "--quiet"]
        first = cli(*args)
        assert_clean_error(first, "2 prompts failed (run the same command again to retry them)", code=1)
        assert len(traces.read_text().splitlines()) == 6  # what finished is written
        assert len(teacher.prompts) == 6 + 2 * 2
        teacher.broken = set()
        ok(*args)
        assert len(teacher.prompts) == 10 + 2  # only the two failed prompts again
        assert sorted(teacher.prompts[-2:]) == sorted(build_rank1_prompt(p.query, p.passage) for p in pairs[:2])
        third = ok(*args)
        assert len(teacher.prompts) == 12
        assert re.search(r"already stored\s*│\s*8\s*│", third.output) and re.search(r"generated now\s*│\s*0\s*│", third.output)
    records = [json.loads(x) for x in traces.read_text().splitlines()]
    assert [(r["qid"], r["docid"]) for r in records] == [(p.qid, p.docid) for p in pairs]

    out, lf, report = tmp_path / "train.jsonl", tmp_path / "lf", tmp_path / "filter.json"
    ok("filter", "--traces", traces, "--output", out, "--llamafactory", lf, "--report", report)
    examples = [json.loads(x) for x in out.read_text().splitlines()]
    assert [e["docid"] for e in examples] == [p.docid for p in pairs if p.docid != pairs[2].docid]
    for example, pair in zip(examples, [p for p in pairs if p.docid != pairs[2].docid]):
        assert example["prompt"] == build_rank1_prompt(pair.query, pair.passage)
        assert example["completion"] == f"Reasoning about {pair.docid}.\n</think> {'true' if pair.label else 'false'}"
    stages = json.loads(report.read_text())["stages"]
    assert [(s["name"], s["kept"], s["dropped"]) for s in stages][-1] == ("agrees with label", 7, 1)
    assert json.loads((lf / "dataset_info.json").read_text())["rank1_distill"]["file_name"] == "rank1_distill.json"
    assert len(json.loads((lf / "rank1_distill.json").read_text())) == 7


def test_generate_with_batch_files_writes_requests_then_reads_results(pairs_file, tmp_path):
    store, requests = tmp_path / "t.sqlite", tmp_path / "requests.jsonl"
    base = ["generate", "--pairs", pairs_file, "--store", store, "--model", "r1", "--teacher", "batch", "--limit", 5]
    ok(*base, "--batch-requests", requests)
    lines = [json.loads(x) for x in requests.read_text().splitlines()]
    pairs = read_pairs(pairs_file)[:5]
    assert [line["body"]["messages"][0]["content"] for line in lines] == [build_rank1_prompt(p.query, p.passage) for p in pairs]
    assert all(line["method"] == "POST" and line["url"] == "/v1/chat/completions" for line in lines)
    assert all((line["body"]["temperature"], line["body"]["max_tokens"]) == (0.3, 1000) for line in lines)
    results = tmp_path / "results.jsonl"
    body = {"choices": [{"index": 0, "message": {"content": "<think>batch chain</think> true"}, "finish_reason": "stop"}]}
    results.write_text("".join(json.dumps({"custom_id": line["custom_id"], "response": {"status_code": 200, "body": body}}) + "\n"
                               for line in lines[:3]))
    ok(*base, "--batch-results", results, "--batch-requests", tmp_path / "rest.jsonl", "--output", tmp_path / "traces.jsonl")
    rest = [json.loads(x)["custom_id"] for x in (tmp_path / "rest.jsonl").read_text().splitlines()]
    assert rest == [line["custom_id"] for line in lines[3:]]
    traces = [json.loads(x) for x in (tmp_path / "traces.jsonl").read_text().splitlines()]
    assert [(t["docid"], t["reasoning"], t["answer_text"]) for t in traces] == [(p.docid, "batch chain", "true") for p in pairs[:3]]


@pytest.mark.parametrize("extra, words", [
    (["--teacher", "api"], "--teacher api needs --base-url"),
    (["--teacher", "batch"], "--teacher batch needs --batch-requests"),
    (["--teacher", "batch", "--batch-requests", "r.jsonl", "--extra", "{bad"], "--extra must be a JSON object"),
    (["--teacher", "batch", "--batch-requests", "r.jsonl", "--prompt", "nosuchset"], "unknown prompt 'nosuchset'"),
    (["--teacher", "batch", "--batch-results", "missing-results.jsonl"], "missing-results.jsonl"),
    (["--teacher", "batch", "--batch-requests", "r.jsonl", "--max-tokens", "0"], "max_tokens must be >= 1"),
])
def test_generate_refuses_bad_options_with_one_line(pairs_file, tmp_path, monkeypatch, extra, words):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    assert_clean_error(cli("generate", "--pairs", pairs_file, "--store", tmp_path / "t.sqlite", "--model", "m", *extra), words)


def test_generate_and_filter_refuse_missing_or_bad_files(tmp_path):
    assert_clean_error(cli("generate", "--pairs", tmp_path / "nope.jsonl", "--store", tmp_path / "t.sqlite",
                           "--model", "m", "--teacher", "batch", "--batch-requests", tmp_path / "r.jsonl"), "nope.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"qid": "q"}\n')
    assert_clean_error(cli("generate", "--pairs", tmp_path / "bad.jsonl", "--store", tmp_path / "t.sqlite",
                           "--model", "m", "--teacher", "batch", "--batch-requests", tmp_path / "r.jsonl"), "bad.jsonl:1: missing")
    assert_clean_error(cli("filter", "--traces", tmp_path / "none.jsonl", "--output", tmp_path / "o.jsonl"), "none.jsonl")
    assert_clean_error(cli("filter", "--traces", tmp_path / "bad.jsonl", "--output", tmp_path / "o.jsonl"), "not a trace record")
    (tmp_path / "store").mkdir()
    (tmp_path / "p.jsonl").write_text(json.dumps({"qid": "q", "docid": "d", "query": "x", "passage": "y", "label": 1}) + "\n")
    assert_clean_error(cli("generate", "--pairs", tmp_path / "p.jsonl", "--store", tmp_path / "store",
                           "--model", "m", "--teacher", "batch", "--batch-requests", tmp_path / "r.jsonl"), "is a folder")


# ---- generate with a local engine teacher ----------------------------------------------------
@pytest.mark.slow
def test_generate_with_the_smollm2_engine_then_again_generates_nothing(pairs_file, smollm2_path, tmp_path):
    store, traces = tmp_path / "t.sqlite", tmp_path / "traces.jsonl"
    args = ["generate", "--pairs", pairs_file, "--teacher", "engine", "--model", smollm2_path, "--max-tokens", 16,
            "--limit", 4, "--force-answer", "--device", "cpu", "--store", store, "--output", traces, "--quiet"]
    first = ok(*args)
    assert re.search(r"generated now\s*│\s*4\s*│", first.output)
    with sqlite3.connect(store) as db:
        created = db.execute("SELECT key, created FROM traces ORDER BY key").fetchall()
    assert len(created) == 4
    second = ok(*args)
    assert re.search(r"already stored\s*│\s*4\s*│", second.output) and re.search(r"generated now\s*│\s*0\s*│", second.output)
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT key, created FROM traces ORDER BY key").fetchall() == created
    records = [json.loads(x) for x in traces.read_text().splitlines()]
    pairs = read_pairs(pairs_file)[:4]
    assert [r["docid"] for r in records] == [p.docid for p in pairs]
    assert all(r["finish_reason"] in ("stop", "forced") and r["answer_text"] in ("true", "false") for r in records)

    out = tmp_path / "train.jsonl"
    ok("filter", "--traces", traces, "--output", out, "--no-agree", "--keep-forced", "--no-require-reasoning")
    examples = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(examples) == 4
    for example, record, pair in zip(examples, records, pairs):
        assert example["prompt"] == build_rank1_prompt(pair.query, pair.passage)
        assert example["completion"] == f"{record['reasoning'].strip()}\n</think> {record['answer_text']}"
    # the default filters keep closed chains that agree with the label; none left is a clear exit 1
    expected = [r for r, pair in zip(records, pairs) if r["finish_reason"] == "stop" and r["reasoning"].strip()
                and r["answer_text"] == ("true" if pair.label else "false")]
    strict = cli("filter", "--traces", traces, "--output", tmp_path / "strict.jsonl")
    if expected:
        assert strict.exit_code == 0 and len((tmp_path / "strict.jsonl").read_text().splitlines()) == len(expected)
    else:
        assert_clean_error(strict, "no trace survived the filters", code=1)
