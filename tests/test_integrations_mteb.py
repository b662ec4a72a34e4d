"""MTEB v2 runs thinkrank as a cross-encoder on a reranking task built from local DL19 data, and
the nDCG@10 it reports equals what `thinkrank evaluate` reports on the same candidates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tolerances import LAYOUT_TOL

REPO = Path(__file__).resolve().parents[1]
TOP_K, QUERIES, BUDGET = 5, 3, 8


def _dl19_task(data_dir):
    """An MTEB v2 retrieval task whose ``top_ranked`` is DL19's BM25 top ``TOP_K`` for its first
    ``QUERIES`` judged queries: MTEB reranks those candidates with the cross-encoder."""
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
    from mteb.abstasks.task_metadata import TaskMetadata

    from thinkrank.datasets import load_collection

    dl19 = load_collection(data_dir / "dl19")
    run = dl19.run("bm25").top_k(TOP_K)
    qids = [q for q in dl19.judged().queries if q in run][:QUERIES]
    docs = {d.id: d for q in qids for d in dl19.candidates(run, q)}
    split = RetrievalSplitData(
        queries=Dataset.from_list([{"id": q, "text": dl19.queries[q]} for q in qids]),
        corpus=Dataset.from_list([{"id": d.id, "title": d.title or "", "text": d.text} for d in docs.values()]),
        relevant_docs={q: dict(dl19.qrels[q]) for q in qids},
        top_ranked={q: [d for d, _ in run[q]] for q in qids},
    )

    class DL19BM25Rerank(AbsTaskRetrieval):
        metadata = TaskMetadata(
            name="ThinkrankDL19BM25Top5", description="DL19 passages, BM25 top 5 reranked (thinkrank test)",
            reference="https://trec.nist.gov/data/deep2019.html", dataset={"path": "local/dl19", "revision": "1"},
            type="Reranking", category="t2t", modalities=["text"], eval_splits=["test"], eval_langs=["eng-Latn"],
            main_score="ndcg_at_10", date=("2019-01-01", "2019-12-31"), domains=["Web"], task_subtypes=[],
            license="not specified", annotations_creators="expert-annotated", dialect=[], sample_creation="found",
            bibtex_citation="",
        )

        def load_data(self, num_proc=None, **kwargs):
            self.dataset = {"default": {"test": split}}
            self.data_loaded = True

    return DL19BM25Rerank(), qids


@pytest.mark.slow
def test_mteb_ndcg_equals_thinkrank_evaluate_on_the_same_candidates(data_dir, smollm2_path, smollm2_engine, tmp_path):
    import mteb

    from thinkrank import Rank1
    from thinkrank.integrations.mteb import ThinkrankCrossEncoder

    task, qids = _dl19_task(data_dir)
    model = ThinkrankCrossEncoder(Rank1(engine=smollm2_engine, think_budget=BUDGET))
    result = mteb.evaluate(model, task, cache=None, show_progress_bar=False, co2_tracker=False)
    scores = result.task_results[0].scores["test"][0]
    assert result.task_results[0].task_name == "ThinkrankDL19BM25Top5"

    out = tmp_path / "eval"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "thinkrank", "evaluate", "--dataset", str(data_dir / "dl19"), "--run", "bm25",
         "--top-k", str(TOP_K), "--query-ids", ",".join(qids), "--model", str(smollm2_path), "--engine", "transformers",
         "--device", "cpu", "--think-budget", str(BUDGET), "--output", str(out), "--no-report", "--quiet"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    ours = metrics["reranked"]["aggregate"]["nDCG@10"]
    assert scores["ndcg_at_10"] == pytest.approx(ours, abs=1e-5)
    # The reranking changed the order, so the equality is not the first stage's figure twice.
    assert ours != pytest.approx(metrics["first_stage"]["aggregate"]["nDCG@10"], abs=1e-6)


def test_the_wrapper_satisfies_mteb_v2s_cross_encoder_protocol(smollm2_engine):
    from mteb.models.models_protocols import CrossEncoderProtocol, EncoderProtocol, SearchProtocol

    from thinkrank import Rank1
    from thinkrank.integrations.mteb import ThinkrankCrossEncoder

    reranker = Rank1(engine=smollm2_engine, reasoning=False)
    model = ThinkrankCrossEncoder(reranker)
    # MTEB dispatches on these runtime protocols: it must be taken for a cross-encoder only.
    assert isinstance(model, CrossEncoderProtocol)
    assert not isinstance(model, EncoderProtocol) and not isinstance(model, SearchProtocol)
    assert "cross-encoder" in model.mteb_model_meta.model_type
    # Rows pair up one to one, across batches; a document repeated under two queries is scored twice.
    queries = [{"text": ["cats", "cats"]}, {"text": ["stocks"]}]
    docs = [{"text": ["Cats eat meat.", "Stocks fell."]}, {"text": ["Stocks fell."]}]
    scores = model.predict(queries, docs, task_metadata=None, hf_split="test", hf_subset="default")
    direct = [reranker.rerank(q, [d])[0].score for q, d in [("cats", "Cats eat meat."), ("cats", "Stocks fell."),
                                                              ("stocks", "Stocks fell.")]]
    assert scores.tolist() == pytest.approx(direct, abs=LAYOUT_TOL)
