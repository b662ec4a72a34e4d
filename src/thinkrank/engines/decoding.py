"""The token-level rules of the transformers engine's decode loops, shared by both of them.

The dynamic loop (:class:`thinkrank.engines.transformers.TransformersEngine`, a growing
``DynamicCache``) and the fixed-shape loop (:mod:`thinkrank.engines.static_decode`) differ
only in how they feed the model and hold keys/values. What a step means for a request is
the same and lives here: :class:`Row` (one request's decoding state) and :class:`Stepper`
(picking the next token, stop strings matched on token ids, budgets, reading an awaited
answer, and closing chains that ended without one from their own cache). So both loops give
the same generations, up to float rounding of attention over a wider (masked) window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from thinkrank.engines import kv
from thinkrank.engines.base import Generation, GenerationRequest, sampling_filters
from thinkrank.engines.loading import HFTokenizer
from thinkrank.errors import InvalidInputError

Forward = Callable[[Any, Any, Any], Any]
"""``forward(ids, mask, cache)``: the next-token logits ``[batch, vocab]`` (float) after ``ids``."""

Rescore = Callable[[list[str], tuple[int, ...]], list[dict[int, float]]]
"""``rescore(prompts, ids)``: exact next-token log-probs of ``ids`` after whole prompts."""

_CLOSE_CHUNK = 32  # rows closed together: bounds the keys/values copied out of a batch cache


@dataclass
class Row:
    """Decoding state of one request inside a batch. ``prompt`` is the text the request stands
    for (its messages through the chat template, when it has them)."""

    request: GenerationRequest
    prompt: str
    prompt_ids: list[int]
    generator: Any
    window: int
    out: list[int] = field(default_factory=list)
    result: Generation | None = None
    awaiting_answer: bool = False  # stop string ended on a token boundary: read the next step's logits
    stop_at: int = -1  # character offset of the stop string in the decoded continuation
    prefix: int = 0  # leading prompt tokens shared with its group, prefilled once
    warpers: list[Any] | None = None  # the request's sampling filters, built at its first sampled token


def filter_warpers(request: GenerationRequest) -> list[Any]:
    """transformers' own warpers for the request's top-k / top-p / min-p, in the order
    ``model.generate`` applies them after the temperature (and skipping what it skips), so a
    sampled token is drawn from the same distribution as there."""
    filters = sampling_filters(request)
    if not filters:
        return []
    from transformers.generation.logits_process import MinPLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    warpers: list[Any] = []
    if "top_k" in filters:
        warpers.append(TopKLogitsWarper(top_k=int(filters["top_k"])))
    if filters.get("top_p", 1.0) < 1.0:
        warpers.append(TopPLogitsWarper(top_p=float(filters["top_p"])))
    if "min_p" in filters:
        warpers.append(MinPLogitsWarper(min_p=float(filters["min_p"])))
    return warpers


class Stepper:
    """What one decode step does to every live row of a batch, whatever holds its cache.

    Args:
        torch: the torch module.
        tokenizer: the engine's tokenizer.
        eos: the end-of-sequence token ids.
        device: where tensors go.
        forward: the engine's forward pass (see :data:`Forward`).
        rescore: scores closed chains from scratch where a cache cannot be cut (:data:`Rescore`).
    """

    def __init__(self, torch: Any, tokenizer: HFTokenizer, eos: set[int], device: str, forward: Forward,
                 rescore: Rescore) -> None:
        self._torch = torch
        self.tokenizer = tokenizer
        self.eos = eos
        self.device = device
        self._forward = forward
        self._rescore = rescore
        self._triggers: dict[tuple[str, ...], frozenset[int] | None] = {}

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.hf.pad_token_id)

    def new_row(self, request: GenerationRequest) -> Row:
        """The row of ``request``, its prompt rendered and encoded, its sampler seeded.

        Raises:
            InvalidInputError: a negative budget, or messages for a model without a chat template.
        """
        if request.max_tokens < 0:
            raise InvalidInputError(f"max_tokens must be >= 0, got {request.max_tokens}")
        generator = None
        if request.temperature > 0:
            generator = self._torch.Generator(device=self.device)
            generator.manual_seed(request.seed if request.seed is not None else self._torch.seed())
        window = max((len(self.tokenizer.encode(s)) for s in request.stop), default=0) + 2
        prompt = self.tokenizer.prompt_text(request)
        return Row(request, prompt, self.tokenizer.encode_prompt(prompt), generator, window)

    def advance(self, rows: list[Row], live: Sequence[int | None], logits: Any, greedy: list[int]) -> None:
        """One step for every live row: read an awaited answer, or append the next token and
        check stop strings and the budget. ``live`` maps batch positions to rows (None: a dead row)."""
        for pos, idx in enumerate(live):
            if idx is None:
                continue
            row = rows[idx]
            if row.awaiting_answer:
                self._read_answer(row, logits[pos])
                continue
            if row.request.max_tokens == 0:
                self._finish(row, "length")
                continue
            token = greedy[pos] if row.generator is None else self._pick(logits[pos], row)
            row.out.append(token)
            self._check_stop(row, token)
            if row.result is None and not row.awaiting_answer and len(row.out) >= row.request.max_tokens:
                self._finish(row, "length")

    def close_from_cache(
        self, rows: list[Row], live: Sequence[int | None], cache: Any, mask: Any, layers: kv.KV | None = None
    ) -> None:
        """Score the rows that just ended without their answer (budget, end-of-sequence, a stop
        string inside a token) at ``prompt + close(generation)``, from their own cache (or from
        ``layers``, fixed-width buffers whose ``mask`` marks the real tokens)."""
        todo: list[tuple[int, Row, Generation, Callable[[Generation], str]]] = []
        for pos, idx in enumerate(live):
            if idx is None:
                continue
            row = rows[idx]
            g, close = row.result, row.request.close
            if g is not None and g.answer_logprobs is None and close is not None and row.request.answer_token_ids:
                todo.append((pos, row, g, close))
        if not todo:
            return
        if layers is None and not kv.reusable(cache):  # cannot cut this cache: score the closed text from scratch
            for _, row, g, close in todo:
                g.answer_logprobs = self._rescore([row.prompt + close(g)], row.request.answer_token_ids)[0]
            return
        layers = kv.layers_of(cache) if layers is None else layers
        for start in range(0, len(todo), _CLOSE_CHUNK):  # bounds the copied keys/values
            segments, rests = [], []
            for pos, row, g, close in todo[start : start + _CLOSE_CHUNK]:
                target = self.tokenizer.encode_prompt(row.prompt + close(g))
                held = row.prompt_ids + row.out[: max(len(row.out) - 1, 0)]  # the last pick was never fed
                keep = min(kv.common_prefix(held, target), len(target) - 1)
                segments.append(kv.cut_row(layers, mask, pos, keep))
                rests.append(target[keep:])
            sub_cache, head_mask = kv.stack(segments, self.device)
            ids, rest_mask = kv.right_align(rests, self.pad_id, self.device)
            logits = self._forward(ids, self._torch.cat([head_mask, rest_mask], dim=1), sub_cache)
            logprobs = self._torch.log_softmax(logits, dim=-1).cpu()
            for r, (_, row, g, _) in enumerate(todo[start : start + _CLOSE_CHUNK]):
                g.answer_logprobs = {t: float(logprobs[r, t]) for t in row.request.answer_token_ids}

    def _pick(self, logits: Any, row: Row) -> int:
        torch = self._torch
        if row.generator is None:
            return int(torch.argmax(logits))
        scores = logits / row.request.temperature
        if row.warpers is None:
            row.warpers = filter_warpers(row.request)
        if row.warpers:
            scores = scores.unsqueeze(0)
            for warp in row.warpers:
                scores = warp(None, scores)
            scores = scores.squeeze(0)
        probs = torch.softmax(scores, dim=-1)
        return int(torch.multinomial(probs, 1, generator=row.generator))

    def _check_stop(self, row: Row, token: int) -> None:
        req = row.request
        if token in self.eos:
            self._finish(row, "eos", row.out[:-1])
            return
        if not req.stop:
            return
        triggers = self._stop_triggers(req.stop)
        if triggers is not None and token not in triggers:
            return  # this token cannot have completed a stop string: no decoding this step
        tail = self.tokenizer.decode(row.out[-row.window:])
        if not any(s in tail for s in req.stop):
            return
        text = self.tokenizer.decode(row.out)
        cut, stop = min((text.find(s), s) for s in req.stop if s in text)
        boundary = cut + len(stop) == len(text)
        row.result = Generation(text[:cut], "stop", len(row.out), len(row.prompt_ids), list(row.out))
        if boundary and req.answer_token_ids:
            row.result = None
            row.awaiting_answer = True
            row.stop_at = cut

    def _stop_triggers(self, stops: tuple[str, ...]) -> frozenset[int] | None:
        """Ids of the tokens that can complete one of ``stops``: those whose text holds a stop
        string's last character, or part of a multi-byte character. A stop string can only
        appear when such a token is written, so other steps skip decoding. None (check every
        step) when a stop string ends in whitespace, which some tokenizers drop from a lone token."""
        if stops not in self._triggers:
            last = {s[-1] for s in stops if s}
            if not last or any(c.isspace() for c in last):
                self._triggers[stops] = None
            else:
                hf = self.tokenizer.hf
                pieces = hf.batch_decode([[i] for i in range(len(hf))], skip_special_tokens=False)
                self._triggers[stops] = frozenset(
                    i for i, p in enumerate(pieces) if "\ufffd" in p or any(c in p for c in last)
                )
        return self._triggers[stops]

    def _read_answer(self, row: Row, logits: Any) -> None:
        logprobs = self._torch.log_softmax(logits, dim=-1)
        ids = row.request.answer_token_ids
        answer = {t: float(logprobs[t]) for t in ids}
        text = self.tokenizer.decode(row.out)[: row.stop_at]
        row.result = Generation(text, "stop", len(row.out), len(row.prompt_ids), list(row.out), answer)
        row.awaiting_answer = False

    def _finish(self, row: Row, reason: str, ids: list[int] | None = None) -> None:
        ids = row.out if ids is None else ids
        row.result = Generation(self.tokenizer.decode(ids), reason, len(row.out), len(row.prompt_ids), list(row.out))
