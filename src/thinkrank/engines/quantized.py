"""What a quantized checkpoint needs to load, and a clear error when that is missing.

Two formats matter for Rank1:

* ``compressed-tensors`` (what ``thinkrank quantize`` writes, llm-compressor's format): vLLM runs
  it with int4 kernels; transformers loads it with the ``compressed-tensors`` package (the
  ``quantize`` extra) and decompresses the weights to dense ones on CPU or GPU.
* ``awq`` (AutoAWQ, the released ``jhu-clsp/rank1-*-awq`` checkpoints): vLLM loads it on a GPU;
  transformers 5 needs the ``gptqmodel`` package for it, whose AWQ kernels need a GPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from thinkrank.errors import MissingExtraError, ModelLoadError

_ADVICE = {
    "compressed-tensors": (
        'it is a compressed-tensors checkpoint (e.g. from thinkrank quantize); install its loader with: '
        'pip install "thinkrank[quantize]" (or pip install compressed-tensors)'
    ),
    "awq": (
        "it is an AutoAWQ checkpoint (like jhu-clsp/rank1-*-awq): load it with the vllm engine on a GPU "
        "(--engine vllm, or vllm serve + --engine openai); the transformers engine would need the gptqmodel "
        "package and a GPU. On CPU use the unquantized model, or quantize it yourself with thinkrank quantize"
    ),
}


def quantization_method(source: str | Path) -> str | None:
    """The ``quant_method`` of a local model folder's ``config.json`` (None: not quantized or not local)."""
    config = Path(source) / "config.json"
    if not config.is_file():
        return None
    try:
        quant: Any = json.loads(config.read_text(encoding="utf-8")).get("quantization_config") or {}
    except (OSError, ValueError):
        return None
    return quant.get("quant_method") if isinstance(quant, dict) else None


def quantized_load_error(source: str | Path, display: str, exc: ImportError) -> Exception:
    """The error to raise when transformers could not import what a quantized checkpoint needs."""
    method = quantization_method(source)
    reason = " ".join(str(exc).split())
    if method in _ADVICE:
        cls = MissingExtraError if method == "compressed-tensors" else ModelLoadError
        return cls(f"could not load model {display!r}: {_ADVICE[method]} ({reason})")
    return ModelLoadError(f"could not load model {display!r}: a package it needs is missing ({reason})")
