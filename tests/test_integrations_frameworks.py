"""LangChain, LlamaIndex and Haystack adapters, each run inside a real pipeline of its framework
(a BM25 first stage over an in-memory corpus, then our reranker) with the offline SmolLM2 model.
The reference is the same reranker called directly on the texts the framework passed on."""

from __future__ import annotations

import pytest

from thinkrank import Rank1
from thinkrank.errors import InvalidInputError

from tolerances import LAYOUT_TOL

CORPUS = {
    "cats": "Cats are obligate carnivores: they eat meat, such as mice, birds and fish.",
    "dogs": "Dogs are omnivores and eat both meat and plants; many also eat dry kibble.",
    "stocks": "Stocks fell on Monday as investors worried about interest rates.",
    "paris": "Paris is the capital of France and its largest city.",
    "milk": "Many adult cats cannot digest milk, so giving cats milk can upset them.",
}
QUERY = "what do cats eat"


@pytest.fixture(scope="module")
def reranker(smollm2_engine):
    return Rank1(engine=smollm2_engine, think_budget=12)


def _reference(reranker, texts):
    """(text, score, reasoning) best first, from the reranker called directly."""
    ranking = reranker.rerank(QUERY, list(texts))
    return [(texts[j.index], j.score, j.reasoning) for j in ranking]


# ---- LangChain ------------------------------------------------------------------------------
def _langchain_bm25(k):
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever

    from thinkrank.retrieval.bm25 import BM25
    from thinkrank.types import Document as TRDocument

    index = BM25([TRDocument(i, t) for i, t in CORPUS.items()])

    class BM25Retriever(BaseRetriever):
        def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun):
            hits = index.search({"q": query}, k=k)["q"]
            return [Document(page_content=CORPUS[d], metadata={"doc_id": d, "bm25": s}, id=d) for d, s in hits]

    return BM25Retriever()


def test_langchain_compressor_reranks_inside_contextual_compression_retriever(reranker):
    from langchain_classic.retrievers import ContextualCompressionRetriever

    from thinkrank.integrations.langchain import ThinkrankCompressor

    base = _langchain_bm25(k=4)
    first_stage = base.invoke(QUERY)
    assert len(first_stage) >= 3
    pipeline = ContextualCompressionRetriever(
        base_compressor=ThinkrankCompressor(reranker=reranker, top_n=2, include_reasoning=True), base_retriever=base
    )
    docs = pipeline.invoke(QUERY)
    expected = _reference(reranker, [d.page_content for d in first_stage])[:2]
    assert [d.page_content for d in docs] == [t for t, _, _ in expected]
    for doc, (_, score, reasoning) in zip(docs, expected):
        assert doc.metadata["relevance_score"] == pytest.approx(score, abs=LAYOUT_TOL)
        assert doc.metadata["reasoning"] == reasoning and reasoning
        assert doc.metadata["doc_id"] == doc.id and "bm25" in doc.metadata  # the retriever's metadata kept
    assert all("relevance_score" not in d.metadata for d in first_stage)  # inputs untouched


def test_langchain_compressor_without_reasoning_and_bad_settings(reranker):
    from langchain_core.documents import Document

    from thinkrank.integrations.langchain import ThinkrankCompressor

    docs = [Document(page_content=t) for t in CORPUS.values()]
    out = ThinkrankCompressor(reranker=reranker, top_n=None).compress_documents(docs, QUERY)
    assert len(out) == len(docs) and all("reasoning" not in d.metadata for d in out)
    scores = [d.metadata["relevance_score"] for d in out]
    assert scores == sorted(scores, reverse=True)
    assert ThinkrankCompressor(reranker=reranker).compress_documents([], QUERY) == []
    with pytest.raises(ValueError, match="top_n must be an int >= 1"):
        ThinkrankCompressor(reranker=reranker, top_n=0)
    with pytest.raises(ValueError, match="must be a thinkrank reranker"):
        ThinkrankCompressor(reranker="jhu-clsp/rank1-7b")


# ---- LlamaIndex -----------------------------------------------------------------------------
def _llamaindex_bm25(k):
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, TextNode

    from thinkrank.retrieval.bm25 import BM25
    from thinkrank.types import Document as TRDocument

    index = BM25([TRDocument(i, t) for i, t in CORPUS.items()])
    nodes = {i: TextNode(text=t, id_=i, metadata={"source": i}) for i, t in CORPUS.items()}

    class BM25Retriever(BaseRetriever):
        def _retrieve(self, query_bundle):
            hits = index.search({"q": query_bundle.query_str}, k=k)["q"]
            return [NodeWithScore(node=nodes[d], score=s) for d, s in hits]

    return BM25Retriever(), nodes


def test_llamaindex_postprocessor_reranks_inside_a_query_engine(reranker):
    from llama_index.core.llms import MockLLM
    from llama_index.core.query_engine import RetrieverQueryEngine
    from llama_index.core.response_synthesizers.no_text import NoText
    from llama_index.core.schema import MetadataMode

    from thinkrank.integrations.llamaindex import ThinkrankRerank

    retriever, stored = _llamaindex_bm25(k=4)
    first_stage = retriever.retrieve(QUERY)
    # Retrieval only: the "no text" synthesizer returns the source nodes and never calls the LLM.
    engine = RetrieverQueryEngine(
        retriever, response_synthesizer=NoText(llm=MockLLM()),
        node_postprocessors=[ThinkrankRerank(reranker=reranker, top_n=2, include_reasoning=True)],
    )
    hits = engine.query(QUERY).source_nodes
    # LlamaIndex rerankers read the node with its embedding metadata ("source: …\n\ntext").
    expected = _reference(reranker, [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in first_stage])[:2]
    assert [h.node.get_content(metadata_mode=MetadataMode.EMBED) for h in hits] == [t for t, _, _ in expected]
    for hit, (_, score, reasoning) in zip(hits, expected):
        assert hit.score == pytest.approx(score, abs=LAYOUT_TOL)
        assert hit.node.metadata["relevance_score"] == pytest.approx(score, abs=LAYOUT_TOL)
        assert hit.node.metadata["reasoning"] == reasoning
        assert "reasoning" not in hit.node.get_content(metadata_mode=MetadataMode.LLM)  # kept out of prompts
    assert all("reasoning" not in n.metadata for n in stored.values())  # the stored nodes untouched


def test_llamaindex_postprocessor_needs_a_query(reranker):
    from llama_index.core.schema import NodeWithScore, TextNode

    from thinkrank.integrations.llamaindex import ThinkrankRerank

    post = ThinkrankRerank(reranker=reranker, top_n=None)
    nodes = [NodeWithScore(node=TextNode(text=t), score=0.0) for t in CORPUS.values()]
    with pytest.raises(InvalidInputError, match="needs the query"):
        post.postprocess_nodes(nodes)
    assert post.postprocess_nodes([], query_str=QUERY) == []
    assert len(post.postprocess_nodes(nodes[:2], query_str=QUERY)) == 2


# ---- Haystack -------------------------------------------------------------------------------
def _haystack_pipeline(ranker):
    from haystack import Document, Pipeline
    from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
    from haystack.document_stores.in_memory import InMemoryDocumentStore

    store = InMemoryDocumentStore()
    store.write_documents([Document(id=i, content=t, meta={"topic": i}) for i, t in CORPUS.items()])
    pipe = Pipeline()
    pipe.add_component("retriever", InMemoryBM25Retriever(document_store=store, top_k=4))
    pipe.add_component("ranker", ranker)
    pipe.connect("retriever.documents", "ranker.documents")
    return pipe


def test_haystack_ranker_in_a_pipeline_and_serialised(reranker, smollm2_path):
    from haystack import Pipeline

    from thinkrank.integrations.haystack import ThinkrankRanker

    options = {"engine": "transformers", "device": "cpu", "think_budget": 12}
    pipe = _haystack_pipeline(ThinkrankRanker(str(smollm2_path), top_k=3, reranker_options=options))
    inputs = {"retriever": {"query": QUERY}, "ranker": {"query": QUERY}}
    out = pipe.run(inputs, include_outputs_from={"retriever"})
    first_stage, ranked = out["retriever"]["documents"], out["ranker"]["documents"]
    expected = _reference(reranker, [d.content for d in first_stage])[:3]
    assert [d.content for d in ranked] == [t for t, _, _ in expected]
    for doc, (_, score, reasoning) in zip(ranked, expected):
        assert doc.score == pytest.approx(score, abs=LAYOUT_TOL)
        assert doc.meta["reasoning"] == reasoning and doc.meta["topic"] == doc.id

    # The pipeline saves to YAML and loads back with the same component settings and output.
    # Haystack 3 loads classes only from modules the caller allows.
    loaded = Pipeline.loads(pipe.dumps(), allowed_modules=["thinkrank.integrations.haystack"])
    ranker = loaded.get_component("ranker")
    assert isinstance(ranker, ThinkrankRanker) and ranker.to_dict() == pipe.get_component("ranker").to_dict()
    again = loaded.run({"retriever": {"query": QUERY}, "ranker": {"query": QUERY, "top_k": 2}})["ranker"]["documents"]
    assert [(d.id, d.score) for d in again] == [(d.id, d.score) for d in ranked[:2]]


def test_haystack_ranker_threshold_meta_fields_and_bad_values(reranker, smollm2_path):
    from haystack import Document

    from thinkrank.integrations.haystack import ThinkrankRanker

    ranker = ThinkrankRanker(str(smollm2_path), top_k=5, meta_fields_to_embed=["title"], include_reasoning=False,
                             reranker_options={"engine": "transformers", "device": "cpu", "reasoning": False})
    docs = [Document(content=t, meta={"title": i}) for i, t in CORPUS.items()]
    ranked = ranker.run(QUERY, docs)["documents"]
    texts = [f"{d.meta['title']}\n{d.content}" for d in docs]
    direct = Rank1(engine=reranker.engine, reasoning=False).rerank(QUERY, texts)
    assert [d.content for d in ranked] == [docs[j.index].content for j in direct]
    assert all("reasoning" not in d.meta for d in ranked)
    cut = sorted(d.score for d in ranked)[2]
    kept = ranker.run(QUERY, docs, score_threshold=cut)["documents"]
    assert [d.id for d in kept] == [d.id for d in ranked if d.score >= cut] and len(kept) == 3
    assert ranker.run(QUERY, [])["documents"] == []
    with pytest.raises(InvalidInputError, match="top_k"):
        ranker.run(QUERY, docs, top_k=0)
    with pytest.raises(InvalidInputError, match="no text content"):
        ranker.run(QUERY, [Document(content="")])
    with pytest.raises(InvalidInputError, match="mode must be one of"):
        ThinkrankRanker(mode="pairwise")
