"""Resolve a model reference (hub id, local directory, GGUF file, LoRA adapter) and load it
with transformers, turning every failure into a :class:`ModelLoadError` that says what to do."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from thinkrank.engines.base import GenerationRequest
from thinkrank.errors import InvalidInputError, MissingExtraError, ModelLoadError, require
from thinkrank.hub import describe_local, local_files_only, looks_like_path

DEFAULT_MODEL = "jhu-clsp/rank1-7b"
"""The released Rank1 checkpoint used when no model is given (Qwen2.5-7B base + Rank1 SFT)."""


@dataclass(frozen=True)
class ModelRef:
    """Where a model comes from. ``source`` is a hub id or a directory; ``gguf_file`` a file in it;
    ``adapter`` a PEFT adapter directory to apply on top of ``source``."""

    source: str
    gguf_file: str | None = None
    adapter: str | None = None

    @property
    def is_local(self) -> bool:
        return Path(self.source).exists()

    @property
    def display(self) -> str:
        name = f"{self.source}/{self.gguf_file}" if self.gguf_file else self.source
        return f"{name}+{self.adapter}" if self.adapter else name


def resolve_model(model: str | os.PathLike[str]) -> ModelRef:
    """Classify ``model``: a ``.gguf`` file, a local model directory, a PEFT adapter directory
    (its base read from ``adapter_config.json``), or a hub id.

    Raises:
        ModelLoadError: a path that looks local but does not exist, or is not a model.
    """
    text = str(model)
    path = Path(text).expanduser()
    if text.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}")
        return ModelRef(str(path.parent), gguf_file=path.name)
    if path.is_dir():
        adapter_cfg = path / "adapter_config.json"
        if adapter_cfg.exists() and not (path / "config.json").exists():
            base = json.loads(adapter_cfg.read_text()).get("base_model_name_or_path")
            if not base:
                raise ModelLoadError(f"{adapter_cfg} names no base_model_name_or_path; merge the adapter first")
            return ModelRef(resolve_model(base).source, adapter=str(path))
        if not (path / "config.json").exists():
            ggufs = sorted(path.glob("*.gguf"))
            if len(ggufs) == 1:
                return ModelRef(str(path), gguf_file=ggufs[0].name)
            raise ModelLoadError(
                f"{path} is a directory without config.json (and not exactly one .gguf file); "
                "point --model at a transformers model directory, a .gguf file or a hub id"
            )
        problem = describe_local(path)
        if problem:
            raise ModelLoadError(f"model directory {path} cannot be loaded: {problem}")
        return ModelRef(str(path))
    if path.is_file():
        raise ModelLoadError(
            f"{path} is a file but not a .gguf model; point --model at a model directory (with config.json), "
            "a .gguf file or a hub id"
        )
    if looks_like_path(text):
        raise ModelLoadError(f"model path not found: {text}")
    return ModelRef(text)


class HFTokenizer:
    """Adapter giving a transformers tokenizer the :class:`~thinkrank.engines.base.Tokenizer`
    protocol: ``encode`` never adds special tokens (prompts get them once, at the front).
    ``model_name`` names the model in errors. Every engine with a local tokenizer renders chat
    messages here, so they all give the model the same bytes."""

    def __init__(self, tokenizer: Any, model_name: str = "") -> None:
        self.hf = tokenizer
        self.model_name = model_name

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False)

    def decode(self, ids: Sequence[int]) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=False)

    def encode_prompt(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=True)

    def apply_chat_template(self, messages: Sequence[dict[str, str]]) -> str:
        """``messages`` through the model's chat template, ready for the assistant's turn.

        Raises:
            InvalidInputError: the tokenizer has no chat template.
        """
        if not getattr(self.hf, "chat_template", None):
            raise InvalidInputError(
                f"model {self.model_name!r} has no chat template; listwise reranking needs a chat model"
            )
        return self.hf.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)

    def prompt_text(self, request: GenerationRequest) -> str:
        """The text ``request`` stands for: its ``prompt``, or its ``messages`` through the chat
        template followed by its ``assistant_prefix``."""
        if request.messages is None:
            return request.prompt
        return self.apply_chat_template(request.messages) + request.assistant_prefix


def _hub_options(ref: ModelRef) -> dict[str, Any]:
    """``local_files_only`` for a hub id the hub cannot serve now (fails fast when not cached)."""
    if ref.is_local:
        return {}
    return {"local_files_only": True} if local_files_only(ref.source) else {}


def _hub_hint(ref: ModelRef, exc: Exception) -> ModelLoadError:
    detail = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    if ref.is_local:
        return ModelLoadError(f"could not load the local model {ref.display!r} ({detail}); check that it is a "
                              "complete transformers model directory or a .gguf file")
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    how = (
        "HF_HUB_OFFLINE=1 is set and the model is not in the local cache"
        if offline
        else "the Hugging Face hub could not be reached or has no such model"
    )
    return ModelLoadError(
        f"could not load model {ref.display!r}: {how} ({detail}) "
        "Pass a local model directory or .gguf file, or download it first on a machine with "
        f"internet (`hf download {ref.source}`) and copy the cache."
    )


def load_tokenizer(ref: ModelRef) -> Any:
    """The model's tokenizer. Works without torch, except from a ``.gguf`` file (transformers reads
    GGUF with torch): that raises :class:`MissingExtraError` naming ``thinkrank[hf]``."""
    if ref.gguf_file:
        _require_gguf_reader(ref)
    from transformers import AutoTokenizer

    kwargs: dict[str, Any] = {"gguf_file": ref.gguf_file} if ref.gguf_file else {}
    # An adapter trained with added tokens (<think>, </think>) saves its tokenizer: use that one.
    source = ref.adapter if ref.adapter and _has_tokenizer(Path(ref.adapter)) else ref.source
    if source != ref.source:
        kwargs = {}
    else:
        kwargs.update(_hub_options(ref))
    try:
        tok = AutoTokenizer.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise _hub_hint(ref, exc) from exc
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(ref: ModelRef, *, device: str, dtype: Any, vocab_size: int | None = None) -> Any:
    """Load the model for inference on ``device`` (weights in ``dtype``), adapter applied.

    ``vocab_size``: the length of the tokenizer in use; an adapter trained with added tokens
    needs the base's embedding table grown to it before the adapter loads."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": dtype}
    if ref.gguf_file:
        kwargs["gguf_file"] = ref.gguf_file
    kwargs.update(_hub_options(ref))
    try:
        model = AutoModelForCausalLM.from_pretrained(ref.source, **kwargs)
    except (OSError, ValueError) as exc:
        raise _hub_hint(ref, exc) from exc
    except ImportError as exc:  # a quantized checkpoint whose loader is not installed
        from thinkrank.engines.quantized import quantized_load_error

        raise quantized_load_error(ref.source, ref.display, exc) from exc
    if ref.adapter:
        peft = require("peft", "train")
        if vocab_size is not None and vocab_size > model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(vocab_size, mean_resizing=False)
        model = peft.PeftModel.from_pretrained(model, ref.adapter).merge_and_unload()
    return model.to(device).eval()


def _require_gguf_reader(ref: ModelRef) -> None:
    import importlib.util

    for module in ("torch", "gguf"):
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(
                f"reading the tokenizer of {ref.display} from a .gguf file needs {module}; install it with "
                'pip install "thinkrank[hf]", or point --model/--tokenizer at a tokenizer directory instead'
            )


def _has_tokenizer(folder: Path) -> bool:
    return (folder / "tokenizer_config.json").exists()
