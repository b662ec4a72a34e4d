"""The built-in engine: Hugging Face transformers on CPU or GPU.

Generation is a small batched decode loop rather than ``model.generate`` because Rank1 needs
one thing ``generate`` does not give: the exact answer distribution at the position *after*
``</think>``. The loop keeps a finished row for one more step, so that distribution comes from
the KV cache instead of a second pass over prompt and chain. Requests are sorted by length and
left-padded; finished rows leave the batch (and the cache) so long chains don't drag short ones.

Nothing is prefilled twice (see :mod:`thinkrank.engines.kv`): a chain that ends without its
answer read (budget, end-of-sequence) is closed from its own cache, rolled back to the longest
common token prefix with the text to score; and prompts that declare a ``shared_prefix`` (a
Rank1 query's instruction and query) have that prefix's tokens prefilled once per call; so do
``next_token_logprobs``'s prompts given ``shared_prefixes`` (reasoning off, a cascade's stage 1).

Batches are formed and prefilled the same way whatever else a call holds: a call over what is
left after an earlier call's first batches (a resumed run) repeats that call's later batches
exactly (bit for bit with the default dynamic cache; ``static_cache`` sizes its buffers per
call, so there they agree to float rounding). ``on_batch`` gets each batch's results as soon
as it is decoded.

``static_cache=True`` / ``compile=True`` decode with fixed shapes instead (after the same
prefill), so the step can be compiled into CUDA graphs: :mod:`thinkrank.engines.static_decode`.
What a step does to each request is shared by both loops: :mod:`thinkrank.engines.decoding`.
"""

from __future__ import annotations

import inspect
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from thinkrank.engines import gguf_cache, kv, static_decode
from thinkrank.engines.base import Generation, GenerationRequest, OnBatch, Progress
from thinkrank.engines.decoding import Row, Stepper
from thinkrank.engines.loading import HFTokenizer, ModelRef, load_causal_lm, load_tokenizer, resolve_model
from thinkrank.errors import InvalidInputError, require


# Config fields that hold a model's context length, in the order transformers models use them.
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


class TransformersEngine:
    """Engine over a transformers causal LM.

    Args:
        model: hub id, local directory, ``.gguf`` file, or PEFT adapter directory; or an already
            loaded ``PreTrainedModel`` (then pass ``tokenizer``).
        device: ``"cuda"``, ``"cpu"``, … (default: CUDA when available).
        dtype: torch dtype name; default bfloat16 on GPU, float32 on CPU.
        batch_size: most sequences decoded together; ``max_batch_tokens`` caps padded tokens.
        context_length: the most tokens per sequence (default: the model config's
            ``max_position_embeddings``).
        static_cache: decode with fixed-size KV buffers, so every step has the same shapes
            (see :mod:`thinkrank.engines.static_decode`); same outputs as the default loop.
        compile: also wrap the decode step in ``torch.compile`` (implies ``static_cache``); on
            CUDA with ``mode="reduce-overhead"`` (CUDA graphs). A dict is passed to
            ``torch.compile`` as keyword arguments instead of the defaults.

    Raises:
        MissingExtraError: torch is not installed (``pip install "thinkrank[hf]"``).
    """

    name = "transformers"

    def __init__(
        self,
        model: Any,
        *,
        tokenizer: Any = None,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int | None = None,
        max_batch_tokens: int = 32768,
        context_length: int | None = None,
        static_cache: bool = False,
        compile: bool | Mapping[str, Any] = False,
    ) -> None:
        from thinkrank.validation import check_int

        # Checked before the model loads: a bad batch size must not cost a model load.
        check_int("batch_size", batch_size, minimum=1, optional=True)
        check_int("max_batch_tokens", max_batch_tokens, minimum=1)
        torch = require("torch", "hf")  # the core installs without torch; local models need thinkrank[hf]

        self._torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = _torch_dtype(torch, dtype, self.device)
        if isinstance(model, (str, os.PathLike)):
            ref: ModelRef = resolve_model(model)
            self.model_name = ref.display  # the GGUF file's name, also when its converted copy is loaded
            ref = gguf_cache.converted(ref, torch_dtype)
            hf_tok = tokenizer or load_tokenizer(ref)
            self.model = load_causal_lm(ref, device=self.device, dtype=torch_dtype, vocab_size=len(hf_tok))
        else:
            if tokenizer is None:
                raise InvalidInputError("a loaded model needs its tokenizer: TransformersEngine(model, tokenizer=tok)")
            self.model_name = getattr(model.config, "_name_or_path", type(model).__name__)
            self.model, hf_tok = model.to(self.device).eval(), tokenizer
        if hf_tok.pad_token_id is None:
            hf_tok.pad_token = hf_tok.eos_token
        self._tok = HFTokenizer(hf_tok, self.model_name)
        self.batch_size = batch_size or (32 if self.device.startswith("cuda") else 8)
        self.max_batch_tokens = max_batch_tokens
        # transformers >= 5.2x names the KV cache argument `cache` and warns on every call that
        # passes the old `past_key_values`; older releases only know the old name.
        params = inspect.signature(self.model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        eos = self.model.generation_config.eos_token_id if self.model.generation_config else None
        eos = eos if isinstance(eos, list) else [eos]
        self._step = Stepper(torch, self._tok, {e for e in eos + [hf_tok.eos_token_id] if e is not None}, self.device,
                             self._forward, self.next_token_logprobs)
        if context_length is not None and context_length < 1:
            raise InvalidInputError(f"context_length must be >= 1, got {context_length}")
        config = self.model.config
        self._context_length = context_length or next(
            (v for k in _CONTEXT_KEYS if isinstance(v := getattr(config, k, None), int) and v > 0), None
        )
        self._static: static_decode.StaticDecoder | None = None
        if isinstance(compile, Mapping):  # an empty dict too: torch.compile's defaults
            options: dict[str, Any] | None = dict(compile)
        else:
            options = static_decode.default_compile_options(self.device) if compile else None
        if static_cache or options is not None:
            self._static = static_decode.StaticDecoder(self.model, self.device, self._cache_arg, options)

    @property
    def context_length(self) -> int | None:
        """The most tokens (prompt plus generated) per sequence."""
        return self._context_length

    @property
    def tokenizer(self) -> HFTokenizer:
        return self._tok

    def apply_chat_template(self, messages: Sequence[dict[str, str]]) -> str:
        return self._tok.apply_chat_template(messages)

    # ---- batching -------------------------------------------------------------------------
    def _batches(
        self, lengths: Sequence[int], budget_extra: Sequence[int], groups: Sequence[int] | None = None
    ) -> list[list[int]]:
        """Indices grouped longest-first so rows in a batch pad little, within both caps; rows
        of one prefix group (``groups``) stay together so their shared prefix is reused."""
        need = [n + e for n, e in zip(lengths, budget_extra)]
        rank = groups or [0] * len(lengths)
        order = sorted(range(len(lengths)), key=lambda i: (rank[i], -need[i]))
        batches: list[list[int]] = []
        width = 0
        for i in order:
            cur = batches[-1] if batches else None
            grown = max(width, need[i])
            if cur and len(cur) < self.batch_size and grown * (len(cur) + 1) <= self.max_batch_tokens:
                cur.append(i)
                width = grown
            else:
                batches.append([i])
                width = need[i]
        return batches

    def _left_pad(self, seqs: Sequence[Sequence[int]]) -> tuple[Any, Any]:
        torch = self._torch
        width = max(len(s) for s in seqs)
        pad = self._tok.hf.pad_token_id
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[r, width - len(s):] = 1
        return ids.to(self.device), mask.to(self.device)

    def _forward(self, ids: Any, mask: Any, cache: Any = None) -> Any:
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1]:]
        out = self.model(
            input_ids=ids, attention_mask=mask, position_ids=positions,
            **{self._cache_arg: cache}, use_cache=cache is not None, logits_to_keep=1,
        )
        return out.logits[:, -1, :].float()

    # ---- next-token scoring ---------------------------------------------------------------
    def next_token_logprobs(
        self, prompts: Sequence[str], token_ids: Sequence[int], progress: Progress | None = None, *,
        on_batch: OnBatch | None = None, shared_prefixes: Sequence[str] | None = None,
    ) -> list[dict[int, float]]:
        """Exact log-probs of ``token_ids`` as the next token after each prompt.

        ``shared_prefixes`` (one per prompt, ``""`` for none): as ``GenerationRequest.shared_prefix``,
        each prefix's tokens are prefilled once per call (per prefix text and token count, so a
        prompt's result does not depend on the other prompts of the call) and only the rest of
        each prompt is fed; the same logits as prefilling prompts whole, to float rounding.

        Raises:
            InvalidInputError: ``shared_prefixes`` does not have one entry per prompt.
        """
        torch = self._torch
        keys = [""] * len(prompts) if shared_prefixes is None else list(shared_prefixes)
        if len(keys) != len(prompts):
            raise InvalidInputError(f"shared_prefixes has {len(keys)} entries for {len(prompts)} prompts; give one per "
                                    "prompt (\"\" for a prompt without one)")
        encoded = [self._tok.encode_prompt(p) for p in prompts]
        lengths, groups = kv.shared_prefixes(keys, encoded, self._tok.encode_prompt)
        # Rows as generation has them (no tokens to write), so scoring reuses `_prefill`'s prefix cache.
        rows = [Row(GenerationRequest(p, 0, shared_prefix=k), p, e, None, 0, prefix=n)
                for p, k, e, n in zip(prompts, keys, encoded, lengths)]
        left = Counter((k, n) for k, n in zip(keys, lengths) if n)  # rows still to score per cached prefix
        prefixes: dict[tuple[str, int], kv.KV] = {}
        results: list[dict[int, float]] = [{} for _ in prompts]
        ids_t = torch.tensor(list(token_ids), dtype=torch.long, device=self.device)
        with torch.inference_mode():
            for batch in self._batches([len(e) for e in encoded], [0] * len(encoded), groups):
                sub = [rows[i] for i in batch]
                if any(r.prefix for r in sub):
                    logits = self._prefill(sub, prefixes)[2]
                else:
                    ids, mask = self._left_pad([r.prompt_ids for r in sub])
                    logits = self._forward(ids, mask)
                logprobs = torch.log_softmax(logits, dim=-1)[:, ids_t].cpu()
                for r, i in enumerate(batch):
                    results[i] = {t: float(v) for t, v in zip(token_ids, logprobs[r].tolist())}
                for key in ((keys[i], lengths[i]) for i in batch if lengths[i]):
                    left[key] -= 1
                    if left[key] == 0:  # no later row needs this prefix (groups are batched together)
                        prefixes.pop(key, None)
                if on_batch:
                    on_batch(list(batch), [results[i] for i in batch])
                if progress:
                    progress(len(batch))
        return results

    # ---- generation -----------------------------------------------------------------------
    def generate(
        self, requests: Sequence[GenerationRequest], progress: Progress | None = None, *,
        on_batch: OnBatch | None = None,
    ) -> list[Generation]:
        torch = self._torch
        rows = [self._step.new_row(r) for r in requests]
        lengths, groups = kv.shared_prefixes([r.request.shared_prefix for r in rows], [r.prompt_ids for r in rows],
                                             self._tok.encode_prompt)
        for row, n in zip(rows, lengths):
            row.prefix = n
        prefixes: dict[tuple[str, int], kv.KV] = {}  # (shared prefix, its tokens) -> keys/values, for this call
        with torch.inference_mode():
            lengths, budgets = [len(r.prompt_ids) for r in rows], [r.request.max_tokens for r in rows]
            if self._static is not None and rows:
                self._static.reserve(max(n + b for n, b in zip(lengths, budgets)))
            for batch in self._batches(lengths, budgets, groups):
                self._decode_batch([rows[i] for i in batch], prefixes)
                if on_batch:  # every row of the batch is complete, answer included
                    on_batch(list(batch), [rows[i].result for i in batch])
                if progress:
                    progress(len(batch))
        return [r.result for r in rows]  # type: ignore[misc]

    def _prefill(self, rows: list[Row], prefixes: dict[tuple[str, int], kv.KV]) -> tuple[Any, Any, Any]:
        """The batch's cache, mask and next-token logits after its prompts; shared prefixes
        come from ``prefixes`` (computed on first use) and only the rest of each row is fed."""
        from transformers import DynamicCache

        torch = self._torch
        for row in rows:
            key = (row.request.shared_prefix, row.prefix)
            if row.prefix and key not in prefixes:
                cache = DynamicCache()
                self._forward(torch.tensor([row.prompt_ids[: row.prefix]], device=self.device),
                              torch.ones((1, row.prefix), dtype=torch.long, device=self.device), cache)
                if not kv.reusable(cache):  # e.g. sliding-window layers: prefill whole prompts
                    for r in rows:
                        r.prefix = 0
                    break
                prefixes[key] = kv.layers_of(cache)
        if not any(r.prefix for r in rows):
            ids, mask = self._left_pad([r.prompt_ids for r in rows])
            cache = DynamicCache()
            return cache, mask, self._forward(ids, mask, cache)
        some = next(prefixes[(r.request.shared_prefix, r.prefix)] for r in rows if r.prefix)
        ones = torch.ones(max(r.prefix for r in rows), dtype=torch.long, device=self.device)
        segments = [
            kv.Segment(prefixes[(r.request.shared_prefix, r.prefix)] if r.prefix else some, 0, r.prefix, ones[: r.prefix])
            for r in rows
        ]
        cache, head_mask = kv.stack(segments, self.device)
        ids, rest_mask = kv.right_align([r.prompt_ids[r.prefix:] for r in rows], self._tok.hf.pad_token_id, self.device)
        mask = torch.cat([head_mask, rest_mask], dim=1)
        return cache, mask, self._forward(ids, mask, cache)

    def _decode_batch(self, rows: list[Row], prefixes: dict[tuple[str, int], kv.KV]) -> None:
        torch = self._torch
        cache, mask, logits = self._prefill(rows, prefixes)
        if self._static is not None and kv.reusable(cache):  # else (e.g. sliding windows): the dynamic loop
            layers = kv.layers_of(cache)
            del cache  # the decoder empties `layers` once copied, so the prefill's keys/values are freed
            self._static.decode(self._step, rows, layers, mask, logits)
            return
        live = list(range(len(rows)))  # batch position -> index into rows
        while live:
            greedy = logits.argmax(dim=-1).tolist()  # one device sync per step, not one per row
            self._step.advance(rows, live, logits, greedy)
            self._step.close_from_cache(rows, live, cache, mask)
            keep = [pos for pos, idx in enumerate(live) if rows[idx].result is None]
            if not keep:
                break
            if len(keep) < len(live):
                keep_t = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(keep_t)
                mask = mask[keep_t]
            live = [live[p] for p in keep]
            step = torch.tensor([[rows[i].out[-1]] for i in live], device=self.device)
            mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)
            logits = self._forward(step, mask, cache)


_DTYPES = ("bfloat16", "float16", "float32")


def _torch_dtype(torch: Any, name: str | None, device: str) -> Any:
    """``None``/``auto``: bfloat16 on a GPU, float32 on CPU (a CPU with AMX or AVX512-BF16 runs
    bfloat16 several times faster, but older CPUs emulate it slowly, so it is asked for, not assumed)."""
    if name in (None, "", "auto"):
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if name not in _DTYPES:
        raise InvalidInputError(f"dtype must be auto, {', '.join(_DTYPES)}; got {name!r}")
    return getattr(torch, name)
