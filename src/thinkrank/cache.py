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
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from thinkrank._sqlite import select_in
from thinkrank.errors import InvalidInputError
from thinkrank.types import WindowTrace

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
            if handle.read(len(_SQLITE_MAGIC)) != _SQLITE_MAGIC:
                raise InvalidInputError(
                    f"{path} is not a thinkrank judgment cache (not an SQLite file); pass another --cache file"
                )


# ---- damaged caches: check and repair ----------------------------------------------------------
_WINDOW_FIELDS = set(WindowTrace.__dataclass_fields__)
_WINDOW_REQUIRED = {name for name, f in WindowTrace.__dataclass_fields__.items()
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
        return value if judgments_ok and windows_ok else None
    return None


@dataclasses.dataclass
class CacheReport:
    """What :func:`check_cache` or :func:`repair_cache` found.

    Attributes:
        readable: rows whose value reads back; ``bad``: ``(key or rowid, reason)`` of the rest.
        problems: file-level findings (SQLite's integrity check, unreadable tables); empty when
            the file is sound. ``written``: rows written to the repaired file (repair only).
    """

    path: Path
    readable: int = 0
    bad: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)
    written: int | None = None
    backup: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.bad and not self.problems


def _open_read_only(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise InvalidInputError(f"cache file not found: {path}" if not path.exists() else f"{path} is not a file")
    with path.open("rb") as handle:
        if handle.read(len(_SQLITE_MAGIC)) != _SQLITE_MAGIC:
            raise InvalidInputError(f"{path} is not an SQLite file, so no judgment can be read from it")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    # A truncated file is shorter than its header says; SQLite then refuses the whole file unless
    # the schema is "writable" (it then reads the pages that are there). The connection is
    # read-only, so nothing is written either way.
    db.execute("PRAGMA writable_schema=ON")
    return db


def _scan_rows(db: sqlite3.Connection, report: CacheReport, *, give_up_after: int = 5000) -> Iterator[tuple[Any, ...]]:
    """Every readable entries row, in rowid order. A damaged or missing page stops a plain scan,
    so the scan steps over the failing rowid and starts again past it; a stretch of failures is
    reported once, and the scan ends after ``give_up_after`` failing rowids in a row."""
    query = "SELECT rowid, key, kind, settings, value, created_at FROM entries WHERE rowid > ? ORDER BY rowid"
    last, failed_from, error = 0, None, ""
    while True:
        try:
            for row in db.execute(query, (last,)):
                if row[0] <= last:  # a damaged page can point back at rows already read
                    continue
                if failed_from is not None:
                    report.problems.append(f"rowids {failed_from}-{row[0] - 1}: unreadable ({error})")
                    failed_from = None
                last = row[0]
                yield row
            break
        except sqlite3.DatabaseError as exc:
            failed_from, error = failed_from or last + 1, str(exc)
            last += 1
            if last - failed_from >= give_up_after:
                break
    if failed_from is not None:
        report.problems.append(f"nothing readable from rowid {failed_from} on ({error})")


def check_cache(path: str | Path) -> CacheReport:
    """Read every row of a judgment cache without changing it; report damaged rows and pages.

    Raises:
        InvalidInputError: the file is missing or not an SQLite file at all.
    """
    report = CacheReport(Path(path))
    db = _open_read_only(report.path)
    try:
        _integrity(db, report)
        for _, key, kind, _settings, value, _at in _scan_rows(db, report):
            if parse_value(kind, value) is None:
                report.bad.append((str(key), f"{kind} value does not read back"))
            else:
                report.readable += 1
    finally:
        db.close()
    return report


def _integrity(db: sqlite3.Connection, report: CacheReport) -> None:
    try:
        found = [r[0] for r in db.execute("PRAGMA quick_check")]
        meta = dict(db.execute("SELECT key, value FROM meta"))
    except sqlite3.DatabaseError as exc:
        report.problems.append(f"integrity check failed: {exc}")
        return
    lines = [line for text in found for line in str(text).splitlines() if line.strip()]
    if lines != ["ok"]:
        more = f" (and {len(lines) - 3} more findings)" if len(lines) > 3 else ""
        report.problems.append("integrity: " + "; ".join(lines[:3]) + more)
    if meta.get("format") != FORMAT:
        report.problems.append("no thinkrank judgment-cache marker in the meta table")


def repair_cache(path: str | Path, output: str | Path | None = None) -> CacheReport:
    """Copy every readable judgment of a (damaged) cache into a fresh cache file.

    With ``output`` the repaired cache goes there and ``path`` is not touched; without it the
    original is kept as ``PATH.damaged-<time>`` and the repaired file takes its name. Settings
    rows that cannot be read are rebuilt as empty placeholders (they are only a log).

    Raises:
        InvalidInputError: the file is missing or not an SQLite file; ``output`` already exists.
    """
    source = Path(path)
    target = Path(output) if output is not None else source.with_name(f".{source.name}.repair-{os.getpid()}")
    if output is not None and target.exists():
        raise InvalidInputError(f"{target} already exists; give a new file for the repaired cache")
    report = check_cache(source)
    db = _open_read_only(source)
    try:
        rows = [r for r in _scan_rows(db, CacheReport(source)) if parse_value(r[2], r[4]) is not None]
        settings = _readable_settings(db)
    finally:
        db.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    with JudgmentCache(target) as fresh:
        fresh._db.execute("BEGIN IMMEDIATE")
        fresh._db.executemany("INSERT OR IGNORE INTO settings VALUES (?, ?)",
                              [(h, settings.get(h, "{}")) for h in {r[3] for r in rows}])
        fresh._db.executemany("INSERT OR IGNORE INTO entries VALUES (?, ?, ?, ?, ?)", [r[1:] for r in rows])
        fresh._db.execute("COMMIT")
        report.written = len(fresh)
    if output is None:
        backup = source.with_name(f"{source.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        source.replace(backup)
        for suffix in ("-wal", "-shm"):  # the old log belongs to the damaged file
            if Path(f"{source}{suffix}").exists():
                Path(f"{source}{suffix}").replace(Path(f"{backup}{suffix}"))
        target.replace(source)
        for suffix in ("-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        report.backup = backup
    return report


def _readable_settings(db: sqlite3.Connection) -> dict[str, str]:
    try:
        return {h: j for h, j in db.execute("SELECT hash, json FROM settings")}
    except sqlite3.DatabaseError:
        return {}
