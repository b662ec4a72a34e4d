"""Inference engines behind one protocol (:mod:`thinkrank.engines.base`), chosen by name.

``load_engine(model, engine="auto")`` picks vLLM when it is installed and a GPU is present,
else transformers; ``"openai"`` talks to any OpenAI-compatible server. Engines are looked up
in a registry keyed by name, never by sniffing the model name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
    "ENGINES", "Engine", "Generation", "GenerationRequest", "load_engine", "resolve_engine_name", "single_token_id",
]
