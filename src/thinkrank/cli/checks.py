"""Checks of the command-line options that run before any file is read or model loaded: every
number is in range, and no option is given that the chosen mode, engine or setting would ignore.

An option that would be silently ignored is an error here, because a user who passes
``--think-budget 64`` to a listwise run believes the run used it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from thinkrank.errors import InvalidInputError
from thinkrank.validation import check_float, check_int

# option -> (kind, limits); only the options a command has are checked.
_LIMITS: dict[str, tuple[str, dict[str, Any]]] = {
    "think_budget": ("int", {"minimum": 1}),
    "max_passage_tokens": ("int", {"minimum": 1, "optional": True}),
    "temperature": ("float", {"minimum": 0.0}),
    "top_n": ("int", {"minimum": 1, "optional": True}),
    "top_k": ("int", {"minimum": 1}),
    "queries_limit": ("int", {"minimum": 1, "optional": True}),
    "limit": ("int", {"minimum": 1, "optional": True}),
    "chunk_size": ("int", {"minimum": 1, "optional": True}),
    "window": ("int", {"minimum": 2}),
    "stride": ("int", {"minimum": 1}),
    "depth": ("int", {"minimum": 1}),
    "max_tokens": ("int", {"minimum": 1}),
    "batch_size": ("int", {"minimum": 1, "optional": True}),
    "concurrency": ("int", {"minimum": 1, "optional": True}),
    "max_retries": ("int", {"minimum": 0, "optional": True}),
    "timeout": ("float", {"positive": True, "optional": True}),
    "tensor_parallel_size": ("int", {"minimum": 1, "optional": True}),
    "gpu_memory_utilization": ("float", {"positive": True, "maximum": 1.0, "optional": True}),
    "max_model_len": ("int", {"minimum": 1, "optional": True}),
    "context_length": ("int", {"minimum": 1, "optional": True}),
    "k1": ("float", {"minimum": 0.0}),
    "b": ("float", {"minimum": 0.0, "maximum": 1.0}),
}

POINTWISE_ONLY = ("think_budget", "reasoning", "reasoning_close", "cascade")
LISTWISE_ONLY = ("window", "stride", "depth", "max_tokens")
RERANKER_OPTIONS = (
    POINTWISE_ONLY + LISTWISE_ONLY
    + ("mode", "prompt", "instruction", "engine", "max_passage_tokens", "temperature", "seed", "chunk_size", "cache",
       "base_url", "api_key", "tokenizer", "concurrency", "max_retries", "timeout", "chat", "tensor_parallel_size",
       "gpu_memory_utilization", "max_model_len", "device", "batch_size", "extra_body", "context_length",
       "static_cache", "compile")
)


def flag(name: str) -> str:
    """The command-line spelling of option ``name``."""
    return "--" + name.replace("_", "-")


def check_numbers(opts: Mapping[str, Any], names: dict[str, str] | None = None) -> None:
    """Every numeric option in ``opts`` within its range. ``names`` maps an option to another key
    of ``_LIMITS`` (``evaluate --queries N`` is a count, ``rerank --queries FILE`` a file)."""
    names = names or {}
    for option, value in opts.items():
        kind, limits = _LIMITS.get(names.get(option, option), ("", {}))
        if kind == "int":
            check_int(flag(option), value, **limits)
        elif kind == "float":
            check_float(flag(option), value, **limits)


def check_applicable(opts: Mapping[str, Any], given: Iterable[str] | None, *, listwise: bool,
                     reasoning_per_request: bool = False) -> None:
    """Refuse options given on the command line that this run would ignore. ``given``: the options
    the user typed (None when unknown, e.g. when called from Python: then nothing is refused).
    ``reasoning_per_request``: ``--reasoning`` is only a default that requests override (a
    server), so options of the other setting still apply."""
    if given is None:
        return
    given = set(given)
    mode = "listwise" if listwise else "pointwise"
    for name in LISTWISE_ONLY if not listwise else POINTWISE_ONLY:
        if name in given:
            other = "pointwise" if listwise else "listwise"
            hint = " (listwise windows are limited by --max-tokens)" if name == "think_budget" else ""
            raise InvalidInputError(f"{flag(name)} applies only to --mode {other}, but the mode is {mode}{hint}")
    reasoning_off = str(getattr(opts.get("reasoning"), "value", "on")) == "off" and not reasoning_per_request
    if not listwise and "think_budget" in given and reasoning_off:
        raise InvalidInputError("--think-budget has no effect with --reasoning off (no chain is generated); drop one")
    if "seed" in given and opts.get("temperature", 0.0) == 0:
        raise InvalidInputError("--seed has no effect with --temperature 0 (greedy decoding); set --temperature > 0 "
                                "or drop --seed")


def check_needs_model(given: Iterable[str] | None, has_model: bool) -> None:
    """``evaluate`` without ``--model`` evaluates the run as it is: reranker options would be ignored."""
    if given is None or has_model:
        return
    stray = [flag(n) for n in RERANKER_OPTIONS if n in set(given)]
    if stray:
        raise InvalidInputError(
            f"{', '.join(stray)} configure a reranker, but no --model is given (the run would be evaluated as it "
            "is); add --model or drop them"
        )


RETRIEVAL_OPTIONS = {"bm25": ("k1", "b"), "dense": ("model", "batch_size", "device")}


def check_method_options(given: Iterable[str] | None, method: str) -> None:
    """``retrieve``: refuse options of the other retrieval method (``--model`` with bm25, …)."""
    if given is None:
        return
    for other, names in RETRIEVAL_OPTIONS.items():
        for name in names:
            if other != method and name in set(given):
                raise InvalidInputError(f"{flag(name)} is an option of --method {other}, but the method is {method}")
