"""The judgment cache: :mod:`~thinkrank.cache.store` (the SQLite store rerankers write through)
and :mod:`~thinkrank.cache.repair` (checking and salvaging a damaged cache file)."""

from thinkrank.cache.repair import CacheReport, check_cache, repair_cache
from thinkrank.cache.store import FORMAT, VERSION, JudgmentCache, digest, parse_value

__all__ = ["FORMAT", "VERSION", "CacheReport", "JudgmentCache", "check_cache", "digest", "parse_value", "repair_cache"]
