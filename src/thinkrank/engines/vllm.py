"""Engine over vLLM's offline ``LLM`` (GPU), a thin adapter.

All requests go to one ``LLM.generate`` call, so vLLM schedules and batches them itself.
``generate`` stops at the stop strings. For requests with a ``close`` rule it then scores the
answer ids in one more batched pass whose prompts are **token ids**: the prompt's ids and the
chain's generated ids (as far as their text is a prefix of the closed text), then the tokens of
the rest. So prefix caching (on by default here) serves prompt and chain from the KV cache of
the generation just run, and the model is scored on exactly the tokens it wrote.

``next_token_logprobs`` reads the answer ids exactly and returns them **renormalised over the
requested ids** (their differences are what Rank1 uses, and are exact):

* with vLLM's ``SamplingParams.logprob_token_ids`` (newer releases, feature-detected), one
  one-token request per prompt returns the log-probs of exactly those ids;
* otherwise the next token is restricted with ``allowed_token_ids`` and read as described in
  :mod:`thinkrank.engines.restricted` (a second request per missing id when vLLM reports raw
  log-probs whose top-k left one out).

The parts that do not need vLLM (request conversion, output parsing) are plain functions.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from thinkrank.engines.base import Generation, GenerationRequest, OnBatch, Progress, sampling_filters
from thinkrank.engines.restricted import Reading, check_restricted, forced_value, missing, renormalise
from thinkrank.errors import EngineError, InvalidInputError, ModelLoadError, require

_WHERE = "vLLM"


def sampling_fields(cls: Any) -> frozenset[str]:
    """The keyword arguments ``cls`` (vLLM's ``SamplingParams``) accepts: its msgspec struct
    fields (vLLM >= 0.6) or its constructor's parameters (older releases)."""
    fields = getattr(cls, "__struct_fields__", None)
    if fields is None:
        fields = [p for p in inspect.signature(cls).parameters if p != "self"]
    return frozenset(fields)


def sampling_kwargs(request: GenerationRequest) -> dict[str, Any]:
    """``SamplingParams`` keyword arguments for one generation request (``max_tokens`` >= 1).
    Everything that would change greedy decoding is set explicitly, so a model's generation
    config cannot slip penalties or top-k/top-p in; the request's own filters (sampling only)
    replace the neutral values."""
    filters = sampling_filters(request)
    return {
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": filters.get("top_p", 1.0),
        "top_k": filters.get("top_k", -1),
        **({"min_p": filters["min_p"]} if "min_p" in filters else {}),
        "repetition_penalty": 1.0,
        "stop": list(request.stop),
        "seed": request.seed if request.temperature > 0 else None,
        # The released Rank1 models' </think> is a special token: keep it in the text (as the
        # transformers engine decodes) so the stop string can match it, with no spaces around it.
        "skip_special_tokens": False,
        "spaces_between_special_tokens": False,
        "include_stop_str_in_output": False,
    }


def scoring_kwargs(allowed: Sequence[int], fields: frozenset[str]) -> dict[str, Any]:
    """``SamplingParams`` keyword arguments for one-token answer scoring: ``logprob_token_ids``
    when this vLLM has it, else a restriction to ``allowed`` with ``len(allowed)`` log-probs."""
    base: dict[str, Any] = {"max_tokens": 1, "temperature": 0.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0}
    if "logprob_token_ids" in fields:
        # vLLM requires logprobs == len(logprob_token_ids) when both are set (0.32 refuses any
        # other value); the returned values are then the full-softmax log-probs of exactly those ids.
        return {**base, "logprobs": len(allowed), "logprob_token_ids": list(allowed)}
    return {**base, "logprobs": len(allowed), "allowed_token_ids": list(allowed)}


def to_generation(output: Any) -> Generation:
    """A vLLM ``RequestOutput`` (first completion) as a :class:`Generation`.

    vLLM's ``stop_reason`` is the matched stop string, a stop token id, or None when the
    end-of-sequence token ended the completion.
    """
    completion = output.outputs[0]
    if completion.finish_reason == "length":
        reason = "length"
    elif completion.finish_reason == "stop":
        reason = "stop" if isinstance(completion.stop_reason, str) else "eos"
    else:
        raise EngineError(f"vLLM ended a completion with finish_reason={completion.finish_reason!r}")
    ids = list(completion.token_ids)
    return Generation(completion.text, reason, len(ids), len(output.prompt_token_ids or []), ids)


def to_reading(output: Any, ids: Sequence[int]) -> Reading:
    """What a one-token scoring ``RequestOutput`` reported for the answer ``ids``."""
    completion = output.outputs[0]
    if not completion.token_ids or not completion.logprobs:
        raise EngineError("vLLM returned no log-probabilities for a scoring request")
    sampled = int(completion.token_ids[0])
    step = completion.logprobs[0]
    values = {t: float(step[t].logprob) for t in ids if t in step}
    return Reading(sampled if sampled in ids else None, values)

def scoring_ids(tokenizer: Any, prompt_ids: Sequence[int], generated: Sequence[int], closed: str) -> list[int]:
    """Token ids for scoring after ``prompt + closed``: ``prompt_ids``, the longest run of
    ``generated`` ids whose text is a prefix of ``closed`` (a prefix-cache hit, and the model's
    own tokens), then the rest of ``closed`` tokenised."""
    lo, hi = 0, len(generated)
    while lo < hi:  # the largest k with decode(generated[:k]) a prefix of closed
        mid = (lo + hi + 1) // 2
        if closed.startswith(tokenizer.decode(generated[:mid])):
            lo = mid
        else:
            hi = mid - 1
    kept = tokenizer.decode(generated[:lo]) if lo else ""
    if not closed.startswith(kept):  # a partial character at the cut: keep none rather than guess
        lo, kept = 0, ""
    return [*prompt_ids, *generated[:lo], *tokenizer.encode(closed[len(kept):])]


Run = Callable[[list[Any], list[dict[str, Any]]], list[Any]]
"""Runs prompts with one ``SamplingParams`` keyword dict each; returns ``RequestOutput``s."""


def score_answers(run: Run, prompts: Sequence[Any], token_ids: Sequence[int], fields: frozenset[str]) -> list[dict[int, float]]:
    """The answer log-probs of every prompt, renormalised over ``token_ids``, in one batched
    scoring pass plus, on restricted decoding, one pass for answers a raw top-k left out."""
    ids = list(dict.fromkeys(int(t) for t in token_ids))
    if not ids:
        raise InvalidInputError("next_token_logprobs needs at least one token id")
    outputs = run(list(prompts), [scoring_kwargs(ids, fields)] * len(prompts))
    readings = [to_reading(out, ids) for out in outputs]
    if "logprob_token_ids" not in fields:  # restricted decoding: check it held, then fill gaps
        for reading in readings:
            check_restricted(reading, ids, _WHERE)
        follow = [(i, t) for i, r in enumerate(readings) for t in missing(r, ids)]
        if follow:
            forced = run([prompts[i] for i, _ in follow], [scoring_kwargs([t], frozenset()) for _, t in follow])
            for (i, t), out in zip(follow, forced):
                readings[i].logprobs[t] = forced_value(to_reading(out, [t]), t, _WHERE)
    # With logprob_token_ids every id must be present; renormalise raises if one is not.
    return [renormalise(r.logprobs, ids, _WHERE) for r in readings]


class VLLMEngine:
    """Engine over ``vllm.LLM``.

    Args:
        model: hub id, local directory or ``.gguf`` file (LoRA adapter directories: merge first),
            or a ``vllm.LLM`` already built (the other arguments are then ignored).
        tokenizer: a tokenizer directory or hub id when it differs from ``model`` (GGUF).
        enable_prefix_caching: keep on; it makes scoring after ``</think>`` nearly free.
        answer_reading: ``"auto"`` reads answer ids with ``logprob_token_ids`` where this vLLM
            has it; ``"restricted"`` always restricts the next token with ``allowed_token_ids``
            (what older releases get; the values are the same).
        llm_kwargs: passed to ``vllm.LLM`` (``tensor_parallel_size``, ``gpu_memory_utilization``,
            ``max_model_len``, ``dtype``, …).

    Raises:
        MissingExtraError: vLLM is not installed (``pip install "thinkrank[vllm]"``).
        ModelLoadError: vLLM could not load the model.
    """

    name = "vllm"

    def __init__(
        self, model: Any, *, tokenizer: str | None = None, enable_prefix_caching: bool = True,
        answer_reading: str = "auto", **llm_kwargs: Any
    ) -> None:
        vllm = require("vllm", "vllm")
        from thinkrank.engines.loading import HFTokenizer

        if answer_reading not in ("auto", "restricted"):
            raise InvalidInputError(f"answer_reading must be 'auto' or 'restricted', got {answer_reading!r}")
        self._sampling_params = vllm.SamplingParams
        self._fields = sampling_fields(vllm.SamplingParams)
        if answer_reading == "restricted":  # as on releases without logprob_token_ids
            self._fields = self._fields - {"logprob_token_ids"}
        if isinstance(model, vllm.LLM):  # an engine the caller built (and shares with other code)
            self.llm = model
            self.model_name = str(model.llm_engine.model_config.model)
        else:
            self.llm, self.model_name = _build_llm(vllm, model, tokenizer, enable_prefix_caching, llm_kwargs)
        self._tok = HFTokenizer(self.llm.get_tokenizer(), self.model_name)

    @property
    def tokenizer(self) -> Any:
        return self._tok

    @property
    def context_length(self) -> int | None:
        """vLLM's ``max_model_len`` for the loaded model."""
        config = getattr(getattr(self.llm, "llm_engine", None), "model_config", None)
        value = getattr(config, "max_model_len", None)
        return int(value) if isinstance(value, int) else None

    def apply_chat_template(self, messages: Sequence[dict[str, str]]) -> str:
        return self._tok.apply_chat_template(messages)

    def _run(self, prompts: list[Any], kwargs: list[dict[str, Any]]) -> list[Any]:
        params = [self._sampling_params(**kw) for kw in kwargs]
        refused: tuple[type[BaseException], ...] = (ValueError, *_request_errors())
        try:
            return list(self.llm.generate(prompts, sampling_params=params, use_tqdm=False))
        except refused as exc:  # vLLM refused a request before running any
            raise InvalidInputError(
                f"vLLM refused a request: {' '.join(str(exc).split())[:400]} (the context is {self.context_length} "
                "tokens: shorten the prompt, or raise max_model_len up to the model's own)"
            ) from exc

    def generate(
        self, requests: Sequence[GenerationRequest], progress: Progress | None = None, *,
        on_batch: OnBatch | None = None,
    ) -> list[Generation]:
        """Continue every request in one ``LLM.generate`` call (vLLM schedules them itself);
        ``on_batch`` gets every result at once, at the end."""
        for r in requests:
            if r.max_tokens < 0:
                raise InvalidInputError(f"max_tokens must be >= 0, got {r.max_tokens}")
        texts = [self._tok.prompt_text(r) for r in requests]  # chat messages rendered with the model's template
        results: list[Generation | None] = [None] * len(requests)
        todo = [i for i, r in enumerate(requests) if r.max_tokens > 0]
        for i, r in enumerate(requests):
            if r.max_tokens == 0:  # vLLM needs max_tokens >= 1; nothing to generate
                results[i] = Generation("", "length", 0, len(self._tok.encode_prompt(texts[i])))
        if todo:
            outputs = self._run([texts[i] for i in todo], [sampling_kwargs(requests[i]) for i in todo])
            for i, out in zip(todo, outputs):
                results[i] = to_generation(out)
        self._close(requests, texts, results, [out.prompt_token_ids for out in outputs] if todo else [], todo)
        if on_batch and results:
            on_batch(list(range(len(results))), list(results))
        if progress:
            progress(len(requests))
        return results  # type: ignore[return-value]

    def _close(self, requests: Sequence[GenerationRequest], texts: list[str], results: list[Any],
               prompt_ids: list[Any], generated: list[int]) -> None:
        """Fill ``answer_logprobs`` of the requests with a ``close`` rule, grouped by answer ids
        (``texts``: what each request's prompt stands for)."""
        ids_of = dict(zip(generated, prompt_ids))
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, r in enumerate(requests):
            if r.close is not None and r.answer_token_ids:
                groups.setdefault(tuple(r.answer_token_ids), []).append(i)
        for answer_ids, members in groups.items():
            prompts = [
                {"prompt_token_ids": scoring_ids(
                    self._tok, ids_of.get(i) or self._tok.encode_prompt(texts[i]), results[i].token_ids,
                    requests[i].close(results[i]))}  # type: ignore[misc]
                for i in members
            ]
            for i, lp in zip(members, score_answers(self._run, prompts, answer_ids, self._fields)):
                results[i].answer_logprobs = lp

    def next_token_logprobs(
        self, prompts: Sequence[str], token_ids: Sequence[int], progress: Progress | None = None, *,
        on_batch: OnBatch | None = None, shared_prefixes: Sequence[str] | None = None,
    ) -> list[dict[int, float]]:
        """Log-probs of ``token_ids`` after each prompt, renormalised over those ids
        (``on_batch``: all at once, at the end). ``shared_prefixes`` is ignored: vLLM's
        automatic prefix caching finds prompts' shared prefixes itself.

        Raises:
            EngineError: vLLM did not honour the restriction or left an id out.
        """
        results = score_answers(self._run, prompts, token_ids, self._fields)
        if on_batch and results:
            on_batch(list(range(len(results))), list(results))
        if progress:
            progress(len(prompts))
        return results


# vLLM's CPU backend caches prefixes in blocks of 128 tokens by default, so the answer pass after
# a chain would prefill again up to 127 of the chain's tokens; 32 is the smallest size the CPU
# attention kernels are tuned for (GPU backends default to 16).
CPU_BLOCK_SIZE = 32


def _build_llm(vllm: Any, model: Any, tokenizer: str | None, enable_prefix_caching: bool,
               llm_kwargs: dict[str, Any]) -> tuple[Any, str]:
    """A ``vllm.LLM`` for ``model`` (hub id, directory or ``.gguf``) and its display name."""
    from thinkrank.engines.loading import resolve_model

    ref = resolve_model(model)
    if ref.adapter:
        raise ModelLoadError(
            f"the vLLM engine does not apply LoRA adapters ({ref.adapter}); merge it into its base "
            "model first, or use --engine transformers"
        )
    source = str(Path(ref.source) / ref.gguf_file) if ref.gguf_file else ref.source
    kwargs = {"model": source, "enable_prefix_caching": enable_prefix_caching, **llm_kwargs}
    if tokenizer is not None:
        kwargs["tokenizer"] = str(tokenizer)
    if "block_size" not in kwargs and _on_cpu():
        kwargs["block_size"] = CPU_BLOCK_SIZE
    try:
        return vllm.LLM(**kwargs), ref.display
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"vLLM could not load {ref.display!r}: {' '.join(str(exc).split())[:500]}") from exc


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def _request_errors() -> tuple[type[BaseException], ...]:
    """vLLM's exception for a request it refuses (0.32: ``VLLMValidationError``; older: ValueError)."""
    try:
        from vllm.exceptions import VLLMValidationError
    except ImportError:
        return ()
    return (VLLMValidationError,)
