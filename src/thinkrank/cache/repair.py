"""Damaged judgment caches: read every row of one without changing it, and salvage the
readable judgments into a fresh cache (``thinkrank cache check|repair``).

A damaged page stops a plain SQLite scan, so rows are read past failing rowids one by one; the
repaired file is written through the store's own API (:meth:`JudgmentCache.restore`).
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from thinkrank.cache.store import FORMAT, SQLITE_MAGIC, JudgmentCache, parse_value
from thinkrank.errors import InvalidInputError


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
        if handle.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
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
        fresh.restore(settings, [r[1:] for r in rows])
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
