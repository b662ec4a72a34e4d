"""A SQLite store of teacher traces: every finished trace is written once, the moment it is done.

Keys are content hashes of (teacher settings, prompt), so an interrupted run that starts again
skips every prompt already answered, and a change of model, temperature or token budget
starts a fresh set instead of mixing traces. WAL mode lets readers (``export``, a second
terminal) look at the store while a generation run keeps writing.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from thinkrank._sqlite import select_in
from thinkrank.distill.records import Trace
from thinkrank.errors import InvalidInputError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS traces (
    key TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    qid TEXT, docid TEXT,
    reasoning TEXT NOT NULL,
    answer_text TEXT NOT NULL,
    finish_reason TEXT NOT NULL,
    prompt_tokens INTEGER, completion_tokens INTEGER,
    extra TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS teacher_settings (digest TEXT PRIMARY KEY, json TEXT NOT NULL);
"""


def settings_digest(settings: Mapping[str, Any]) -> str:
    """A short stable hash of teacher settings (sorted JSON)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def trace_key(settings: Mapping[str, Any], prompt: str) -> str:
    """The store key of one prompt under one teacher: a hash of both (also the batch custom_id)."""
    payload = json.dumps({"teacher": settings, "prompt": prompt}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


class TraceStore:
    """Traces in one SQLite file (created on first use). Safe to share between threads.

    Raises:
        InvalidInputError: the path is a folder or not a SQLite database.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise InvalidInputError(f"trace store {self.path} is a folder; pass a file path such as traces.sqlite")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise InvalidInputError(f"{self.path} is not a thinkrank trace store ({exc}); pass a new file name") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> TraceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def register(self, settings: Mapping[str, Any]) -> str:
        """Record teacher settings (for inspection); returns their digest."""
        digest = settings_digest(settings)
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO teacher_settings VALUES (?, ?)",
                             (digest, json.dumps(settings, sort_keys=True)))
            self._db.commit()
        return digest

    def put(self, key: str, trace: Trace, *, settings: str, qid: str | None = None, docid: str | None = None) -> bool:
        """Store ``trace`` under ``key`` and commit; returns False when the key was already there
        (the first trace wins, so a trace is never redone or replaced)."""
        row = (key, settings, qid, docid, trace.reasoning, trace.answer_text, trace.finish_reason,
               trace.prompt_tokens, trace.completion_tokens, json.dumps(trace.extra), time.time())
        with self._lock:
            cur = self._db.execute("INSERT OR IGNORE INTO traces VALUES (?,?,?,?,?,?,?,?,?,?,?)", row)
            self._db.commit()
        return cur.rowcount == 1

    def existing(self, keys: Iterable[str]) -> set[str]:
        """The subset of ``keys`` already stored."""
        with self._lock:
            return {row[0] for row in select_in(self._db, "SELECT key FROM traces WHERE key IN ({marks})", keys)}

    def get_many(self, keys: Iterable[str]) -> dict[str, Trace]:
        """The stored traces among ``keys``."""
        query = ("SELECT key, reasoning, answer_text, finish_reason, prompt_tokens, completion_tokens, extra "
                 "FROM traces WHERE key IN ({marks})")
        with self._lock:
            return {key: Trace(reasoning, answer, finish, pt, ct, json.loads(extra))
                    for key, reasoning, answer, finish, pt, ct, extra in select_in(self._db, query, keys)}

    def count(self, settings: str | None = None) -> int:
        """How many traces are stored (under one settings digest, when given)."""
        with self._lock:
            if settings is None:
                return self._db.execute("SELECT COUNT(*) FROM traces").fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM traces WHERE settings = ?", (settings,)).fetchone()[0]
