"""Adapters that put thinkrank rerankers inside the frameworks users already run.

One module per framework, each behind its own extra and imported only when used:

- :mod:`thinkrank.integrations.langchain` (``thinkrank[langchain]``): ``ThinkrankCompressor``, a
  LangChain ``BaseDocumentCompressor`` (e.g. inside ``ContextualCompressionRetriever``).
- :mod:`thinkrank.integrations.llamaindex` (``thinkrank[llamaindex]``): ``ThinkrankRerank``, a
  LlamaIndex ``BaseNodePostprocessor`` (``node_postprocessors=[...]`` of a query engine).
- :mod:`thinkrank.integrations.haystack` (``thinkrank[haystack]``): ``ThinkrankRanker``, a Haystack
  ``@component`` ranker, serialisable with ``to_dict``/``from_dict``.
- :mod:`thinkrank.integrations.mteb` (``thinkrank[mteb]``): ``ThinkrankCrossEncoder``, a model MTEB v2
  evaluates as a cross-encoder (its ``CrossEncoderProtocol``) on reranking/retrieval tasks.
- :mod:`thinkrank.integrations.ray` (``thinkrank[ray]``): ``RayReranker``, reranking over a Ray
  cluster with Ray Data, one engine per actor, through the judgment cache.
- :mod:`thinkrank.integrations.pyterrier` (``thinkrank[pyterrier]``): ``ThinkrankReranker``, a
  PyTerrier ``pt.Transformer`` for pipelines and ``pt.Experiment``, with the reasoning columns.

See docs/integrations.md for a runnable example of each.
"""
