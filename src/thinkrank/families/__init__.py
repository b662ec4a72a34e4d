"""Reranker families: one module per released model family (see :mod:`thinkrank.families.base`)."""
