"""The reranker and engine flags, declared once for every command that builds a reranker.

``thinkrank rerank``, ``evaluate`` and ``serve`` list these aliases as parameters
(``cascade: options.Cascade = None``), so a flag has one spelling, type, default and help text
everywhere, and :func:`check` refuses bad combinations with the same message in every command.
The engine flags take their help from what each engine declares in
:data:`thinkrank.engines.ENGINE_OPTIONS`; :func:`~thinkrank.cli.common.reranker_spec` turns the
parsed values into a :class:`~thinkrank.rerankers.spec.RerankerSpec`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Annotated, Any

import typer

from thinkrank.cli.common import Switch
from thinkrank.engines import ENGINE_OPTIONS, ENGINES
from thinkrank.errors import InvalidInputError


class Mode(str, Enum):
    pointwise = "pointwise"
    listwise = "listwise"


def _escape(text: str) -> str:
    # typer renders help with rich markup: an unescaped "[env X]" or "[default: 8]" would vanish.
    return text.replace("[", "\\[")


def _engine_help(name: str) -> str:
    """``"openai engine: <what the engine declares>"`` for the engine option ``name``."""
    owners = [engine for engine, declared in ENGINE_OPTIONS.items() if any(o.name == name for o in declared)]
    option = next(o for declared in ENGINE_OPTIONS.values() for o in declared if o.name == name)
    return f"{'/'.join(owners)} engine: {_escape(option.help)}"


# ---- the reranker ----------------------------------------------------------------------------------
Model = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Hub id, local directory, .gguf file or adapter directory.  "
                 "\\[default: jhu-clsp/rank1-7b; listwise: hltcoe/Rank-K-32B]"),
]
ModeOption = Annotated[Mode, typer.Option("--mode", help="pointwise (Rank1) or listwise (Rank-K).")]
Reasoning = Annotated[Switch, typer.Option(help="Pointwise: off scores in one forward pass, no chain.")]
ThinkBudget = Annotated[int, typer.Option(help="Pointwise: most reasoning tokens per document.")]
Cascade = Annotated[
    str | None,
    typer.Option(help="Pointwise: score all without reasoning, reason only about the top M and/or a score band: "
                 "'top=20', 'band=0.2:0.8' or 'top=10,band=0.3:0.7'."),
]
ReasoningClose = Annotated[
    str, typer.Option(help="Pointwise, reasoning off (and the cascade's first pass): bytes closing the empty think "
                      "block: newline ('\\n</think>'), bare ('</think>') or empty-chain ('\\n\\n</think>').")
]
Prompt = Annotated[
    str | None, typer.Option(help="Pointwise: dataset template name (scifact, nfcorpus, bright-pony, …) or a template "
                             "with FILL_QUERY_HERE. Listwise: a template with {query} and {docs}.")
]
Instruction = Annotated[str | None, typer.Option(help="Text appended to every query.")]
MaxPassageTokens = Annotated[
    int | None, typer.Option(help="Cut passages to this many tokens (flagged).  \\[default: 2048; listwise 512]")
]
Temperature = Annotated[float, typer.Option(help="0 = greedy (default).")]
Seed = Annotated[int | None, typer.Option(help="Seed for sampling (with --temperature > 0).")]
Window = Annotated[int, typer.Option(help="Listwise: passages per window.")]
Stride = Annotated[int, typer.Option(help="Listwise: window stride.")]
Depth = Annotated[int, typer.Option(help="Listwise: how many top candidates to rerank.")]
MaxTokens = Annotated[int, typer.Option(help="Listwise: most tokens per window (reasoning + ordering).")]

# ---- the engine -------------------------------------------------------------------------------------
Engine = Annotated[str, typer.Option(help=f"auto, {', '.join(ENGINES)}.")]
BaseUrl = Annotated[str | None, typer.Option(help=_engine_help("base_url"))]
ApiKey = Annotated[str | None, typer.Option(help=_engine_help("api_key"))]
EngineApiKey = Annotated[str | None, typer.Option("--engine-api-key", help=_engine_help("api_key"))]
"""``serve`` spells the engine's key ``--engine-api-key``: its ``--api-key`` guards the server."""
Tokenizer = Annotated[str | None, typer.Option(help=_engine_help("tokenizer"))]
Concurrency = Annotated[int | None, typer.Option(help=_engine_help("concurrency"))]
MaxRetries = Annotated[int | None, typer.Option(help=_engine_help("max_retries"))]
Timeout = Annotated[float | None, typer.Option(help=_engine_help("timeout"))]
Chat = Annotated[bool, typer.Option("--chat", help=_engine_help("chat"))]
ExtraBody = Annotated[str | None, typer.Option(help=_engine_help("extra_body"))]
ContextLength = Annotated[int | None, typer.Option(help=_engine_help("context_length"))]
TensorParallelSize = Annotated[int | None, typer.Option(help=_engine_help("tensor_parallel_size"))]
GpuMemoryUtilization = Annotated[float | None, typer.Option(help=_engine_help("gpu_memory_utilization"))]
MaxModelLen = Annotated[int | None, typer.Option(help=_engine_help("max_model_len"))]
Device = Annotated[str | None, typer.Option(help=_engine_help("device"))]
BatchSize = Annotated[int | None, typer.Option(help=_engine_help("batch_size"))]
StaticCache = Annotated[bool, typer.Option("--static-cache", help=_engine_help("static_cache"))]
Compile = Annotated[bool, typer.Option("--compile", help=_engine_help("compile"))]

DEFAULTS: dict[str, Any] = {
    "think_budget": 1024, "reasoning_close": "newline", "temperature": 0.0, "window": 20, "stride": 10,
    "depth": 100, "max_tokens": 4096,
}
"""The defaults of the flags above that are not None/off; the commands use these values."""


def check(opts: Mapping[str, Any], given: Iterable[str] | None, *, reasoning_per_request: bool = False) -> None:
    """Refuse reranker/engine flags that the chosen mode, reasoning or engine would ignore, before
    anything loads (the same checks and messages in every command). ``given``: the flags typed
    (None from Python: nothing is refused for being ignored). ``reasoning_per_request``: the
    server's ``--reasoning`` is a default each request may override, so ``--think-budget`` and
    ``--reasoning-close`` apply whatever it is."""
    from thinkrank.cli.checks import check_applicable

    listwise = opts.get("mode") == Mode.listwise
    if opts.get("cascade") is not None and listwise:
        raise InvalidInputError("--cascade is a pointwise option (Rank1); drop it or use --mode pointwise")
    check_applicable(opts, given, listwise=listwise, reasoning_per_request=reasoning_per_request)
    given = set(given or ())
    reasoning_on = opts.get("reasoning", Switch.on) == Switch.on
    close_unused = reasoning_on and opts.get("cascade") is None and not reasoning_per_request
    if "reasoning_close" in given and not listwise and close_unused:
        raise InvalidInputError("--reasoning-close applies with --reasoning off or --cascade (it closes the empty "
                                "think block of a no-reasoning pass); drop it or add one of them")
