"""The errors thinkrank raises. Each message says what was wrong and how to fix it."""

from __future__ import annotations


class ThinkrankError(Exception):
    """Base class of every error thinkrank raises on purpose."""


class InvalidInputError(ThinkrankError, ValueError):
    """A query, document, option or file the caller gave is not usable as it is."""


class MissingExtraError(ThinkrankError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class ModelLoadError(ThinkrankError, OSError):
    """A model could not be found or loaded (offline, wrong path, unsupported format)."""


class EngineError(ThinkrankError, RuntimeError):
    """An inference engine failed (server unreachable after retries, bad response)."""


def require(module: str, extra: str):
    """Import ``module`` or raise :class:`MissingExtraError` naming ``thinkrank[extra]``."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{module!r} is not installed; install it with: pip install \"thinkrank[{extra}]\""
        ) from exc
