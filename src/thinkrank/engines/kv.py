"""KV-cache surgery for the transformers engine: reuse what a batch already computed.

Two reuses, both exact (the model sees the same tokens at the same positions):

* **closing a chain from its cache**: a chain cut at the budget (or ended by end-of-sequence)
  is scored as ``prompt + close(chain)``. That text is tokenised as a plain prompt would be;
  the longest common token prefix with what the cache holds (prompt + generated ids) is kept,
  everything after it is rolled back, and only the remaining tokens are fed.
* **a shared query prefix**: the tokens of a query's declared prefix (instruction + query)
  that its prompts start with are prefilled once, and their keys/values are copied in front
  of each row of the batch.

Rows of a batch sit right-aligned in the cache with masked gaps (left padding, or padding
between a shared prefix and the rest of a row); positions come from the attention mask's
running count, so a gap changes nothing. Works on caches whose layers are all plain
``DynamicLayer`` (full attention); :func:`reusable` says when that holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

KV = list[tuple[Any, Any]]
"""Per layer: keys and values, each ``[batch, heads, length, head_dim]``."""


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def shared_prefixes(keys: Sequence[str], prompts: Sequence[Sequence[int]],
                    encode: Callable[[str], Sequence[int]]) -> tuple[list[int], list[int]]:
    """Per prompt: how many of its leading tokens are the tokens of its non-empty ``key``
    (``encode(key)``, leaving at least one token of its own to feed; 0 without a key), and a
    group rank (keys in sorted order, 0 without a key) so batching can keep groups together.

    Both depend on a prompt's own key and tokens only, never on which other prompts share the
    call (also for a key used once): a call over what is left of an earlier call's prompts after
    its first batches (a resumed run judging what a killed one left) batches and prefills every
    row exactly as the full call did."""
    key_ids = {key: encode(key) for key in dict.fromkeys(keys) if key}
    lengths = [
        max(min(common_prefix(key_ids[key], prompt), len(prompt) - 1), 0) if key else 0
        for key, prompt in zip(keys, prompts)
    ]
    rank = {key: n + 1 for n, key in enumerate(sorted(key_ids))}
    return lengths, [rank.get(key, 0) for key in keys]


def reusable(cache: Any) -> bool:
    """Whether every layer of ``cache`` is a plain full-attention ``DynamicLayer`` (sliding
    windows and other layer kinds drop or transform old positions, so rows cannot be cut)."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None) or ()
    return bool(layers) and all(type(layer) is DynamicLayer and layer.keys is not None for layer in layers)


def layers_of(cache: Any) -> KV:
    return [(layer.keys, layer.values) for layer in cache.layers]


@dataclass
class Segment:
    """One row's slice of a batch cache: row ``row`` of ``kv``, columns ``[0, end)`` with
    ``mask`` (1 where a real token sits)."""

    kv: KV
    row: int
    end: int
    mask: Any


def cut_row(kv: KV, mask: Any, row: int, keep: int) -> Segment:
    """Row ``row`` of a batch cache with only its first ``keep`` real tokens (the rest rolled back)."""
    real = mask[row].nonzero().flatten()
    end = int(real[keep - 1]) + 1 if keep > 0 else 0
    return Segment(kv, row, end, mask[row, :end])


def stack(segments: Sequence[Segment], device: Any) -> tuple[Any, Any]:
    """The segments right-aligned into one new ``DynamicCache``, and its attention mask."""
    import torch
    from transformers import DynamicCache

    width = max(s.end for s in segments)
    mask = torch.zeros((len(segments), width), dtype=torch.long, device=device)
    for i, s in enumerate(segments):
        mask[i, width - s.end:] = s.mask
    layers = []
    for layer in range(len(segments[0].kv)):
        k0, v0 = segments[0].kv[layer]
        keys = k0.new_zeros((len(segments), k0.shape[1], width, k0.shape[3]))
        values = v0.new_zeros((len(segments), v0.shape[1], width, v0.shape[3]))
        for i, s in enumerate(segments):
            k, v = s.kv[layer]
            keys[i, :, width - s.end:] = k[s.row, :, : s.end]
            values[i, :, width - s.end:] = v[s.row, :, : s.end]
        layers.append((keys, values))
    return DynamicCache(ddp_cache_data=layers), mask


def right_align(seqs: Sequence[Sequence[int]], pad: int, device: Any) -> tuple[Any, Any]:
    """Token rows padded on the left to one width, and their mask."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        if s:
            ids[r, width - len(s):] = torch.tensor(list(s), dtype=torch.long)
            mask[r, width - len(s):] = 1
    return ids.to(device), mask.to(device)
