"""Training: LoRA SFT of a causal LM on Rank1 traces (Rank1 paper §2.3, Appendix A).

    >>> from thinkrank.training import TrainConfig, train
    >>> result = train(TrainConfig(model="Qwen/Qwen2.5-7B", data="train.jsonl", output="runs/rank1-7b"))
    >>> Rank1(model=str(result.model))   # or result.adapter: the base model plus the adapter

Needs the ``train`` extra (``peft``); names are imported lazily so torch loads only when used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": "config",
    "SFTExample": "data", "read_sft": "data", "tokenize": "data", "without_reasoning": "data",
    "TrainResult": "trainer", "train": "trainer", "latest_checkpoint": "trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"thinkrank.training.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'thinkrank.training' has no attribute {name!r}")
