"""Helpers shared by the CLI commands: error reporting and output streams."""

from __future__ import annotations

import sys
from collections.abc import Callable
from enum import Enum
from functools import wraps
from typing import Any

import typer

from thinkrank.errors import ThinkrankError


class Switch(str, Enum):
    """An on/off option (--reasoning on|off)."""

    on = "on"
    off = "off"


def fail(message: str, code: int = 2) -> None:
    """Print ``message`` to stderr as an error and exit with ``code``."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn thinkrank's own errors into one clear line on stderr (exit 2), not a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ThinkrankError as exc:
            fail(str(exc))
        except FileNotFoundError as exc:
            fail(f"file not found: {exc.filename}")
        except KeyboardInterrupt:
            typer.secho("interrupted", err=True)
            sys.exit(130)

    return wrapper
