"""Fixed-shape decoding for the transformers engine: static KV buffers and an optional
``torch.compile``-d (on CUDA: CUDA-graph) decode step.

The default loop (:meth:`thinkrank.engines.transformers.TransformersEngine.generate`) grows its ``DynamicCache`` by one
column per step and drops finished rows, so no two steps have the same shapes: right for eager
execution, useless for CUDA graphs, which replay one recorded shape. Here:

* the prefill is unchanged (``DynamicCache``, shared query prefix, left padding); its keys and
  values are then copied into per-layer buffers ``[batch, heads, width, head_dim]`` with
  ``width`` = the call's longest prompt + budget, rounded up to :data:`WIDTH_STEP`, so every
  call of similar size reuses the same buffers (and compiled graphs);
* each step feeds one token per row and writes its keys/values at one column (a tensor, so the
  step has no Python-visible position), sets that column in a fixed-width attention mask, and
  advances the rows' positions, all in place: the step's inputs are the token ids only;
* a finished row cannot leave a fixed-shape batch, so it stays as a dead row (fed padding,
  ignored) until the live rows fit in half the batch; then they are copied into the buffers of
  the next power of two at or above their count. A batch of ``B`` rows thus runs at most
  ``log2(B) + 2`` shapes, which bounds recompilations and recorded CUDA graphs;
* chains that end without their answer are closed exactly as in the default loop, by cutting
  their row out of the fixed buffers (:func:`thinkrank.engines.kv.cut_row`).

The token-level logic (stop strings on token ids, budgets, sampling, reading answers, closing
chains) is the one both loops share (:class:`thinkrank.engines.decoding.Stepper`): both give the
same generations, up to float rounding of attention over a wider (masked) window.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from thinkrank.engines import kv

if TYPE_CHECKING:
    from thinkrank.engines.decoding import Row, Stepper

WIDTH_STEP = 64
"""Buffer widths are rounded up to a multiple of this, so calls of similar length share buffers
and compiled graphs instead of recompiling for every prompt length."""

_RECOMPILE_LIMIT = 64  # shapes per compiled step: batch sizes x widths, more than dynamo's default 8


def default_compile_options(device: str) -> dict[str, Any]:
    """``torch.compile`` keyword arguments for ``compile=True``: CUDA graphs on CUDA (the
    per-step launch overhead is what a static decode step removes); inductor's default elsewhere."""
    return {"mode": "reduce-overhead"} if str(device).startswith("cuda") else {}


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def _fixed_layer_class() -> type:
    from transformers.cache_utils import StaticLayer

    class FixedLayer(StaticLayer):  # type: ignore[misc,valid-type]
        """A static layer over given buffers that writes each step at a shared column tensor
        (transformers' own ``StaticLayer`` counts columns itself, one count for the batch; here
        the column is ours, reset per batch and copied on compaction)."""

        _layer_type = None  # never registered in transformers' layer-type mappings

        def __init__(self, keys: Any, values: Any, column: Any) -> None:
            super().__init__(max_cache_len=keys.shape[2])
            self.keys, self.values, self.column = keys, values, column
            self.device = keys.device
            self.batch_size, self.num_heads = keys.shape[:2]
            self.k_head_dim, self.v_head_dim = keys.shape[-1], values.shape[-1]
            self.is_initialized = True

        def lazy_initialization(self, key_states: Any, value_states: Any) -> None:  # buffers are given
            return None

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            self.keys.index_copy_(2, self.column, key_states)
            self.values.index_copy_(2, self.column, value_states)
            return self.keys, self.values

    return FixedLayer


@dataclass
class Slot:
    """Fixed buffers for one batch size and width: per-layer keys/values, the attention mask
    (1 where a real token sits), each row's next position, and the column the next step writes."""

    layers: kv.KV
    mask: Any
    positions: Any
    column: Any
    cache: Any

    @property
    def batch(self) -> int:
        return int(self.mask.shape[0])

    def load(self, layers: kv.KV, mask: Any) -> None:
        """Fill from a prefilled batch: ``layers`` and ``mask`` ``[batch, width]`` of the prefill."""
        width = mask.shape[1]
        for (k, v), (pk, pv) in zip(self.layers, layers):
            k[:, :, :width].copy_(pk)
            v[:, :, :width].copy_(pv)
        self.mask.zero_()
        self.mask[:, :width].copy_(mask)
        self.positions.copy_(mask.sum(-1, keepdim=True))
        self.column.fill_(width)

    def take(self, source: Slot, rows: Any) -> None:
        """Fill with rows ``rows`` (a device index tensor of length ``batch``) of ``source``."""
        for (k, v), (sk, sv) in zip(self.layers, source.layers):
            k.copy_(sk.index_select(0, rows))
            v.copy_(sv.index_select(0, rows))
        self.mask.copy_(source.mask.index_select(0, rows))
        self.positions.copy_(source.positions.index_select(0, rows))
        self.column.copy_(source.column)


class StaticDecoder:
    """Decodes a prefilled batch with fixed shapes (see the module docstring).

    ``compile_options``: None decodes eagerly; a dict compiles the step with
    ``torch.compile(**compile_options)``. Buffers are kept between calls (per batch size, for
    the current width) so compiled graphs are reused; a longer call widens and reallocates them.
    """

    def __init__(self, model: Any, device: str, cache_arg: str, compile_options: dict[str, Any] | None) -> None:
        import torch

        self._torch = torch
        self.model = model
        self.device = device
        self._cache_arg = cache_arg
        self.width = 0
        self._slots: dict[int, Slot] = {}
        self.compiled = compile_options is not None
        self.shapes: set[tuple[int, int]] = set()  # (batch, width) of every step run: for tests and reports
        step = self._step
        self._run = torch.compile(step, **compile_options) if compile_options is not None else step
        options = compile_options or {}
        self._cuda_graphs = self.compiled and str(device).startswith("cuda") and (
            options.get("mode") in ("reduce-overhead", "max-autotune") or options.get("backend") == "cudagraphs")

    # ---- buffers ----------------------------------------------------------------------------
    def reserve(self, tokens: int) -> None:
        """Make room for rows of up to ``tokens`` (prompt + budget) tokens."""
        width = _round_up(tokens + 1, WIDTH_STEP)
        if width > self.width:
            self._slots.clear()  # the old width's buffers (and graphs) are of no further use
            self.width = width

    def _slot(self, batch: int, like: kv.KV, mask: Any) -> Slot:
        slot = self._slots.get(batch)
        if slot is not None:
            return slot
        torch = self._torch
        column = torch.zeros(1, dtype=torch.long, device=self.device)
        layers = []
        for keys, values in like:
            k = keys.new_zeros((batch, keys.shape[1], self.width, keys.shape[3]))
            v = values.new_zeros((batch, values.shape[1], self.width, values.shape[3]))
            layers.append((k, v))
        slot_mask = mask.new_zeros((batch, self.width))
        positions = mask.new_zeros((batch, 1))
        if self.compiled:  # in-place updates of fixed addresses: what lets CUDA graphs replay them
            for t in [column, slot_mask, positions, *(x for pair in layers for x in pair)]:
                torch._dynamo.mark_static_address(t)
        from transformers.cache_utils import Cache

        fixed = _fixed_layer_class()
        cache = Cache(layers=[fixed(k, v, column) for k, v in layers])
        slot = Slot(layers, slot_mask, positions, column, cache)
        self._slots[batch] = slot
        return slot

    # ---- one step ---------------------------------------------------------------------------
    def _step(self, ids: Any, cache: Any, mask: Any, positions: Any, column: Any) -> tuple[Any, Any]:
        """Feed ``ids`` ``[batch, 1]`` at ``column``; return the next-token logits and their argmax.
        Everything it changes (the mask, positions, column, keys/values) is changed in place."""
        torch = self._torch
        mask.index_fill_(1, column, 1)
        dtype = self.model.dtype
        # An additive 4D mask is used as it is by every attention implementation that takes a
        # mask (eager, sdpa), so transformers' mask construction is skipped.
        bias = (1 - mask[:, None, None, :]).to(dtype) * torch.finfo(dtype).min
        out = self.model(input_ids=ids, attention_mask=bias, position_ids=positions,
                         **{self._cache_arg: cache}, use_cache=True, logits_to_keep=1)
        positions.add_(1)
        column.add_(1)
        logits = out.logits[:, -1, :].float()
        return logits, logits.argmax(dim=-1)

    def _call(self, slot: Slot, ids: list[int]) -> tuple[Any, Any]:
        torch = self._torch
        self.shapes.add((slot.batch, self.width))
        tokens = torch.tensor(ids, dtype=torch.long, device=self.device).unsqueeze(1)
        if self._cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs are consumed
        with self._recompile_limit():
            return self._run(tokens, slot.cache, slot.mask, slot.positions, slot.column)

    def _recompile_limit(self) -> contextlib.AbstractContextManager[Any]:
        if not self.compiled:
            return contextlib.nullcontext()
        import torch._dynamo.config as dynamo_config

        name = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"
        return dynamo_config.patch(**{name: max(getattr(dynamo_config, name), _RECOMPILE_LIMIT)})

    # ---- the loop ---------------------------------------------------------------------------
    def decode(self, step: Stepper, rows: list[Row], prefill: kv.KV, mask: Any, logits: Any) -> None:
        """Decode ``rows`` from their prefill (keys/values ``prefill``, ``mask``, first ``logits``)
        to the end. ``prefill`` is emptied once copied, so its memory is freed during decoding."""
        torch = self._torch
        budget = max(r.request.max_tokens for r in rows)
        self.reserve(mask.shape[1] + budget)  # a shared-prefix layout can be wider than any prompt
        slot = self._slot(len(rows), prefill, mask)
        slot.load(prefill, mask)
        prefill.clear()
        live: list[int | None] = list(range(len(rows)))  # batch position -> row index, None: dead row
        greedy = logits.argmax(dim=-1).tolist()
        pad = step.pad_id
        while True:
            step.advance(rows, live, logits, greedy)
            step.close_from_cache(rows, live, None, slot.mask, slot.layers)
            live = [i if i is not None and rows[i].result is None else None for i in live]
            alive = [pos for pos, i in enumerate(live) if i is not None]
            if not alive:
                return
            if 2 * len(alive) <= slot.batch and slot.batch > 1:  # compact into the next power of two
                size = 1 << (len(alive) - 1).bit_length()
                index = alive + [alive[0]] * (size - len(alive))  # filler rows: copies of a live one
                small = self._slot(size, slot.layers, slot.mask)
                small.take(slot, torch.tensor(index, device=self.device))
                slot, live = small, [live[p] for p in alive] + [None] * (size - len(alive))
            ids = [rows[i].out[-1] if i is not None else pad for i in live]
            logits, top = self._call(slot, ids)
            greedy = top.tolist()  # the step's one device sync
