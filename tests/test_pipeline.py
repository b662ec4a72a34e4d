"""The whole recipe as a user runs it, each step a real `thinkrank` subprocess on CPU:
sample pairs from scifact/train -> traces from a local teacher (SmolLM2 stands in for R1) ->
filter -> LoRA training -> reranking with the trained model, merged and as base + adapter."""

from __future__ import annotations

import json

import pytest

from tests.test_cli_rerank import DOCS, run_cli


@pytest.mark.slow
def test_sample_generate_filter_train_rerank(data_dir, smollm2_path, tmp_path):
    pairs, traces, train_data, run = (tmp_path / n for n in ("pairs.jsonl", "traces.jsonl", "train.jsonl", "run"))
    run_cli("distill", "sample", "--dataset", str(data_dir / "scifact" / "train"), "--bm25", "--num-pairs", "8",
            "--output", str(pairs))
    drawn = [json.loads(line) for line in pairs.read_text().splitlines()]
    assert len(drawn) == 8 and {p["label"] for p in drawn} == {True, False}

    run_cli("distill", "generate", "--pairs", str(pairs), "--teacher", "engine", "--model", str(smollm2_path),
            "--max-tokens", "24", "--force-answer", "--store", str(tmp_path / "traces.sqlite"),
            "--output", str(traces), "--quiet")
    made = [json.loads(line) for line in traces.read_text().splitlines()]
    assert len(made) == 8 and all(t["answer_text"] in ("true", "false") for t in made)

    # A 135M stand-in teacher rarely agrees with the labels; keep every parsed trace here.
    run_cli("distill", "filter", "--traces", str(traces), "--output", str(train_data), "--no-agree",
            "--keep-forced", "--no-require-reasoning")
    examples = [json.loads(line) for line in train_data.read_text().splitlines()]
    assert len(examples) == 8
    assert all(e["prompt"].endswith("<think>") and e["completion"].endswith(("</think> true", "</think> false"))
               for e in examples)

    out = run_cli("train", "--model", str(smollm2_path), "--data", str(train_data), "--output", str(run),
                  "--max-steps", "2", "--batch-size", "4", "--micro-batch-size", "2", "--lora-rank", "4",
                  "--lora-alpha", "8", "--lr", "1e-3", "--quiet").stdout
    result = json.loads(out.splitlines()[-1])
    assert result["steps"] == 2 and result["examples"] == 8
    assert [json.loads(x)["step"] for x in (run / "loss.jsonl").read_text().splitlines()] == [1, 2]

    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    scores = {}
    for name in ("model", "adapter"):
        out = run_cli("rerank", "--model", str(run / name), "--query", "what is a cat", "--docs", str(docs),
                      "--format", "jsonl", "--think-budget", "16", "--quiet").stdout
        records = [json.loads(line) for line in out.splitlines()]
        assert sorted(r["id"] for r in records) == sorted(d["id"] for d in DOCS)
        assert all(0.0 <= r["score"] <= 1.0 and r["answer"] in ("true", "false") for r in records)
        scores[name] = {r["id"]: r["score"] for r in records}
    # merged weights and base + adapter are the same model
    for doc_id, score in scores["model"].items():
        assert scores["adapter"][doc_id] == pytest.approx(score, abs=1e-3)
