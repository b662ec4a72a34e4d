"""Reranker families: one module per released model family (see :mod:`thinkrank.families.base`),
listed by name in :mod:`thinkrank.families.registry`."""

from thinkrank.families.registry import FAMILIES, FamilyEntry, family_names, get_family

__all__ = ["FAMILIES", "FamilyEntry", "family_names", "get_family"]
