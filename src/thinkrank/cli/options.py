"""The reranker and engine flags, built from their declarations.

Each flag is declared once, on the field it sets: a :class:`~thinkrank.rerankers.spec.RerankerSpec`
field (:func:`thinkrank.declare.option`) or an engine option (:data:`thinkrank.engines.ENGINE_OPTIONS`).
:func:`command` adds them to a command as typer parameters, with the declared type, default,
flag spelling and help, the way vLLM builds its argument parser from ``EngineArgs``' fields; the
range checks (:func:`thinkrank.cli.checks.check_numbers`) and the mode checks (:func:`check`)
read the same declarations, so a flag has one spelling, default, help and error in every command.
:func:`~thinkrank.cli.common.reranker_spec` turns the parsed values into a spec.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import Enum
from typing import Annotated, Any

import typer

from thinkrank.cli.common import Switch
from thinkrank.declare import Field
from thinkrank.engines import ENGINE_OPTIONS, engine_option_names
from thinkrank.errors import InvalidInputError


class Mode(str, Enum):
    pointwise = "pointwise"
    listwise = "listwise"
    setwise = "setwise"


def _escape(text: str) -> str:
    # typer renders help with rich markup: an unescaped "[env X]" or "[default: 8]" would vanish.
    return text.replace("[", "\\[")


# The flags in the order commands show them.
HEAD = ("model", "mode", "reasoning", "think_budget", "cascade", "reasoning_close", "prompt", "instruction")
"""The reranker and its reasoning."""
SAMPLING = ("max_passage_tokens", "temperature", "seed")
LISTWISE = ("window", "stride", "depth", "max_tokens")
SETWISE = ("method", "k", "num_child", "shuffle")
ENGINE = ("engine", *engine_option_names())
"""``--engine`` and every option some engine declares."""
RERANKER = HEAD + SAMPLING + LISTWISE + SETWISE + ENGINE


def _spec_parameter(name: str) -> tuple[Any, Any]:
    from thinkrank.rerankers.spec import spec_options

    f = spec_options()[name]
    d = f.declared
    info = typer.Option(*d.flags, help=_escape(d.help)) if d.flags else typer.Option(help=_escape(d.help))
    if name == "mode":
        return Annotated[Mode, info], Mode(f.default)
    if f.kind is bool:  # an on/off switch: --reasoning on|off
        return Annotated[Switch, info], Switch.on if f.default else Switch.off
    kind = d.cli_type or (f.kind | None if f.optional else f.kind)
    return Annotated[kind, info], f.default


def _engine_parameter(name: str, flags: Sequence[str] = ()) -> tuple[Any, Any]:
    owners = [engine for engine, declared in ENGINE_OPTIONS.items() if any(o.name == name for o in declared)]
    option = next(o for declared in ENGINE_OPTIONS.values() for o in declared if o.name == name)
    help = f"{'/'.join(owners)} engine: {_escape(option.help)}"
    if option.kind is bool:  # a flag, off unless given
        return Annotated[bool, typer.Option(*(flags or (option.flag,)), help=help)], False
    kind = str if option.kind is dict else option.kind  # a JSON object is given as text
    info = typer.Option(*flags, help=help) if flags else typer.Option(help=help)
    return Annotated[kind | None, info], None


def _settings_parameter(f: Field) -> tuple[Any, Any]:
    """A :class:`~thinkrank.server.settings.ServerSettings` or
    :class:`~thinkrank.quantization.QuantizeConfig` field as a flag: a field without a default is
    a required flag; a tuple of text is given comma-separated (``cli_type=str``)."""
    d = f.declared
    extra: dict[str, Any] = {"help": _escape(d.help)}
    if d.envvar:
        extra["envvar"] = d.envvar
    if not d.show_default:
        extra["show_default"] = False
    kind = d.cli_type or (f.kind | None if f.optional else f.kind)
    default = inspect.Parameter.empty if f.required else ",".join(f.default) if isinstance(f.default, tuple) \
        else f.default
    return Annotated[kind, typer.Option(*d.flags, **extra)], default


def parameter(name: str) -> inspect.Parameter:
    """The typer parameter of the declared option ``name``: a spec field, an engine option,
    ``server:NAME`` (a :class:`~thinkrank.server.settings.ServerSettings` field) or ``quantize:NAME``
    (a :class:`~thinkrank.quantization.QuantizeConfig` field). ``engine_api_key``
    is the engine's ``api_key`` spelled ``--engine-api-key`` (``serve``'s own ``--api-key`` guards
    the server)."""
    if name.startswith("server:"):
        from thinkrank.server.settings import server_options

        name = name.removeprefix("server:")
        annotation, default = _settings_parameter(server_options()[name])
    elif name.startswith("quantize:"):
        from thinkrank.quantization.runner import quantize_options

        name = name.removeprefix("quantize:")
        annotation, default = _settings_parameter(quantize_options()[name])
    elif name == "engine_api_key":
        annotation, default = _engine_parameter("api_key", ("--engine-api-key",))
    elif name in engine_option_names():
        annotation, default = _engine_parameter(name)
    else:
        annotation, default = _spec_parameter(name)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


def command(run: Callable[..., Any], flags: Mapping[str | None, Sequence[str]]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A typer command whose parameters are the decorated function's own plus the declared ones
    in ``flags``: each key is an own parameter the flags go before (None: at the end). The
    command calls ``run(**values)``; the decorated function only carries the own parameters."""

    def wrap(own: Callable[..., Any]) -> Callable[..., Any]:
        params: list[inspect.Parameter] = []
        for p in inspect.signature(own, eval_str=True).parameters.values():
            params += [parameter(n) for n in flags.get(p.name, ())]
            params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
        params += [parameter(n) for n in flags.get(None, ())]
        names = [p.name for p in params]
        assert len(names) == len(set(names)), f"{own.__name__}: a flag is given twice"

        @functools.wraps(own)
        def cli(**values: Any) -> Any:
            return run(**values)

        del cli.__wrapped__
        cli.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        cli.__annotations__ = {p.name: p.annotation for p in params}
        return cli

    return wrap


def default(name: str) -> Any:
    """The declared default of the spec option ``name`` (for a command's own flag of it)."""
    from thinkrank.rerankers.spec import spec_options

    return spec_options()[name].default


def check(opts: Mapping[str, Any], given: Iterable[str] | None, *, reasoning_per_request: bool = False) -> None:
    """Refuse reranker/engine flags that the chosen mode, reasoning or engine would ignore, before
    anything loads (the same checks and messages in every command). ``given``: the flags typed
    (None from Python: nothing is refused for being ignored). ``reasoning_per_request``: the
    server's ``--reasoning`` is a default each request may override, so ``--think-budget`` and
    ``--reasoning-close`` apply whatever it is."""
    from thinkrank.cli.checks import check_applicable

    from thinkrank.rerankers.spec import mode_of

    mode = mode_of(opts.get("family"), str(getattr(opts.get("mode"), "value", opts.get("mode") or "pointwise")))
    if opts.get("cascade") is not None and mode != "pointwise":
        raise InvalidInputError("--cascade is a pointwise option (Rank1); drop it or use --mode pointwise")
    check_applicable(opts, given, mode=mode, reasoning_per_request=reasoning_per_request)
    given = set(given or ())
    reasoning_on = opts.get("reasoning", Switch.on) == Switch.on
    close_unused = reasoning_on and opts.get("cascade") is None and not reasoning_per_request
    if "reasoning_close" in given and mode == "pointwise" and close_unused:
        raise InvalidInputError("--reasoning-close applies with --reasoning off or --cascade (it closes the empty "
                                "think block of a no-reasoning pass); drop it or add one of them")
