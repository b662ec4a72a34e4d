"""Reading and writing files: line readers that name the file and line of every bad record,
and atomic writers (a reader or a killed run sees the old file or the complete new one)."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from thinkrank.errors import InvalidInputError


def open_text(path: str | Path, mode: str = "r") -> IO[str]:
    """Open ``path`` as UTF-8 text, through gzip when it ends in ``.gz``.

    Raises:
        InvalidInputError: reading a file that does not exist.
    """
    path = Path(path)
    if "r" in mode and not path.is_file():
        if path.is_dir():
            raise InvalidInputError(f"{path} is a folder; give a file")
        raise InvalidInputError(f"file not found: {path}")
    if "w" in mode:
        return AtomicWriter(path)  # type: ignore[return-value]
    return _open(path, mode)


def _open(path: Path, mode: str) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, mode + "t", encoding="utf-8")  # type: ignore[return-value]
    return open(path, mode, encoding="utf-8", newline="\n" if "w" in mode else None)


class AtomicWriter:
    """A text file written under a temporary name and renamed over ``path`` when closed without
    an error: a reader (or a killed run) sees the old file or the complete new one, never half.
    On an error the temporary file is removed and ``path`` is left as it was."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self._handle = _open(self.tmp, "w")
        self.closed = False

    def write(self, text: str) -> int:
        return self._handle.write(text)

    def writelines(self, lines: Any) -> None:
        self._handle.writelines(lines)

    def flush(self) -> None:
        self._handle.flush()

    def close(self, *, commit: bool = True) -> None:
        if self.closed:
            return
        self.closed = True
        self._handle.close()
        if commit:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> AtomicWriter:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.close(commit=exc_type is None)


def probe_writable(folder: Path) -> None:
    """Make ``folder`` (with its parents) and create and remove a file in it, so a run finds out
    it cannot write its results before it does any work. Raises OSError when it cannot."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".thinkrank-write-test-{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :class:`AtomicWriter`); returns the path."""
    with AtomicWriter(path) as out:
        out.write(text)
    return Path(path)


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, stripped_line)`` for each non-blank line, numbered from 1."""
    number = 0
    with open_text(path) as handle:
        try:
            for number, line in enumerate(handle, 1):
                line = line.strip()
                if line:
                    yield number, line
        except UnicodeDecodeError as exc:
            raise InvalidInputError(
                f"{path}: not UTF-8 text near line {number + 1} ({exc.reason}); save the file as UTF-8"
            ) from None
        except (OSError, EOFError) as exc:  # a damaged .gz file
            raise InvalidInputError(f"{path}:{number + 1}: cannot be read ({exc}); is the file complete?") from None


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each JSON object line.

    Raises:
        InvalidInputError: ``file:line`` of a line that is not a JSON object.
    """
    for number, line in iter_lines(path):
        yield number, json_object_line(line, f"{path}:{number}")


def json_object_line(line: str, where: str) -> dict[str, Any]:
    """One line of a JSON-lines file, which must hold a JSON object; ``where`` is ``file:line``.

    Raises:
        InvalidInputError: ``where`` and what is wrong with the line.
    """
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{where}: not valid JSON ({exc.msg}); expected one JSON object per line") from exc
    if not isinstance(obj, dict):
        raise InvalidInputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    return obj


def field(obj: dict[str, Any], keys: tuple[str, ...], where: str, *, required: bool = True) -> Any:
    """The first of ``keys`` present in ``obj`` (ids become strings); ``where`` is ``file:line`` for errors.

    Raises:
        InvalidInputError: none of ``keys`` is present and the field is required.
    """
    for key in keys:
        if obj.get(key) is not None:
            value = obj[key]
            return str(value) if key.endswith("id") and isinstance(value, int) else value
    if required:
        raise InvalidInputError(f"{where}: missing field {' or '.join(repr(k) for k in keys)} (keys: {sorted(obj)})")
    return None


def changed_settings(saved: dict[str, Any], now: dict[str, Any], config_type: type, ignore: set[str]) -> list[str]:
    """The settings of ``now`` (a dataclass's ``to_dict``) that differ from ``saved`` (the same,
    read back from a run folder's JSON), ``ignore`` left out, sorted. A setting ``saved`` lacks
    was added after it was written, so it ran under that setting's default. Both sides are
    compared as JSON (tuples as lists)."""
    import dataclasses

    defaults = {f.name: f.default for f in dataclasses.fields(config_type) if f.default is not dataclasses.MISSING}
    now, defaults = json.loads(json.dumps(now)), json.loads(json.dumps(defaults))
    return sorted(k for k in now if k not in ignore and saved.get(k, defaults.get(k)) != now[k])
