"""The PyTerrier transformer inside real PyTerrier (no Java: the first stage is DL19's BM25 run
read with ``pt.io``), with the offline SmolLM2 model. References: ``thinkrank evaluate`` run as a
user runs it (its nDCG@10 and its judgment cache), Rank1 called directly, and PyTerrier's own
operators for the cascade."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pandas as pd
import pyterrier as pt

from thinkrank import Rank1
from thinkrank.errors import InvalidInputError
from thinkrank.integrations.pyterrier import OUTPUT_COLUMNS, ThinkrankReranker

from tolerances import LAYOUT_TOL

TOP_K = 10
N_QUERIES = 3


class Calls:
    """Counts an engine's calls and the prompts they carried (the engine itself runs as usual)."""

    def __init__(self, monkeypatch, engine) -> None:
        self.calls: list[tuple[str, int]] = []
        for name in ("generate", "next_token_logprobs"):
            original = getattr(engine, name)

            def counted(items, *args, _original=original, _name=name, **kwargs):
                self.calls.append((_name, len(items)))
                return _original(items, *args, **kwargs)

            monkeypatch.setattr(engine, name, counted)

    @property
    def prompts(self) -> int:
        return sum(n for _, n in self.calls)


@pytest.fixture(scope="module")
def dl19(data_dir):
    """DL19 topics, qrels and BM25 top-10 (with passage text) of the first judged queries, read
    the PyTerrier way."""
    root = data_dir / "dl19"
    qrels = pt.io.read_qrels(str(root / "qrels.trec"))
    queries = pd.read_json(root / "queries.jsonl", lines=True, dtype={"_id": str})
    topics = queries.rename(columns={"_id": "qid", "text": "query"})
    topics = topics[topics.qid.isin(set(qrels.qid))].head(N_QUERIES).reset_index(drop=True)
    run = pt.io.read_results(str(root / "runs" / "bm25.trec"))
    run = run[run.qid.isin(set(topics.qid)) & (run["rank"] <= TOP_K)].copy()
    run["rank"] -= 1  # PyTerrier ranks from 0
    corpus = pd.read_json(root / "corpus.jsonl", lines=True, dtype={"_id": str})
    corpus = corpus[corpus._id.isin(set(run.docno))].rename(columns={"_id": "docno"})[["docno", "text"]]
    run = run.drop(columns=["name"]).merge(corpus, on="docno")
    return topics, qrels, run


def _evaluate_cli(data_dir: Path, model: Path, qids: list[str], output: Path) -> dict:
    command = [sys.executable, "-m", "thinkrank", "evaluate", "--dataset", str(data_dir / "dl19"), "--run", "bm25",
               "--top-k", str(TOP_K), "--query-ids", ",".join(qids), "--model", str(model), "--reasoning", "off",
               "--measures", "nDCG@10", "--output", str(output), "--no-report", "--quiet"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    return json.loads((output / "metrics.json").read_text())


@pytest.mark.slow
def test_experiment_equals_thinkrank_evaluate_and_a_rerun_through_its_cache_computes_nothing(
    dl19, data_dir, smollm2_path, smollm2_engine, tmp_path, monkeypatch
):
    topics, qrels, run = dl19
    metrics = _evaluate_cli(data_dir, smollm2_path, list(topics.qid), tmp_path / "evaluate")
    assert metrics["queries"] == list(topics.qid)

    bm25 = pt.Transformer.from_df(run)
    calls = Calls(monkeypatch, smollm2_engine)
    fresh = ThinkrankReranker(smollm2_path, engine=smollm2_engine, reasoning=False)
    table = pt.Experiment([bm25, bm25 >> fresh], topics, qrels, eval_metrics=["ndcg_cut_10"], names=["bm25", "tr"])
    ndcg = dict(zip(table.name, table.ndcg_cut_10))
    assert ndcg["bm25"] == pytest.approx(metrics["first_stage"]["aggregate"]["nDCG@10"], abs=1e-6)
    assert ndcg["tr"] == pytest.approx(metrics["reranked"]["aggregate"]["nDCG@10"], abs=1e-6)
    assert ndcg["tr"] != pytest.approx(ndcg["bm25"], abs=1e-3)  # the reranker did reorder
    # All queries in one batch: one forward-pass call for every pair of the frame.
    assert calls.calls == [("next_token_logprobs", N_QUERIES * TOP_K)]

    # The same experiment through the judgment cache `thinkrank evaluate` wrote: nothing computed.
    calls.calls.clear()
    cached = ThinkrankReranker(smollm2_path, engine=smollm2_engine, reasoning=False,
                               cache=tmp_path / "evaluate" / "judgments.sqlite")
    again = pt.Experiment([bm25 >> cached], topics, qrels, eval_metrics=["ndcg_cut_10"])
    assert again.ndcg_cut_10[0] == pytest.approx(ndcg["tr"], abs=1e-6)
    assert calls.calls == [] and cached.use.computed == 0 and cached.use.cached == N_QUERIES * TOP_K


def _frame(with_title: bool = True) -> pd.DataFrame:
    rows = [
        ("q1", "what do cats eat", "cats", "Cats", "Cats are carnivores: they eat meat, mice, birds and fish."),
        ("q1", "what do cats eat", "stocks", "", "Stocks fell on Monday as investors worried about rates."),
        ("q1", "what do cats eat", "milk", None, "Many adult cats cannot digest milk."),
        ("q2", "capital of france", "paris", "Paris", "Paris is the capital of France."),
        ("q2", "capital of france", "dogs", "Dogs", "Dogs eat both meat and plants."),
    ]
    frame = pd.DataFrame(rows, columns=["qid", "query", "docno", "title", "text"])
    frame["score"] = [3.0, 2.0, 1.0, 2.0, 1.0]
    frame["rank"] = [0, 1, 2, 0, 1]
    frame["bm25_feature"] = range(len(frame))
    return frame if with_title else frame.drop(columns=["title"])


def test_empty_frame_inspection_validation_and_bad_rows(smollm2_engine, monkeypatch):
    tr = ThinkrankReranker(engine=smollm2_engine, reasoning=False)
    calls = Calls(monkeypatch, smollm2_engine)
    assert [sorted(c) for c in pt.inspect.transformer_inputs(tr)] == [["docno", "qid", "query", "text"]]
    columns = ["qid", "query", "docno", "text", "score", "rank"]
    assert pt.inspect.transformer_outputs(tr, columns) == columns[:4] + list(OUTPUT_COLUMNS)
    assert pt.inspect.transformer_outputs(tr % 3, columns) == columns[:4] + list(OUTPUT_COLUMNS)
    empty = tr(pd.DataFrame(columns=["qid", "query", "docno", "text", "title"]))
    assert empty.empty and list(empty.columns) == ["qid", "query", "docno", "text", "title", *OUTPUT_COLUMNS]
    with pytest.raises(pt.validate.InputValidationError, match="text"):
        tr(_frame().drop(columns=["text"]))
    bad = _frame()
    bad.loc[4, "text"] = "  "
    with pytest.raises(InvalidInputError, match="qid 'q2'.*'dogs'.*empty text"):
        tr(bad)
    twice = _frame()
    twice.loc[1, "docno"] = "cats"
    with pytest.raises(InvalidInputError, match="qid 'q1'.*share the id 'cats'"):
        tr(twice)
    assert calls.calls == []  # every query is checked before any is judged
    with pytest.raises(InvalidInputError, match="unknown reranker option.*think_budgte"):
        ThinkrankReranker(engine=smollm2_engine, think_budgte=8)
    with pytest.raises(InvalidInputError, match="already one"):
        ThinkrankReranker(Rank1(engine=smollm2_engine), reasoning=False)


def bm25_like() -> pt.Transformer:
    return pt.Transformer.from_df(_frame())


def test_column_contract_and_scores_equal_rank1_called_directly(smollm2_engine, monkeypatch):
    tr = ThinkrankReranker(engine=smollm2_engine, reasoning=False)
    frame = _frame()
    calls = Calls(monkeypatch, smollm2_engine)
    out = tr(frame)
    assert calls.calls == [("next_token_logprobs", len(frame))]  # both queries in one batch
    kept = [c for c in frame.columns if c not in OUTPUT_COLUMNS]
    assert len(out) == len(frame) and list(out.columns) == kept + list(OUTPUT_COLUMNS)
    assert list(out.qid) == ["q1"] * 3 + ["q2"] * 2
    reference = Rank1(engine=smollm2_engine, reasoning=False).rerank_many([
        ("what do cats eat", [{"id": "cats", "title": "Cats", "text": frame.text[0]},
                              {"id": "stocks", "text": frame.text[1]}, {"id": "milk", "text": frame.text[2]}]),
        ("capital of france", [{"id": "paris", "title": "Paris", "text": frame.text[3]},
                               {"id": "dogs", "title": "Dogs", "text": frame.text[4]}]),
    ])
    for qid, ranking in zip(["q1", "q2"], reference):
        rows = out[out.qid == qid]
        assert list(rows.docno) == ranking.doc_ids and list(rows["rank"]) == list(range(len(ranking)))
        for (_, row), judgment in zip(rows.iterrows(), ranking):
            assert row.score == pytest.approx(judgment.score, abs=LAYOUT_TOL)
            assert row.p_true == pytest.approx(judgment.p_true, abs=LAYOUT_TOL)
            assert (row.reasoning, row.answer, row.forced, row.truncated, row.reasoning_tokens) == (
                "", judgment.answer, False, False, 0)
            assert frame.set_index("docno").bm25_feature[row.docno] == row.bm25_feature  # input columns kept
    top = (tr % 1)(frame)
    assert list(top.docno) == [reference[0].doc_ids[0], reference[1].doc_ids[0]]


def test_listwise_through_the_same_transformer(smollm2_engine):
    tr = ThinkrankReranker(engine=smollm2_engine, mode="listwise", window=3, stride=3, max_tokens=4)
    out = tr(_frame(with_title=False).head(3))
    assert len(out) == 3 and set(OUTPUT_COLUMNS) <= set(out.columns)
    for _, rows in out.groupby("qid"):
        assert list(rows["rank"]) == list(range(len(rows)))
        assert list(rows.score) == [1 / (r + 1) for r in range(len(rows))]  # Rank-K's run-file scores
    assert out.answer.isna().all() and out.p_true.isna().all()
    with pytest.raises(InvalidInputError, match="listwise or cascade"):
        tr.judgment_keys()


def test_scorer_cache_keyed_by_judgment_key_recomputes_nothing(smollm2_engine, tmp_path, monkeypatch):
    from pyterrier_caching import ScorerCache

    from thinkrank.cache import digest

    tr = ThinkrankReranker(engine=smollm2_engine, reasoning=False)
    first = bm25_like()
    pipeline = first >> tr.judgment_keys() >> ScorerCache(tmp_path / "scores", tr, key="judgment_key")
    calls = Calls(monkeypatch, smollm2_engine)
    topics = _frame()[["qid", "query"]].drop_duplicates()
    one = pipeline(topics)
    assert calls.prompts == 5 and tr.use.computed == 5
    two = pipeline(topics)
    assert calls.prompts == 5 and tr.use.computed == 5  # second run: no engine call
    assert list(one.score) == list(two.score)
    plain = tr(_frame())
    assert dict(zip(plain.docno, plain.score)) == pytest.approx(dict(zip(two.docno, two.score)), abs=LAYOUT_TOL)
    # The key is thinkrank's judgment-cache key: settings, query, title and text.
    row = _frame().iloc[0]
    expected = digest(["pointwise", tr.settings, row.query, None, row.title, row.text])
    assert one.set_index("docno").judgment_key["cats"] == expected


@pytest.mark.slow
def test_cascade_as_a_pipeline_orders_and_reasons_like_the_built_in_cascade(smollm2_engine, tmp_path, monkeypatch):
    quick = ThinkrankReranker(engine=smollm2_engine, reasoning=False, cache=tmp_path / "judgments.sqlite")
    full = quick.with_options(reasoning=True, think_budget=8)
    assert full.reranker.engine is smollm2_engine
    frame = _frame()
    first = pt.Transformer.from_df(frame)
    pipeline = (first >> quick % 2 >> full) ^ (first >> quick)
    built_in = ThinkrankReranker(engine=smollm2_engine, think_budget=8, cascade="top=2")
    calls = Calls(monkeypatch, smollm2_engine)
    out = pipeline(frame[["qid", "query"]].drop_duplicates())
    reference = built_in(frame)
    # Each reasons about the top 2 of both queries in one generate call; quick's second run is cached.
    assert [c for c in calls.calls if c[0] == "generate"] == [("generate", 4), ("generate", 4)]
    assert (quick.use.cached, quick.use.computed, full.use.computed) == (5, 5, 4)  # quick's second run: cached
    for qid in ("q1", "q2"):
        mine = out[out.qid == qid].sort_values("rank")
        theirs = reference[reference.qid == qid]
        assert list(mine.docno) == list(theirs.docno)
        for (_, a), (_, b) in zip(mine.head(2).iterrows(), theirs.head(2).iterrows()):
            assert a.reasoning == b.reasoning and a.reasoning and a.reasoning_tokens == b.reasoning_tokens > 0
            assert (a.answer, a.forced) == (b.answer, b.forced)
            assert a.p_true == pytest.approx(b.p_true, abs=LAYOUT_TOL)
