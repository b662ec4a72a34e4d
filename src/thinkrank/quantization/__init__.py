"""Quantization: weight-only int4 (AWQ W4A16) of a Rank1 model, calibrated on Rank1 text.

    >>> from thinkrank.quantization import QuantizeConfig, quantize
    >>> result = quantize(QuantizeConfig(model="runs/rank1-7b/model", output="rank1-7b-awq"))

Needs the ``quantize`` extra (llm-compressor); names are imported lazily so torch loads only
when used. ``calibration`` builds the calibration texts, ``cpu_shim`` lets llm-compressor run
without an accelerator.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "QuantizeConfig": "runner", "QuantizeResult": "runner", "quantize": "runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"thinkrank.quantization.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'thinkrank.quantization' has no attribute {name!r}")
