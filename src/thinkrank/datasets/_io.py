"""Line readers that name the file and line of every bad record."""

from __future__ import annotations

import gzip
import json
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
        raise InvalidInputError(f"file not found: {path}")
    if path.suffix == ".gz":
        return gzip.open(path, mode + "t", encoding="utf-8")  # type: ignore[return-value]
    return open(path, mode, encoding="utf-8", newline="\n" if "w" in mode else None)


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, stripped_line)`` for each non-blank line, numbered from 1."""
    with open_text(path) as handle:
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if line:
                yield number, line


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each JSON object line.

    Raises:
        InvalidInputError: ``file:line`` of a line that is not a JSON object.
    """
    for number, line in iter_lines(path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{path}:{number}: not valid JSON ({exc.msg}); expected one JSON object per line") from exc
        if not isinstance(obj, dict):
            raise InvalidInputError(f"{path}:{number}: expected a JSON object, got {type(obj).__name__}")
        yield number, obj


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
