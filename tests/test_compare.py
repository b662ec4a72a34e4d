"""Calibration sets for quantization, and `thinkrank compare` (two rerankers on the same
candidates): agreement figures against hand computation, and the command end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from thinkrank.errors import InvalidInputError
from thinkrank.evaluation.compare import agreement
from thinkrank.quantization import calibration as cal
from thinkrank.types import Judgment, Ranking

HEAD = "Determine if the following passage is relevant to the query. Answer only with 'true' or 'false'.\nQuery: "


# ---- calibration -------------------------------------------------------------------------------
def test_collection_calibration_is_rank1_prompts_of_its_queries_and_bm25_passages(data_dir):
    from thinkrank.datasets import load_collection

    texts = cal.from_collection(data_dir / "scifact" / "train", 12, seed=3, template="scifact")
    assert len(texts) == 12 and len(set(texts)) == 12
    assert texts == cal.from_collection(data_dir / "scifact" / "train", 12, seed=3, template="scifact")
    train = load_collection(data_dir / "scifact" / "train")
    claims = set(train.queries.values())
    passages = {d.passage for d in train.corpus.values()}
    for text in texts:
        assert text.startswith(HEAD + "Claim: ") and text.endswith("\n<think>")
        query, passage = text[len(HEAD + "Claim: "):].split("\n\nA relevant passage would", 1)[0], \
            text.split("\nPassage: ", 1)[1].removesuffix("\n<think>")
        assert query in claims
        assert any(p.startswith(passage) for p in passages)  # a real passage (cut to 300 words at most)
        assert len(passage.split()) <= cal.PASSAGE_WORDS


def test_traces_give_prompts_with_their_chains_and_files_are_read_as_given(tmp_path):
    traces = tmp_path / "train.jsonl"
    rows = [{"prompt": f"{HEAD}q{i}\nPassage: p{i}\n<think>", "completion": f"chain {i}\n</think> true"}
            for i in range(5)]
    traces.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = cal.from_traces(traces, 3)
    assert len(got) == 3 and all(t.endswith("\n</think> true") and "<think>chain " in t for t in got)
    mixed = tmp_path / "cal.jsonl"
    mixed.write_text('{"text": "plain text"}\n{"prompt": "a", "completion": "b"}\n{"text": ""}\n')
    assert sorted(cal.read_calibration(mixed, 10)) == ["ab", "plain text"]
    (tmp_path / "bad.jsonl").write_text('{"other": 1}\n')
    with pytest.raises(InvalidInputError, match="bad.jsonl:1: each line needs a 'text'"):
        cal.read_calibration(tmp_path / "bad.jsonl", 4)


def test_builtin_calibration_pairs_each_query_with_its_passage_and_another():
    texts = cal.builtin(1000)
    assert len(texts) == 48  # 24 shipped pairs, each query with its own passage and with another one
    assert all(t.startswith(HEAD) and t.endswith("\n<think>") for t in texts)
    assert sum("Query: what do cats eat\n" in t for t in texts) == 2
    assert len(cal.builtin(5)) == 5
    with pytest.raises(InvalidInputError, match="--num-samples must be >= 1"):
        cal.builtin(0)


# ---- agreement -------------------------------------------------------------------------------------
def _ranking(scores: dict[str, float]) -> Ranking:
    return Ranking("q", [Judgment(d, i, s) for i, (d, s) in enumerate(scores.items())])


def test_agreement_of_identical_reversed_and_shifted_scores():
    a = {"q1": _ranking({"a": 0.9, "b": 0.5, "c": 0.1}), "q2": _ranking({"x": 0.2, "y": 0.8})}
    same = agreement(a, a)
    assert (same.spearman_mean, same.spearman_pooled, same.top10_overlap, same.max_abs_diff, same.pairs) == \
        (1.0, 1.0, 1.0, 0.0, 5)
    rev = agreement(a, {"q1": _ranking({"a": 0.1, "b": 0.5, "c": 0.9}), "q2": _ranking({"x": 0.8, "y": 0.2})})
    assert rev.spearman_mean == -1.0
    assert rev.top10_overlap == 1.0  # with fewer than 10 candidates the top 10 is every candidate
    # One swap of the two lowest of q1: rho = 1 - 6 * (1 + 1) / (3 * 8) = 0.5; q2 unchanged, 1.0.
    swap = agreement(a, {"q1": _ranking({"a": 0.9, "b": 0.1, "c": 0.5}), "q2": _ranking({"x": 0.25, "y": 0.8})})
    assert swap.spearman_mean == pytest.approx((0.5 + 1.0) / 2)
    assert swap.max_abs_diff == pytest.approx(0.4) and swap.mean_abs_diff == pytest.approx((0.4 + 0.4 + 0.05) / 5)


def test_top10_overlap_counts_shared_documents_of_the_two_top_tens():
    docs = [f"d{i}" for i in range(20)]
    a = {"q": _ranking({d: 1 - i / 100 for i, d in enumerate(docs)})}
    b = {"q": _ranking({d: 1 - i / 100 if i >= 3 else 0.5 - i / 100 for i, d in enumerate(docs)})}
    assert agreement(a, b).top10_overlap == pytest.approx(0.7)  # d0..d2 fell out of b's top 10


def test_agreement_refuses_different_candidates():
    with pytest.raises(InvalidInputError, match="ranked different documents"):
        agreement({"q": _ranking({"a": 0.1})}, {"q": _ranking({"b": 0.1})})


# ---- the command -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_compare_a_model_with_itself_agrees_fully_and_writes_the_report(tmp_path, tiny_qwen_path, data_dir):
    run = tmp_path / "run.trec"
    lines = []
    for qid, docs in (("1", ["31715818", "13734012", "10608397"]), ("3", ["23389795", "2739854", "14717500"])):
        lines += [f"{qid} Q0 {d} {r} {10 - r} bm25" for r, d in enumerate(docs, 1)]
    run.write_text("\n".join(lines) + "\n")
    out = tmp_path / "cmp"
    proc = subprocess.run(
        [sys.executable, "-m", "thinkrank", "compare", "--dataset", str(data_dir / "scifact"), "--run", str(run),
         "--top-k", "3", "--reasoning", "off", "--engine", "transformers", "--device", "cpu", "--quiet",
         "--model", str(tiny_qwen_path), "--compare-model", str(tiny_qwen_path), "--output", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    c = json.loads((out / "comparison.json").read_text())
    assert c["queries"] == 2 and c["difference"] == 0.0
    assert c["agreement"]["max_abs_diff"] == 0.0 and c["agreement"]["top10_overlap"] == 1.0
    assert c["agreement"]["spearman_pooled"] == 1.0
    assert c["paired_test"]["p_value"] == 1.0
    for role in ("baseline", "candidate"):
        cost = c[role]
        assert cost["computed"] == 6 and cost["per_second"] > 0 and cost["peak_memory_bytes"] > 0
        assert cost["disk_bytes"] == sum(f.stat().st_size for f in tiny_qwen_path.glob("*.safetensors"))
    report = (out / "report.html").read_text()
    assert "Compared with" in report and "Weights on disk" in report
    assert (out / "baseline" / "report.html").is_file() and (out / "baseline" / "judgments.sqlite").is_file()
