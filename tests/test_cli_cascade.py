"""`thinkrank rerank --cascade` as a user runs it: a real subprocess and model."""

from __future__ import annotations

import json

from test_cli_rerank import DOCS, run_cli


def test_cascade_reasons_about_the_top_m_and_reports_what_it_spent(smollm2_path, tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    proc = run_cli("rerank", "--model", str(smollm2_path), "--query", "what is a cat", "--docs", str(docs),
                   "--format", "jsonl", "--think-budget", "8", "--cascade", "top=1")
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(records) == 3 and sum(r["reasoned"] for r in records) == 1
    assert all(r["quick_score"] is not None for r in records)
    assert next(r for r in records if r["reasoned"])["reasoning_tokens"] == 8
    assert "cascade: query 0: 1 of 3 candidates reasoned, 8 chain tokens, ~16 saved" in proc.stderr


def test_bad_cascade_spec_is_one_error_line_before_any_model_loads(tmp_path):
    docs = tmp_path / "docs.txt"
    docs.write_text("a cat\n")
    for spec, words in [("top=0", "top_m"), ("best", "cannot read cascade")]:
        proc = run_cli("rerank", "--model", str(tmp_path / "missing"), "--query", "q", "--docs", str(docs),
                       "--cascade", spec, check=False)
        assert proc.returncode == 2 and proc.stderr.startswith("error:") and words in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli("rerank", "--mode", "listwise", "--query", "q", "--docs", str(docs), "--cascade", "top=3",
                   check=False)
    assert proc.returncode == 2 and "pointwise option" in proc.stderr
