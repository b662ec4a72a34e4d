"""Helpers shared by the CLI commands: error reporting and output streams."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from enum import Enum
from functools import wraps
from pathlib import Path
from typing import Any

import typer

from thinkrank.errors import ThinkrankError


class Switch(str, Enum):
    """An on/off option (--reasoning on|off)."""

    on = "on"
    off = "off"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with the line to print instead of the plain ``interrupted`` (what was saved and
    how to resume): the command raises it, :func:`friendly_errors` prints it once."""


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
        except IsADirectoryError as exc:
            fail(f"{exc.filename} is a folder; give a file path")
        except PermissionError as exc:
            fail(f"permission denied: {exc.filename}; choose a path you can write to")
        except UnicodeDecodeError as exc:
            fail(f"input is not UTF-8 text ({exc.reason} at byte {exc.start}); save the file as UTF-8")
        except OSError as exc:
            fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else f"{type(exc).__name__}: {exc}")
        except KeyboardInterrupt as exc:
            typer.secho(str(exc) if isinstance(exc, Interrupted) and str(exc) else "interrupted", err=True)
            sys.exit(130)
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise
        except Exception as exc:
            # A bug, not bad input: still one line (exit 1), with the traceback on request.
            if os.environ.get("THINKRANK_DEBUG"):
                raise
            fail(f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())} (a bug in thinkrank; "
                 "THINKRANK_DEBUG=1 shows the traceback)", code=1)

    return wrapper


def quiet_libraries(quiet: bool) -> None:
    """With ``--quiet``, silence what libraries print on their own: tqdm bars (transformers'
    "Loading weights", the GGUF conversion, sentence-transformers, bm25s), hub download bars,
    and their warnings and info logs. Call it before those libraries are imported: tqdm reads
    ``TQDM_DISABLE`` once, at import. Errors still reach the user as exceptions."""
    if not quiet:
        return
    import logging
    import warnings

    os.environ["TQDM_DISABLE"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"
    os.environ["TOKENIZERS_PARALLELISM"] = os.environ.get("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    for name in ("transformers", "sentence_transformers", "huggingface_hub", "bm25s", "accelerate", "peft"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if "transformers" in sys.modules:  # already imported (e.g. in a test process): switch its bars off too
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()


def given_options() -> set[str] | None:
    """The options the user typed (or set through the environment) in the running command; None
    outside a command (library use), so callers can tell "given" from "left at its default"."""
    try:  # typer >= 0.20 carries its own copy of click
        from typer._click.core import ParameterSource
        from typer._click.globals import get_current_context
    except ImportError:
        from click import get_current_context  # type: ignore[no-redef]
        from click.core import ParameterSource  # type: ignore[assignment]

    ctx = get_current_context(silent=True)
    if ctx is None:
        return None
    user = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    return {name for name in ctx.params if ctx.get_parameter_source(name) in user}


def check_output_file(path: Path, option: str) -> None:
    """Fail before any work when ``path`` cannot be written: a folder, or an unwritable place."""
    from thinkrank.errors import InvalidInputError

    if path.is_dir():
        raise InvalidInputError(f"{option} {path} is a folder; give the path of a file (in it or elsewhere)")
    check_writable_dir(path.parent, option)


def check_writable_dir(folder: Path, option: str) -> None:
    """Fail before any work when files cannot be created in ``folder``: make it (as the run
    would) and create and remove a probe file there."""
    from thinkrank.errors import InvalidInputError

    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                raise InvalidInputError(f"{option}: {parent} is a file, not a folder; choose another path")
            break
    from thinkrank.io import probe_writable

    try:
        probe_writable(folder)
    except OSError as exc:
        raise InvalidInputError(
            f"{option}: cannot write in {folder} ({exc.strerror or type(exc).__name__}); choose another path"
        ) from None


def reranker_spec(opts: dict[str, Any]) -> Any:
    """The :class:`~thinkrank.rerankers.spec.RerankerSpec` a command's options describe.

    The reranker options are the flags named as the spec's fields; the engine's are the flags
    named as options some engine declares (``None`` or an unset ``--chat`` is not given), and
    the spec refuses any the chosen engine does not take."""
    from thinkrank.engines import engine_option_names
    from thinkrank.rerankers.spec import RerankerSpec, spec_options

    engine_options = {name: opts[name] for name in engine_option_names() if opts.get(name) not in (None, False)}
    if isinstance(engine_options.get("extra_body"), str):
        engine_options["extra_body"] = json_object(engine_options["extra_body"], "--extra-body")
    # mode is an enum and on/off options (--reasoning, --shuffle) switches on the command line; engine is given apart.
    fields = [name for name in spec_options() if name not in ("mode", "engine")]
    values = {name: opts[name] == Switch.on if isinstance(opts[name], Switch) else opts[name]
              for name in fields if name in opts}
    return RerankerSpec(mode=str(getattr(opts["mode"], "value", opts["mode"])), engine=opts["engine"],
                        engine_options=engine_options, **values)


def json_object(text: str, flag: str) -> dict[str, Any]:
    """``text`` read as a JSON object, or a one-line error naming ``flag``."""
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{flag} must be a JSON object: {exc.msg}")
    if not isinstance(value, dict):
        fail(f'{flag} must be a JSON object, e.g. \'{{"top_k": -1}}\'')
    return value


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


class Say:
    """Progress lines on stderr, silenced by --quiet."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)
