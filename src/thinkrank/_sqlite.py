"""SQLite helpers shared by the judgment cache and the distillation trace store."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any

# Older SQLite builds allow at most 999 bound parameters in one statement.
_CHUNK = 500


def select_in(db: sqlite3.Connection, query: str, keys: Iterable[str]) -> Iterator[tuple[Any, ...]]:
    """The rows of ``query`` for ``keys``; ``query`` holds one ``{marks}`` where the ``IN`` list goes,
    e.g. ``"SELECT key, value FROM entries WHERE key IN ({marks})"``. Keys go in chunks that stay
    under SQLite's bound-parameter limit; duplicates are asked for once."""
    keys = list(dict.fromkeys(keys))
    for start in range(0, len(keys), _CHUNK):
        part = keys[start:start + _CHUNK]
        yield from db.execute(query.format(marks=",".join("?" * len(part))), part)
