"""Inference engines behind one protocol (:mod:`thinkrank.engines.base`), chosen by name.

``load_engine(model, engine="auto")`` picks vLLM when it is installed and a GPU is present,
else transformers; ``"openai"`` talks to any OpenAI-compatible server. Engines are looked up
in a registry keyed by name, never by sniffing the model name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from thinkrank.declare import Declared
from thinkrank.engines.base import Engine, Generation, GenerationRequest, single_token_id
from thinkrank.errors import InvalidInputError


def _transformers(model: Any, **kw: Any) -> Engine:
    from thinkrank.engines.transformers import TransformersEngine

    return TransformersEngine(model, **kw)


def _vllm(model: Any, **kw: Any) -> Engine:
    from thinkrank.engines.vllm import VLLMEngine

    return VLLMEngine(model, **kw)


def _openai(model: Any, **kw: Any) -> Engine:
    from thinkrank.engines.openai import OpenAIEngine

    return OpenAIEngine(model, **kw)


ENGINES: dict[str, Callable[..., Engine]] = {
    "transformers": _transformers,
    "vllm": _vllm,
    "openai": _openai,
}


@dataclass(frozen=True)
class EngineOption:
    """One constructor option an engine takes by name (CLI flag ``--name-with-dashes``).

    ``kind`` is the value's type; ``minimum`` / ``maximum`` (inclusive) and ``positive`` (> 0)
    its range, which the spec, the CLI check and ``--help`` all read from here."""

    name: str
    kind: type
    help: str
    minimum: float | None = None
    maximum: float | None = None
    positive: bool = False

    @property
    def declared(self) -> Declared:
        return Declared(self.help, self.minimum, self.maximum, self.positive)

    def valid(self, value: Any) -> bool:
        """Whether ``value`` is in range (its type is checked apart)."""
        try:
            self.declared.check(self.name, value, self.kind, optional=False)
        except InvalidInputError:
            return False
        return True

    @property
    def rule(self) -> str:
        """The range in words, for an error message (``">= 1"``)."""
        return self.declared.rule

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


_TOKENIZER = EngineOption("tokenizer", str, "local tokenizer dir or hub id, when the served model name is not loadable")
_DTYPE = EngineOption("dtype", str, "weights and activations: auto, bfloat16, float16 or float32 (auto: vllm takes the "
                      "checkpoint's; transformers bfloat16 on a GPU, float32 on CPU, where bfloat16 pays only on "
                      "CPUs with AMX)")
ENGINE_OPTIONS: dict[str, tuple[EngineOption, ...]] = {
    "openai": (
        EngineOption("base_url", str, "server URL, e.g. http://localhost:8000/v1 [env OPENAI_BASE_URL]"),
        EngineOption("api_key", str, "API key [env OPENAI_API_KEY]"),
        _TOKENIZER,
        EngineOption("concurrency", int, "requests in flight at once [default: 8]", minimum=1),
        EngineOption("max_retries", int, "retries per request [default: 3]", minimum=0),
        EngineOption("timeout", float, "seconds per request [default: 600]", positive=True),
        EngineOption("chat", bool, "use /v1/chat/completions for generation"),
        EngineOption("extra_body", dict, "JSON object merged into every request body (server-specific "
                     "sampling fields), e.g. '{\"top_k\": -1}'"),
        EngineOption("context_length", int, "the served model's context length, when the server does not report "
                     "it", minimum=1),
    ),
    "vllm": (
        _TOKENIZER,
        EngineOption("tensor_parallel_size", int, "GPUs per model", minimum=1),
        EngineOption("gpu_memory_utilization", float, "share of GPU memory to use", positive=True, maximum=1.0),
        EngineOption("max_model_len", int, "context length", minimum=1),
        _DTYPE,
    ),
    "transformers": (
        EngineOption("device", str, "cpu, cuda, cuda:1, …"),
        EngineOption("batch_size", int, "sequences decoded together", minimum=1),
        EngineOption("static_cache", bool, "decode with fixed-size KV buffers (same outputs; every step one shape)"),
        EngineOption("compile", bool, "torch.compile the decode step (CUDA graphs on a GPU); implies --static-cache"),
        _DTYPE,
    ),
}
"""The options each engine declares, by engine name: what a :class:`~thinkrank.rerankers.spec.RerankerSpec`
may carry for it and what the CLI offers as flags. An engine registered in :data:`ENGINES` without
an entry here takes no options through a spec."""


def check_options(engine: str, **values: Any) -> None:
    """Each of ``values`` within the range ``engine`` declares for it in :data:`ENGINE_OPTIONS`
    (an engine's constructor checks its arguments with this, so the range is written once).

    Raises:
        InvalidInputError: ``"<name> must be <rule>, got <value>"`` for the first value out of range.
    """
    declared = {o.name: o for o in ENGINE_OPTIONS[engine]}
    for name, value in values.items():
        option = declared[name]
        if not option.valid(value):
            raise InvalidInputError(f"{name} must be {option.rule}, got {value!r}")


def engine_option_names() -> list[str]:
    """Every option name any engine declares, each once."""
    return list(dict.fromkeys(o.name for options in ENGINE_OPTIONS.values() for o in options))


def resolve_engine_name(engine: str) -> str:
    """The concrete engine name ``engine`` stands for (``"auto"`` resolved for this machine)."""
    return _auto() if engine == "auto" else engine


def _auto() -> str:
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        import torch

        if torch.cuda.is_available():
            return "vllm"
    return "transformers"


def load_engine(model: Any, engine: str | Engine = "auto", **options: Any) -> Engine:
    """An engine for ``model``. ``engine`` is a name from :data:`ENGINES`, ``"auto"``, or an
    engine instance (returned as is). ``options`` go to the engine's constructor.

    Raises:
        InvalidInputError: an unknown engine name.
        MissingExtraError: the engine's optional dependency is not installed.
        ModelLoadError: the model cannot be found or loaded.
    """
    if not isinstance(engine, str):
        return engine
    name = resolve_engine_name(engine)
    if name not in ENGINES:
        raise InvalidInputError(f"unknown engine {engine!r}; choose one of: auto, {', '.join(ENGINES)}")
    return ENGINES[name](model, **options)


__all__ = [
    "ENGINES", "ENGINE_OPTIONS", "Engine", "EngineOption", "check_options", "engine_option_names", "Generation", "GenerationRequest", "load_engine", "resolve_engine_name", "single_token_id",
]
