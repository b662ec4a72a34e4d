"""Calibrate -> apply -> select through the real CLI and library: a real SmolLM2 evaluate run on
DL19, `thinkrank calibrate` on it, then `evaluate|rerank --calibration --select` and
`Rank1(calibration=...)`, checked against scikit-learn's logistic fit on the run's own numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def thinkrank(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "thinkrank", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_dir, smollm2_path) -> Path:
    out = tmp_path_factory.mktemp("cal") / "run"
    thinkrank("evaluate", "--dataset", str(data_dir / "dl19"), "--run", "bm25", "--queries", "4", "--top-k", "6",
              "--model", str(smollm2_path), "--reasoning", "off", "--max-passage-tokens", "48", "--output", str(out),
              "--quiet", "--no-report")
    return out


def pairs(run: Path, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    qrels: dict[str, dict[str, int]] = {}
    for line in (run / "qrels.trec").read_text().splitlines():
        qid, _, doc, grade = line.split()
        qrels.setdefault(qid, {})[doc] = int(grade)
    scores, labels = [], []
    for line in (run / "rankings.jsonl").read_text().splitlines():
        row = json.loads(line)
        for r in row["results"]:
            scores.append(r["score"])
            labels.append(int(qrels[row["query_id"]].get(r["doc_id"], 0) >= threshold))
    return np.array(scores), np.array(labels)


def test_calibrate_apply_and_select(run_dir, tmp_path, data_dir, smollm2_path):
    linear = pytest.importorskip("sklearn.linear_model")
    cal_path = tmp_path / "cal.json"
    thinkrank("calibrate", str(run_dir), "--output", str(cal_path), "--method", "platt", "--folds", "2",
              "--relevance-threshold", "2")
    cal = json.loads(cal_path.read_text())
    assert cal["relevance_threshold"] == 2 and cal["settings"]["reasoning"] is False
    assert {"ece_before", "ece_after", "brier_before", "brier_after"} <= set(cal["metrics"])
    scores, labels = pairs(run_dir, 2)
    x = np.log(scores) - np.log1p(-scores)
    ref = linear.LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(x[:, None], labels)
    if ref.coef_[0][0] > 0:
        assert cal["params"]["a"] == pytest.approx(ref.coef_[0][0], rel=1e-4, abs=1e-6)
        assert cal["params"]["b"] == pytest.approx(ref.intercept_[0], rel=1e-4, abs=1e-6)
    assert "probability" not in (run_dir / "rankings.jsonl").read_text()  # uncalibrated output unchanged

    # The same evaluation with the calibration: every judgment read back from the cache, the
    # ranking byte for byte as before, the probabilities the Platt map of each score.
    calibrated = tmp_path / "calibrated"
    proc = thinkrank("evaluate", "--dataset", str(data_dir / "dl19"), "--run", "bm25", "--queries", "4", "--top-k", "6",
                     "--model", str(smollm2_path), "--reasoning", "off", "--max-passage-tokens", "48",
                     "--cache", str(run_dir / "judgments.sqlite"), "--output", str(calibrated),
                     "--calibration", str(cal_path), "--select", "recall=0.5,alpha=0.2")
    assert "0 judgments computed" in proc.stderr
    assert (calibrated / "reranked.trec").read_bytes() == (run_dir / "reranked.trec").read_bytes()
    a, b = cal["params"]["a"], cal["params"]["b"]
    for line in (calibrated / "rankings.jsonl").read_text().splitlines():
        results = json.loads(line)["results"]
        for r in results:
            assert r["probability"] == pytest.approx(1 / (1 + np.exp(-(a * np.log(r["score"] / (1 - r["score"])) + b))))
    report = (calibrated / "report.html").read_text()
    assert 'aria-label="reliability diagram"' in report and 'aria-label="documents kept against recall"' in report
    assert "platt map, relevance grade ≥ 2" in report
    metrics = json.loads((calibrated / "metrics.json").read_text())
    assert metrics["calibration"]["method"] == "platt"
    sel = metrics["selection"]
    assert sel["recall"] == 0.5 and sel["queries"] == 4 and sel["rule"] == "recall-probability"
    ranked = {json.loads(line)["query_id"]: [r["doc_id"] for r in json.loads(line)["results"]]
              for line in (calibrated / "rankings.jsonl").read_text().splitlines()}
    for qid, q in sel["per_query"].items():
        assert q["kept"] == len(q["doc_ids"]) <= q["candidates"] == 6
        assert q["doc_ids"] == ranked[qid][: q["kept"]]  # the rule keeps a top of the ranking

    # Another setting is refused before anything is judged.
    other = thinkrank("evaluate", "--dataset", str(data_dir / "dl19"), "--run", "bm25", "--queries", "4", "--top-k", "6",
                      "--model", str(smollm2_path), "--reasoning", "off", "--max-passage-tokens", "32",
                      "--output", str(tmp_path / "other"), "--calibration", str(cal_path), "--quiet", check=False)
    assert other.returncode == 2 and "max_passage_tokens: calibrated 48" in other.stderr
    assert not (tmp_path / "other" / "rankings.jsonl").exists()

    # thinkrank rerank --select probability=P prints only what it keeps.
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(
        ["Cats are small domesticated carnivorous mammals.", "The stock market fell on Tuesday.",
         "A cat is a feline kept as a pet."])))
    out = thinkrank("rerank", "--model", str(smollm2_path), "--reasoning", "off", "--max-passage-tokens", "48",
                    "--query", "what is a cat", "--docs", str(docs), "--format", "jsonl", "--calibration", str(cal_path),
                    "--select", "probability=0.0", "--quiet")
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(records) == 3 and all("probability" in r for r in records)
    assert "kept 3 of 3" in out.stderr


def test_rank1_with_a_calibration_adds_probabilities_and_changes_nothing_else(run_dir, smollm2_engine, tmp_path):
    from thinkrank import Rank1
    from thinkrank.calibration import fit_calibration, load_labelled_run

    cal = fit_calibration(load_labelled_run(run_dir), method="isotonic", folds=2)
    docs = ["Cats are small domesticated carnivorous mammals.", "The stock market fell on Tuesday.",
            "A cat is a feline kept as a pet."]
    plain = Rank1(engine=smollm2_engine, reasoning=False, max_passage_tokens=48).rerank("what is a cat", docs)
    calibrated = Rank1(engine=smollm2_engine, reasoning=False, max_passage_tokens=48,
                       calibration=cal.save(tmp_path / "c.json")).rerank("what is a cat", docs)
    assert [j.doc_id for j in calibrated] == [j.doc_id for j in plain]
    assert [j.score for j in calibrated] == [j.score for j in plain]
    assert [j.probability for j in calibrated] == cal.probabilities([j.score for j in plain])
    assert all(j.probability is None for j in plain) and plain.to_json() == Rank1(
        engine=smollm2_engine, reasoning=False, max_passage_tokens=48).rerank("what is a cat", docs).to_json()
    from thinkrank.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="reasoning"):
        Rank1(engine=smollm2_engine, reasoning=True, think_budget=8, max_passage_tokens=48, calibration=cal)


def test_rankk_with_a_calibration_maps_final_ranks_to_probabilities(smollm2_engine, tmp_path):
    from thinkrank import RankK
    from thinkrank.calibration import Calibration, CalibrationMap

    docs = ["Cats are small domesticated carnivorous mammals.", "The stock market fell on Tuesday.",
            "A cat is a feline kept as a pet.", "Dogs bark."]
    plain = RankK(engine=smollm2_engine, window=4, stride=2, max_tokens=8)
    # Probability by final rank (feature log(1/(rank+1))): 0.6 at rank 0, 0.1 from rank 3 on.
    ranks = np.array([0, 1, 2, 3])
    cal = Calibration(CalibrationMap("isotonic", {"x": (-np.log(ranks + 1))[::-1].tolist(), "y": [0.1, 0.2, 0.3, 0.6]}),
                      "listwise", plain.settings, 1)
    calibrated = RankK(engine=smollm2_engine, window=4, stride=2, max_tokens=8, calibration=cal)
    want, got = plain.rerank("what is a cat", docs), calibrated.rerank("what is a cat", docs)
    assert [j.doc_id for j in got] == [j.doc_id for j in want]
    assert [j.probability for j in got] == pytest.approx([0.6, 0.3, 0.2, 0.1])
