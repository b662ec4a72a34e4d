"""The built-in engine: Hugging Face transformers on CPU or GPU.

Generation is a small batched decode loop rather than ``model.generate`` because Rank1 needs
one thing ``generate`` does not give: the exact answer distribution at the position *after*
``</think>``. The loop keeps a finished row for one more step, so that distribution comes from
the KV cache instead of a second pass over prompt and chain. Requests are sorted by length and
left-padded; finished rows leave the batch (and the cache) so long chains don't drag short ones.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from thinkrank.engines.base import Generation, GenerationRequest, Progress
from thinkrank.engines.loading import ModelRef, load_causal_lm, load_tokenizer, resolve_model
from thinkrank.errors import InvalidInputError, require


class HFTokenizer:
    """Adapter giving a transformers tokenizer the :class:`~thinkrank.engines.base.Tokenizer`
    protocol: ``encode`` never adds special tokens (prompts get them once, at the front)."""

    def __init__(self, tokenizer: Any) -> None:
        self.hf = tokenizer

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False)

    def decode(self, ids: Sequence[int]) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=False)

    def encode_prompt(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=True)


@dataclass
class _Row:
    """Decoding state of one request inside a batch."""

    request: GenerationRequest
    prompt_ids: list[int]
    generator: Any
    window: int
    out: list[int] = field(default_factory=list)
    result: Generation | None = None
    awaiting_answer: bool = False  # stop string ended on a token boundary: read the next step's logits
    stop_at: int = -1  # character offset of the stop string in the decoded continuation


class TransformersEngine:
    """Engine over a transformers causal LM.

    Args:
        model: hub id, local directory, ``.gguf`` file, or PEFT adapter directory; or an already
            loaded ``PreTrainedModel`` (then pass ``tokenizer``).
        device: ``"cuda"``, ``"cpu"``, … (default: CUDA when available).
        dtype: torch dtype name; default bfloat16 on GPU, float32 on CPU.
        batch_size: most sequences decoded together; ``max_batch_tokens`` caps padded tokens.

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
    ) -> None:
        torch = require("torch", "hf")  # the core installs without torch; local models need thinkrank[hf]

        self._torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = getattr(torch, dtype) if dtype else (
            torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        )
        if isinstance(model, (str, os.PathLike)):
            ref: ModelRef = resolve_model(model)
            self.model_name = ref.display
            hf_tok = tokenizer or load_tokenizer(ref)
            self.model = load_causal_lm(ref, device=self.device, dtype=torch_dtype, vocab_size=len(hf_tok))
        else:
            if tokenizer is None:
                raise InvalidInputError("a loaded model needs its tokenizer: TransformersEngine(model, tokenizer=tok)")
            self.model_name = getattr(model.config, "_name_or_path", type(model).__name__)
            self.model, hf_tok = model.to(self.device).eval(), tokenizer
        if hf_tok.pad_token_id is None:
            hf_tok.pad_token = hf_tok.eos_token
        self._tok = HFTokenizer(hf_tok)
        self.batch_size = batch_size or (32 if self.device.startswith("cuda") else 8)
        self.max_batch_tokens = max_batch_tokens
        eos = self.model.generation_config.eos_token_id if self.model.generation_config else None
        eos = eos if isinstance(eos, list) else [eos]
        self._eos = {e for e in eos + [hf_tok.eos_token_id] if e is not None}

    @property
    def tokenizer(self) -> HFTokenizer:
        return self._tok

    def apply_chat_template(self, messages: Sequence[dict[str, str]]) -> str:
        if not getattr(self._tok.hf, "chat_template", None):
            raise InvalidInputError(
                f"model {self.model_name!r} has no chat template; listwise reranking needs a chat model"
            )
        return self._tok.hf.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)

    # ---- batching -------------------------------------------------------------------------
    def _batches(self, lengths: Sequence[int], budget_extra: Sequence[int]) -> list[list[int]]:
        """Indices grouped longest-first so rows in a batch pad little, within both caps."""
        order = sorted(range(len(lengths)), key=lambda i: -(lengths[i] + budget_extra[i]))
        batches: list[list[int]] = []
        for i in order:
            cur = batches[-1] if batches else None
            width = lengths[cur[0]] + budget_extra[cur[0]] if cur else 0
            if cur and len(cur) < self.batch_size and width * (len(cur) + 1) <= self.max_batch_tokens:
                cur.append(i)
            else:
                batches.append([i])
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
            past_key_values=cache, use_cache=cache is not None, logits_to_keep=1,
        )
        return out.logits[:, -1, :].float()

    # ---- next-token scoring ---------------------------------------------------------------
    def next_token_logprobs(
        self, prompts: Sequence[str], token_ids: Sequence[int], progress: Progress | None = None
    ) -> list[dict[int, float]]:
        torch = self._torch
        encoded = [self._tok.encode_prompt(p) for p in prompts]
        results: list[dict[int, float]] = [{} for _ in prompts]
        ids_t = torch.tensor(list(token_ids), dtype=torch.long)
        with torch.inference_mode():
            for batch in self._batches([len(e) for e in encoded], [0] * len(encoded)):
                ids, mask = self._left_pad([encoded[i] for i in batch])
                logprobs = torch.log_softmax(self._forward(ids, mask), dim=-1)[:, ids_t.to(self.device)].cpu()
                for r, i in enumerate(batch):
                    results[i] = {t: float(v) for t, v in zip(token_ids, logprobs[r].tolist())}
                if progress:
                    progress(len(batch))
        return results

    # ---- generation -----------------------------------------------------------------------
    def generate(
        self, requests: Sequence[GenerationRequest], progress: Progress | None = None
    ) -> list[Generation]:
        torch = self._torch
        rows = [self._new_row(r) for r in requests]
        with torch.inference_mode():
            for batch in self._batches([len(r.prompt_ids) for r in rows], [r.request.max_tokens for r in rows]):
                self._decode_batch([rows[i] for i in batch])
                if progress:
                    progress(len(batch))
        return [r.result for r in rows]  # type: ignore[misc]

    def _new_row(self, request: GenerationRequest) -> _Row:
        if request.max_tokens < 0:
            raise InvalidInputError(f"max_tokens must be >= 0, got {request.max_tokens}")
        generator = None
        if request.temperature > 0:
            generator = self._torch.Generator(device=self.device)
            generator.manual_seed(request.seed if request.seed is not None else self._torch.seed())
        window = max((len(self._tok.encode(s)) for s in request.stop), default=0) + 2
        return _Row(request, self._tok.encode_prompt(request.prompt), generator, window)

    def _decode_batch(self, rows: list[_Row]) -> None:
        from transformers import DynamicCache

        torch = self._torch
        ids, mask = self._left_pad([r.prompt_ids for r in rows])
        cache = DynamicCache()
        logits = self._forward(ids, mask, cache)
        live = list(range(len(rows)))  # batch position -> index into rows
        while live:
            for pos, idx in enumerate(live):
                row = rows[idx]
                if row.awaiting_answer:
                    self._read_answer(row, logits[pos])
                    continue
                if row.request.max_tokens == 0:
                    self._finish(row, "length")
                    continue
                token = self._pick(logits[pos], row)
                row.out.append(token)
                self._check_stop(row, token)
                if row.result is None and not row.awaiting_answer and len(row.out) >= row.request.max_tokens:
                    self._finish(row, "length")
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

    def _pick(self, logits: Any, row: _Row) -> int:
        torch = self._torch
        if row.generator is None:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / row.request.temperature, dim=-1)
        return int(torch.multinomial(probs, 1, generator=row.generator))

    def _check_stop(self, row: _Row, token: int) -> None:
        req = row.request
        if token in self._eos:
            self._finish(row, "eos", row.out[:-1])
            return
        if not req.stop:
            return
        tail = self._tok.decode(row.out[-row.window:])
        if not any(s in tail for s in req.stop):
            return
        text = self._tok.decode(row.out)
        cut, stop = min((text.find(s), s) for s in req.stop if s in text)
        boundary = cut + len(stop) == len(text)
        row.result = Generation(text[:cut], "stop", len(row.out), len(row.prompt_ids), list(row.out))
        if boundary and req.answer_token_ids:
            row.result = None
            row.awaiting_answer = True
            row.stop_at = cut

    def _read_answer(self, row: _Row, logits: Any) -> None:
        logprobs = self._torch.log_softmax(logits, dim=-1)
        ids = row.request.answer_token_ids
        answer = {t: float(logprobs[t]) for t in ids}
        text = self._tok.decode(row.out)[: row.stop_at]
        row.result = Generation(text, "stop", len(row.out), len(row.prompt_ids), list(row.out), answer)
        row.awaiting_answer = False

    def _finish(self, row: _Row, reason: str, ids: list[int] | None = None) -> None:
        ids = row.out if ids is None else ids
        row.result = Generation(self._tok.decode(ids), reason, len(row.out), len(row.prompt_ids), list(row.out))
