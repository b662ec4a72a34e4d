"""Let llm-compressor's AWQ run on a machine without an accelerator.

llm-compressor (checked up to 0.14.0.1) pins the cached layer inputs in page-locked memory
before each AWQ grid search, to speed up host-to-GPU copies
(``IntermediatesCache.pin_memory``, called from ``AWQModifier._apply_smoothing``). On a
CPU-only PyTorch, ``Tensor.pin_memory()`` raises ``RuntimeError: Cannot access accelerator
device when none is available.``, and no option of ``oneshot`` or ``AWQModifier`` avoids the
call (``offload_device=None`` keeps the tensors on the CPU, where they are pinned all the same).
Pinning only ever helps copies to an accelerator, so without one skipping it changes nothing
but the crash.

:func:`cpu_pinning_disabled` does exactly that, only while it is active and only when no
accelerator is available. ``tests/test_quantize.py::test_upstream_still_pins_on_cpu`` fails
once upstream stops pinning on CPU: then delete this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


def needs_cpu_shim() -> bool:
    """True when no accelerator is available, so pinning memory would raise."""
    import torch

    return not torch.accelerator.is_available()


@contextmanager
def cpu_pinning_disabled() -> Iterator[bool]:
    """Make ``IntermediatesCache.pin_memory`` a no-op while active, when there is no accelerator.

    Yields whether the shim is in place (False on a machine with an accelerator)."""
    if not needs_cpu_shim():
        yield False
        return
    from llmcompressor.pipelines.cache import IntermediatesCache

    original = IntermediatesCache.__dict__["pin_memory"]
    IntermediatesCache.pin_memory = _no_pinning  # type: ignore[method-assign]
    try:
        yield True
    finally:
        IntermediatesCache.pin_memory = original  # type: ignore[method-assign]


def _no_pinning(self: object, batch_index: int, input_names: list[str] | None = None) -> None:
    """Pinned memory only speeds up copies to an accelerator; there is none."""
