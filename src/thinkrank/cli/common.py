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


def reranker_spec(opts: dict[str, Any]) -> Any:
    """The :class:`~thinkrank.rerankers.spec.RerankerSpec` a command's options describe.

    The reranker options are the flags named as the spec's fields; the engine's are the flags
    named as options some engine declares (``None`` or an unset ``--chat`` is not given), and
    the spec refuses any the chosen engine does not take."""
    from thinkrank.engines import engine_option_names
    from thinkrank.rerankers.spec import RerankerSpec

    engine_options = {name: opts[name] for name in engine_option_names() if opts.get(name) not in (None, False)}
    fields = ("model", "think_budget", "prompt", "instruction", "max_passage_tokens", "temperature", "seed", "window",
              "stride", "depth", "max_tokens")
    return RerankerSpec(
        mode=str(getattr(opts["mode"], "value", opts["mode"])), engine=opts["engine"], engine_options=engine_options,
        reasoning=opts["reasoning"] == Switch.on, **{name: opts[name] for name in fields if name in opts},
    )


class ProgressBar:
    """A rich progress bar on stderr, nothing when ``quiet``. Drive it as a ``progress(done, total)``
    callback (what rerankers and the evaluation call) or with ``advance(n)`` against ``total``."""

    def __init__(self, label: str, quiet: bool, *, total: int | None = None, transient: bool = False) -> None:
        self.label, self.quiet, self.total, self.transient = label, quiet, total, transient
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> ProgressBar:
        if not self.quiet:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                console=Console(stderr=True), transient=self.transient)
            self.bar.__enter__()
            if self.total is not None:
                self.task = self.bar.add_task(self.label, total=self.total)
        return self

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            return
        if self.task is None:
            self.task = self.bar.add_task(self.label, total=total)
        self.bar.update(self.task, completed=done, total=total)

    def advance(self, n: int = 1) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.advance(self.task, n)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
