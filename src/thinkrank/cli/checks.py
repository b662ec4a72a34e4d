"""Checks of the command-line options that run before any file is read or model loaded: every
number is in range, and no option is given that the chosen mode, engine or setting would ignore.

An option that would be silently ignored is an error here, because a user who passes
``--think-budget 64`` to a listwise run believes the run used it.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from thinkrank.declare import Declared
from thinkrank.errors import InvalidInputError

def _declared(name: str) -> tuple[type, Declared] | None:
    """The value type and declaration of option ``name``: a spec field or an engine option."""
    from thinkrank.engines import ENGINE_OPTIONS
    from thinkrank.rerankers.spec import spec_options

    if name in spec_options():
        f = spec_options()[name]
        return f.kind, f.declared
    for declared in ENGINE_OPTIONS.values():
        for option in declared:
            if option.name == name:
                return option.kind, option.declared
    return None


def _own(command: Callable[..., Any] | None) -> dict[str, tuple[type, Declared]]:
    """The ranges a command declares beside its own flags (``Annotated[int, typer.Option(...), bounds(1)]``)."""
    if command is None:
        return {}
    out: dict[str, tuple[type, Declared]] = {}
    for name, hint in typing.get_type_hints(command, include_extras=True).items():
        if typing.get_origin(hint) is not typing.Annotated:
            continue
        base, *extras = typing.get_args(hint)
        for extra in extras:
            if isinstance(extra, Declared):
                members = typing.get_args(base) or (base,)
                out[name] = (next(t for t in members if t is not type(None)), extra)
    return out


def reranker_options() -> list[str]:
    """The options that configure a reranker: the spec's (but ``--model``), the cache's and every engine's."""
    from thinkrank.engines import engine_option_names
    from thinkrank.rerankers.spec import spec_options

    return [n for n in spec_options() if n != "model"] + ["chunk_size", "cache"] + engine_option_names()


def flag(name: str) -> str:
    """The command-line spelling of option ``name`` (its declared one, e.g. ``--sort-k`` for ``k``)."""
    found = _declared(name)
    if found is not None and found[1].flags:
        return found[1].flags[0]
    return "--" + name.replace("_", "-")


def check_numbers(opts: Mapping[str, Any], command: Callable[..., Any] | None = None) -> None:
    """Every numeric option in ``opts`` within its declared range: a ``command``'s own flags by
    what it declares beside them, the reranker's, engine's and server's by their settings."""
    own = _own(command)
    for option, value in opts.items():
        found = own.get(option) or _declared(option)
        if found is not None and found[0] in (int, float):
            found[1].check(flag(option), value, found[0], optional=True)


def check_applicable(opts: Mapping[str, Any], given: Iterable[str] | None, *, mode: str,
                     reasoning_per_request: bool = False) -> None:
    """Refuse options given on the command line that this run would ignore. ``mode``: the
    reranker mode the run uses (pointwise, listwise, setwise). ``given``: the options
    the user typed (None when unknown, e.g. when called from Python: then nothing is refused).
    ``reasoning_per_request``: ``--reasoning`` is only a default that requests override (a
    server), so options of the other setting still apply."""
    if given is None:
        return
    given = set(given)
    from thinkrank.rerankers.spec import spec_options

    for name, declared in spec_options().items():
        if name in given and not declared.applies(mode):
            other = " or ".join(declared.declared.modes)
            hint = f" ({mode} calls are limited by --max-tokens)" if name == "think_budget" else ""
            raise InvalidInputError(f"{flag(name)} applies only to --mode {other}, but the mode is {mode}{hint}")
    reasoning_off = _switch(opts, "reasoning") == "off" and not reasoning_per_request
    if mode == "pointwise" and "think_budget" in given and reasoning_off:
        raise InvalidInputError("--think-budget has no effect with --reasoning off (no chain is generated); drop one")
    shuffled = mode == "setwise" and _switch(opts, "shuffle") == "on"  # the seed draws each set's order
    if "seed" in given and _temperature(opts) == 0 and not shuffled:
        raise InvalidInputError("--seed has no effect with --temperature 0 (greedy decoding); set --temperature > 0 "
                                "or drop --seed")


def check_needs_model(given: Iterable[str] | None, has_model: bool) -> None:
    """``evaluate`` without ``--model`` evaluates the run as it is: reranker options would be ignored."""
    if given is None or has_model:
        return
    stray = [flag(n) for n in reranker_options() if n in set(given)]
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


def _switch(opts: Mapping[str, Any], name: str) -> str:
    """An on/off option's value as text (a Switch on the command line, a bool from Python; on when absent)."""
    value = opts.get(name, "on")
    return ("on" if value else "off") if isinstance(value, bool) else str(getattr(value, "value", value))


def _temperature(opts: Mapping[str, Any]) -> float:
    """The temperature the run will sample at: ``--temperature``, or the family's for the model."""
    if opts.get("temperature") is not None:
        return float(opts["temperature"])
    from thinkrank.rerankers.spec import mode_of

    mode = mode_of(opts.get("family"), str(getattr(opts.get("mode"), "value", opts.get("mode") or "pointwise")))
    if mode != "listwise":
        return 0.0
    from thinkrank.families.window import window_family

    model = opts.get("model") or ""
    return window_family(opts.get("family") or "rank-k", model).sampling(model).temperature
