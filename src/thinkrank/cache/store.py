"""SQLite judgment cache: storage for judgments that must survive crashes and reruns.

:class:`JudgmentCache` stores values under keys that callers compute (the SHA-256 of
:func:`digest`'s input); :mod:`thinkrank.rerankers.cached` puts rerankers in front of it
(per pair for pointwise, per query for listwise) and decides what a key covers. The database
runs in WAL mode with ``synchronous=FULL``: a committed chunk is in the log on disk before the
commit returns, so it survives SIGKILL and power loss alike, and readers never block the
writer. Every computation is also logged (``computations``), so repeated work can be seen.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from thinkrank._sqlite import select_in
from thinkrank.errors import InvalidInputError
from thinkrank.types import ComparisonTrace, WindowTrace

FORMAT = "thinkrank-judgment-cache"
VERSION = 1
SQLITE_MAGIC = b"SQLite format 3\x00"
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
        self.bad_keys: set[str] = set()
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
            raise InvalidInputError(
                f"{self.path} is a damaged SQLite file ({exc}); `thinkrank cache repair {self.path}` salvages every "
                "readable judgment (or pass another --cache file)"
            ) from exc
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
        """The stored values of those ``keys`` that are in the cache. A damaged row is left out
        (so it is computed again, and replaced by :meth:`put`) and its key kept in ``bad_keys``."""
        out = {}
        try:
            rows = list(select_in(self._db, "SELECT key, kind, value FROM entries WHERE key IN ({marks})", keys))
        except sqlite3.DatabaseError as exc:
            raise InvalidInputError(
                f"{self.path} is damaged ({exc}); `thinkrank cache repair {self.path}` salvages every readable judgment"
            ) from exc
        for key, kind, value in rows:
            parsed = parse_value(kind, value)
            if parsed is None:
                self.bad_keys.add(key)
            else:
                out[key] = parsed
        return out

    def put(self, kind: str, settings: dict[str, Any], items: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Store ``(key, value)`` items and log their computation, all in one durable transaction.

        A key already present keeps its first value (two processes that raced on it computed
        the same thing); the computation is logged either way.
        """
        now, settings_hash = time.time(), digest(settings)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            damaged = [k for k, _ in items if k in self.bad_keys]
            if damaged:  # recomputed after a damaged row was found: the new value takes its place
                self._db.executemany("DELETE FROM entries WHERE key = ?", [(k,) for k in damaged])
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
        self.bad_keys.difference_update(k for k, _ in items)

    def restore(self, settings: dict[str, str], rows: Sequence[tuple[str, str, str, str, float]]) -> None:
        """Store rows as another cache file held them, ``(key, kind, settings hash, value JSON,
        created_at)``, with the settings JSON of each hash (``"{}"`` for one not in ``settings``),
        in one durable transaction: how :func:`~thinkrank.cache.repair.repair_cache` rebuilds a
        cache. Nothing is logged as computed; a key already present keeps its value."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany("INSERT OR IGNORE INTO settings VALUES (?, ?)",
                                 [(h, settings.get(h, "{}")) for h in {r[2] for r in rows}])
            self._db.executemany("INSERT OR IGNORE INTO entries VALUES (?, ?, ?, ?, ?)", list(rows))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def remembered(self, name: str) -> dict[str, Any] | None:
        """A settings dict stored with :meth:`remember` (None when absent or unreadable)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (f"remember:{name}",)).fetchone()
        try:
            value = json.loads(row[0]) if row else None
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None

    def remember(self, name: str, settings: dict[str, Any]) -> None:
        """Store ``settings`` under ``name`` in the meta table (a memo beside the judgments, never
        part of a key), replacing what was there."""
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"remember:{name}", json.dumps(settings)))

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
            if handle.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
                raise InvalidInputError(
                    f"{path} is not a thinkrank judgment cache (not an SQLite file); pass another --cache file"
                )


# ---- reading values back ----------------------------------------------------------------------
_WINDOW_FIELDS = set(WindowTrace.__dataclass_fields__)
_WINDOW_REQUIRED = {name for name, f in WindowTrace.__dataclass_fields__.items()
                    if f.default is dataclasses.MISSING}
_COMPARISON_FIELDS = set(ComparisonTrace.__dataclass_fields__)
_COMPARISON_REQUIRED = {name for name, f in ComparisonTrace.__dataclass_fields__.items()
                        if f.default is dataclasses.MISSING}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _judgment_ok(value: Any) -> bool:
    return (isinstance(value, dict) and _number(value.get("score")) and 0.0 <= value["score"] <= 1.0
            and isinstance(value.get("reasoning", ""), str))


def parse_value(kind: str, text: Any) -> dict[str, Any] | None:
    """A stored value if it reads back as what ``kind`` needs, else None (a damaged row)."""
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    if kind == "pointwise":
        return value if _judgment_ok(value) else None
    if kind == "listwise":
        if not (isinstance(value, dict) and isinstance(value.get("judgments"), list)
                and isinstance(value.get("windows"), list)):
            return None
        judgments_ok = all(_judgment_ok(j) and isinstance(j.get("index"), int) and j["index"] >= 0
                           for j in value["judgments"])
        windows_ok = all(isinstance(w, dict) and _WINDOW_REQUIRED <= set(w) <= _WINDOW_FIELDS
                         for w in value["windows"])
        comparisons = value.get("comparisons", [])  # setwise rankings
        comparisons_ok = isinstance(comparisons, list) and all(
            isinstance(c, dict) and _COMPARISON_REQUIRED <= set(c) <= _COMPARISON_FIELDS for c in comparisons)
        return value if judgments_ok and windows_ok and comparisons_ok else None
    return None
