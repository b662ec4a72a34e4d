"""The integrations' ``select`` option: LangChain, LlamaIndex and Haystack return only the documents
a calibrated selection keeps, with its summary in their metadata, as an independent count says."""

from __future__ import annotations

import numpy as np
import pytest

from test_integrations_frameworks import CORPUS, QUERY
from thinkrank import Rank1
from thinkrank.calibration import Calibration, CalibrationMap, ConformalQuery
from thinkrank.errors import InvalidInputError

TEXTS = list(CORPUS.values())


@pytest.fixture(scope="module")
def calibrated(smollm2_engine, tmp_path_factory):
    """A reasoning-off reranker with a calibration whose conformal cut by score (recall 1, alpha
    0.1: the smallest of ten calibration scores) falls between its 2nd and 3rd best document here, its
    ranking, and the calibration's file."""
    plain = Rank1(engine=smollm2_engine, reasoning=False)
    ranking = plain.rerank(QUERY, TEXTS)
    cut = (ranking[1].score + ranking[2].score) / 2
    cal = Calibration(CalibrationMap("platt", {"a": 0.7, "b": 0.3}), "pointwise", plain.settings, 1,
                      conformal=[ConformalQuery(10, ((1, cut + 0.001 * i),)) for i in range(10)])
    path = cal.save(tmp_path_factory.mktemp("cal") / "cal.json")
    return Rank1(engine=smollm2_engine, reasoning=False, calibration=path), ranking, cal, path


def _expected(ranking, cal, keep):
    """Kept texts (best first) and expected recall/precision, counted directly."""
    p = np.array(cal.probabilities([j.score for j in ranking]))
    mask = np.array([keep(j, q) for j, q in zip(ranking, p)])
    return [TEXTS[j.index] for j, m in zip(ranking, mask) if m], p[mask].sum() / p.sum(), p[mask].mean()


def test_select_keeps_the_calibrated_selection_in_each_framework(calibrated, smollm2_path):
    from haystack import Document as HaystackDocument
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, TextNode

    from thinkrank.integrations.haystack import ThinkrankRanker
    from thinkrank.integrations.langchain import ThinkrankCompressor
    from thinkrank.integrations.llamaindex import ThinkrankRerank

    reranker, ranking, cal, path = calibrated
    cut = (ranking[1].score + ranking[2].score) / 2
    conformal = _expected(ranking, cal, lambda j, p: j.score >= cut)
    probs = sorted(cal.probabilities([j.score for j in ranking]))
    p_cut = (probs[-1] + probs[-2]) / 2  # threshold mode keeps the best document only
    threshold = _expected(ranking, cal, lambda j, p: p >= p_cut)
    assert len(conformal[0]) == 2 and len(threshold[0]) == 1

    lc = ThinkrankCompressor(reranker=reranker, top_n=None, select={"recall": 1.0, "alpha": 0.1, "rule": "score"})
    kept = lc.compress_documents([Document(page_content=t) for t in TEXTS], QUERY)
    assert [d.page_content for d in kept] == conformal[0]
    summary = kept[0].metadata["selection"]
    assert summary["mode"] == "conformal" and summary["kept"] == 2 and summary["candidates"] == len(TEXTS)
    assert (summary["expected_recall"], summary["expected_precision"]) == pytest.approx(conformal[1:], abs=1e-12)
    # top_n applies to the kept documents
    assert len(ThinkrankCompressor(reranker=reranker, top_n=1, select={"recall": 1.0, "rule": "score"})
               .compress_documents([Document(page_content=t) for t in TEXTS], QUERY)) == 1

    li = ThinkrankRerank(reranker=reranker, top_n=None, select={"probability": p_cut})
    nodes = li.postprocess_nodes([NodeWithScore(node=TextNode(text=t)) for t in TEXTS], query_str=QUERY)
    assert [n.node.get_content() for n in nodes] == threshold[0]
    assert nodes[0].node.metadata["selection"]["expected_precision"] == pytest.approx(threshold[2], abs=1e-12)
    assert "selection" in nodes[0].node.excluded_llm_metadata_keys

    options = {"engine": reranker.engine, "reasoning": False, "calibration": str(path)}  # the loaded model, shared
    hs = ThinkrankRanker(str(smollm2_path), top_k=5, include_reasoning=False, reranker_options=options,
                         select={"recall": 1.0, "rule": "score"})
    docs = hs.run(QUERY, [HaystackDocument(content=t) for t in TEXTS])["documents"]
    assert [d.content for d in docs] == conformal[0]
    assert docs[0].meta["selection"]["kept"] == 2 and hs.to_dict()["init_parameters"]["select"] == {"recall": 1.0,
                                                                                                      "rule": "score"}


def test_select_is_refused_without_a_calibration_or_with_bad_values(calibrated, smollm2_engine):
    from thinkrank.integrations.haystack import ThinkrankRanker
    from thinkrank.integrations.langchain import ThinkrankCompressor
    from thinkrank.integrations.llamaindex import ThinkrankRerank

    reranker = calibrated[0]
    plain = Rank1(engine=smollm2_engine, reasoning=False)
    # pydantic models (LangChain, LlamaIndex) wrap the error in their ValidationError, a ValueError
    with pytest.raises(ValueError, match="calibration=FILE"):
        ThinkrankCompressor(reranker=plain, select={"recall": 0.9})
    with pytest.raises(ValueError, match="calibration=FILE"):
        ThinkrankRerank(reranker=plain, select={"probability": 0.5})
    for bad, message in [({"recall": 0.9, "probability": 0.5}, "give recall"), ({"threshold": 0.5}, "unknown key"),
                         ({"recall": 2.0}, "recall target"), ([0.9], r"select\s+Input should be a valid dictionary")]:
        with pytest.raises(ValueError, match=message):
            ThinkrankCompressor(reranker=reranker, select=bad)
    with pytest.raises(InvalidInputError, match="give recall"):
        ThinkrankRanker(select={"alpha": 0.1})


def test_pyterrier_select_keeps_each_querys_calibrated_selection(calibrated, smollm2_engine):
    from test_integrations_pyterrier import _frame

    from thinkrank.integrations.pyterrier import OUTPUT_COLUMNS, ThinkrankReranker

    reranker, _, cal, _ = calibrated
    frame = _frame()
    full = ThinkrankReranker(reranker)(frame)
    p_cut = float(np.median(full.probability))
    out = ThinkrankReranker(reranker, select={"probability": p_cut})(frame)
    for qid, rows in full.groupby("qid", sort=False):
        p = np.array(cal.probabilities(list(rows.score)))
        kept = out[out.qid == qid]
        assert list(kept.docno) == list(rows.docno[p >= p_cut])  # counted directly, best first
        assert list(kept.columns) == [c for c in frame.columns if c not in OUTPUT_COLUMNS] + list(OUTPUT_COLUMNS) + [
            "selection_kept", "selection_candidates", "expected_recall", "expected_precision"]
        assert (kept.selection_kept == (p >= p_cut).sum()).all() and (kept.selection_candidates == len(rows)).all()
        assert kept.expected_recall.iloc[0] == pytest.approx(p[p >= p_cut].sum() / p.sum(), abs=1e-12)
    assert 0 < len(out) < len(frame)
    with pytest.raises(InvalidInputError, match="calibration=FILE"):
        ThinkrankReranker(engine=smollm2_engine, reasoning=False, select={"recall": 0.9})
