"""SQLite judgment cache: storage for judgments that must survive crashes and reruns.

:class:`JudgmentCache` stores values under keys that callers compute (the SHA-256 of
:func:`digest`'s input); :mod:`thinkrank.rerankers.cached` puts rerankers in front of it
(per pair for pointwise, per query for listwise) and decides what a key covers. The database
runs in WAL mode with ``synchronous=FULL``: a committed chunk is in the log on disk before the
commit returns, so it survives SIGKILL and power loss alike, and readers never block the
writer. Every computation is also logged (``computations``), so repeated work can be seen.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from thinkrank._sqlite import select_in
from thinkrank.errors import InvalidInputError

FORMAT = "thinkrank-judgment-cache"
VERSION = 1
_SQLITE_MAGIC = b"SQLite format 3\x00"
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE settings (hash TEXT PRIMARY KEY, json TEXT NOT NULL);
CREATE TABLE entries (key TEXT PRIMARY KEY, kind TEXT NOT NULL, settings TEXT NOT NULL,
                      value TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE computations (id INTEGER PRIMARY KEY, key TEXT NOT NULL, kind TEXT NOT NULL,
                           session TEXT NOT NULL, pid INTEGER NOT NULL, at REAL NOT NULL);
"""


def digest(obj: Any) -> str:
    """The SHA-256 (hex) of ``obj`` as canonical JSON: the same value always gives the same key."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class JudgmentCache:
    """A judgment cache in one SQLite file (created with its parent folders when missing).

    Several processes may read and write it at once; writers wait up to ``timeout`` seconds.

    Raises:
        InvalidInputError: ``path`` is a folder, not an SQLite file, an SQLite file of another
            program, or a cache written by a newer thinkrank.
    """

    def __init__(self, path: str | Path, *, timeout: float = 60.0) -> None:
        self.path = Path(path)
        self.session = uuid.uuid4().hex
        _check_file(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        try:
            self._check_meta()  # before WAL is switched on, which would rewrite another program's file
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._init()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            if "locked" in str(exc):
                raise InvalidInputError(f"{self.path} stayed locked by another process for {timeout:g}s; try again") from exc
            raise InvalidInputError(f"{self.path} is not a thinkrank judgment cache ({exc}); pass another --cache file") from exc
        except BaseException:
            self._db.close()
            raise

    def _tables(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def _check_meta(self) -> None:
        tables = self._tables()
        if not tables:
            return
        meta = dict(self._db.execute("SELECT key, value FROM meta")) if "meta" in tables else {}
        if meta.get("format") != FORMAT:
            raise InvalidInputError(
                f"{self.path} is an SQLite database but not a thinkrank judgment cache (tables: {sorted(tables)}); "
                "pass another --cache file"
            )
        if int(meta.get("version", 0)) > VERSION:
            raise InvalidInputError(
                f"{self.path} was written by a newer thinkrank (cache version {meta['version']}, this one reads "
                f"{VERSION}); upgrade thinkrank or use another cache file"
            )

    def _init(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if not self._tables():  # checked again inside the lock: another process may have made them
                # Statement by statement: executescript would commit the open transaction first.
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    self._db.execute(statement)
                self._db.executemany("INSERT INTO meta VALUES (?, ?)", [("format", FORMAT), ("version", str(VERSION))])
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    # ---- reading and writing ------------------------------------------------------------------
    def get(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The stored values of those ``keys`` that are in the cache."""
        rows = select_in(self._db, "SELECT key, value FROM entries WHERE key IN ({marks})", keys)
        return {k: json.loads(v) for k, v in rows}

    def put(self, kind: str, settings: dict[str, Any], items: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Store ``(key, value)`` items and log their computation, all in one durable transaction.

        A key already present keeps its first value (two processes that raced on it computed
        the same thing); the computation is logged either way.
        """
        now, settings_hash = time.time(), digest(settings)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("INSERT OR IGNORE INTO settings VALUES (?, ?)", (settings_hash, json.dumps(settings)))
            self._db.executemany(
                "INSERT OR IGNORE INTO entries VALUES (?, ?, ?, ?, ?)",
                [(k, kind, settings_hash, json.dumps(v, ensure_ascii=False), now) for k, v in items],
            )
            self._db.executemany(
                "INSERT INTO computations (key, kind, session, pid, at) VALUES (?, ?, ?, ?, ?)",
                [(k, kind, self.session, os.getpid(), now) for k, _ in items],
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]

    def computations(self) -> dict[str, int]:
        """key -> how many times it was computed (1 everywhere unless work was repeated)."""
        return dict(self._db.execute("SELECT key, COUNT(*) FROM computations GROUP BY key"))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> JudgmentCache:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise InvalidInputError(f"cache path {path} is a folder; pass a file path such as {path / 'judgments.sqlite'}")
    if path.is_file() and path.stat().st_size > 0:
        with path.open("rb") as handle:
            if handle.read(len(_SQLITE_MAGIC)) != _SQLITE_MAGIC:
                raise InvalidInputError(
                    f"{path} is not a thinkrank judgment cache (not an SQLite file); pass another --cache file"
                )
