"""Engine over any OpenAI-compatible server (``vllm serve``, SGLang, llama.cpp server, …).

Each prompt is one ``/v1/completions`` request (``/v1/chat/completions`` with ``chat=True``),
sent ``concurrency`` at a time so the server can batch them. The official ``openai`` client
retries 408/409/429/5xx answers and connection errors with exponential backoff (honouring
``Retry-After``); what still fails becomes an :class:`~thinkrank.errors.EngineError` naming
the server and what to do.

Answer log-probabilities are read exactly by restricting the next token to the answer ids with
``logit_bias`` (see :mod:`thinkrank.engines.restricted`), so ``next_token_logprobs`` returns
log-probs **renormalised over the requested ids**. ``generate`` never scores answers in the
same pass (``answer_logprobs`` is None); Rank1 then asks ``next_token_logprobs`` for
prompt + chain + ``</think>``, which a prefix-caching server answers from its cache.

Think tokens and stops. In the released Rank1 models ``<think>``/``</think>`` are added
*special* tokens, and vLLM/SGLang servers decode with special tokens skipped by default, so the
stop string ``</think>`` would never appear and every chain would run to the budget. Generation
requests therefore ask for ``skip_special_tokens: false`` (and no spaces inserted around special
tokens) unless ``keep_special_tokens=False``. And a chain must be told apart from one the model
ended with end-of-sequence: vLLM says which stop matched (``stop_reason``), SGLang too
(``matched_stop``), but llama.cpp-style servers answer ``finish_reason: "stop"`` for both. So
before the first generation with stop strings the engine sends one 1-token probe; when the
server's answer carries neither field, stop strings are not sent at all and are found in the
text here, so "stop" can only mean end-of-sequence (``server_stops`` forces either way).

A local tokenizer is needed to count and cut passages and to find single-token answer ids.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, TypeVar

from thinkrank.engines.base import Generation, GenerationRequest, OnBatch, Progress, sampling_filters
from thinkrank.engines.loading import HFTokenizer, load_tokenizer, resolve_model
from thinkrank.engines.restricted import Reading, check_restricted, forced_value, missing, renormalise
from thinkrank.errors import EngineError, InvalidInputError, ModelLoadError, require

_BIAS = 100  # the largest logit_bias the OpenAI API accepts; makes the answer ids the only candidates
_TOKEN_ID = re.compile(r"token_id:(\d+)")  # vLLM's `return_tokens_as_token_ids` spelling
# Sent with every request so a server's own defaults cannot truncate or penalise the distribution.
_PLAIN = {"top_p": 1.0, "frequency_penalty": 0.0, "presence_penalty": 0.0}
# vLLM/SGLang sampling fields that keep special tokens (the released <think>, </think>) in the text.
_KEEP_SPECIAL = {"skip_special_tokens": False, "spaces_between_special_tokens": False}
# Choice fields in which a server says which stop string ended a completion (None: end-of-sequence).
_STOP_FIELDS = ("stop_reason", "matched_stop")
# A tokenizer's model_max_length above this is transformers' "no limit" placeholder.
_NO_LIMIT = 10**8

T = TypeVar("T")
R = TypeVar("R")


class OpenAIEngine:
    """Engine over an OpenAI-compatible HTTP server.

    Args:
        model: the model name the server serves (``--served-model-name`` for vLLM).
        base_url: e.g. ``http://localhost:8000/v1`` (default: ``$OPENAI_BASE_URL``).
        api_key: default ``$OPENAI_API_KEY``, else ``"EMPTY"`` (local servers ignore it).
        tokenizer: a local tokenizer directory, hub id or loaded transformers tokenizer
            (default: ``model`` as a hub id or directory).
        concurrency: requests in flight at once.
        max_retries / timeout: per request, passed to the ``openai`` client.
        chat: send ``generate`` requests to ``/v1/chat/completions`` (for servers without a
            completions endpoint): a request's ``messages`` go as they are, a raw prompt as one
            user message. Without it, messages are rendered here with the tokenizer's chat
            template and sent as a completion prompt. ``next_token_logprobs`` always uses
            ``/v1/completions``.
        extra_body: extra JSON fields sent with every request (server-specific sampling
            options, e.g. ``{"top_k": -1}``); they override the engine's own.
        keep_special_tokens: ask generation requests for ``skip_special_tokens: false`` and
            ``spaces_between_special_tokens: false`` (vLLM, SGLang), so a special ``</think>``
            shows in the text and ends the chain.
        server_stops: trust the server to say whether a stop string or end-of-sequence ended a
            completion (True), or never send stop strings and find them in the text (False);
            None: probe the server once (see the module docstring).
        context_length: the served model's context in tokens; default: what ``GET /models``
            reports (vLLM's ``max_model_len``), else the tokenizer's ``model_max_length``.

    Raises:
        InvalidInputError: no base URL, or a bad option value.
        ModelLoadError: the local tokenizer cannot be loaded.
        MissingExtraError: the ``openai`` package is not installed (``thinkrank[openai]``).
    """

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        tokenizer: Any = None,
        concurrency: int = 8,
        max_retries: int = 3,
        timeout: float = 600.0,
        chat: bool = False,
        extra_body: dict[str, Any] | None = None,
        keep_special_tokens: bool = True,
        server_stops: bool | None = None,
        context_length: int | None = None,
    ) -> None:
        openai = require("openai", "openai")
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise InvalidInputError(
                "the openai engine needs the server's URL: pass base_url= (CLI: --base-url) or set "
                "OPENAI_BASE_URL, e.g. http://localhost:8000/v1"
            )
        from thinkrank.engines import check_options  # the ranges --help and the spec show

        check_options("openai", concurrency=concurrency, max_retries=max_retries, timeout=timeout,
                      **({} if context_length is None else {"context_length": context_length}))
        self.model_name = str(model)
        self.base_url = base_url.rstrip("/")
        self.concurrency, self.max_retries, self.chat = concurrency, max_retries, chat
        self.extra_body = dict(extra_body or {})
        self.keep_special_tokens = keep_special_tokens
        self._context_length = context_length
        self._server_stops = server_stops
        self._probe_lock = threading.Lock()
        self._openai = openai
        self.client = openai.OpenAI(
            base_url=self.base_url,
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
            max_retries=max_retries,
            timeout=timeout,
        )
        self._tok = _local_tokenizer(tokenizer if tokenizer is not None else model, model)

    @property
    def tokenizer(self) -> Any:
        return self._tok

    @property
    def context_length(self) -> int | None:
        """The served model's context length in tokens (None when nothing reports it)."""
        if self._context_length is None:
            self._context_length = self._served_context() or _tokenizer_context(self._tok)
        return self._context_length

    def _served_context(self) -> int | None:
        try:
            models = self._call(lambda: self.client.models.list(), "models")
        except EngineError:
            return None
        for entry in getattr(models, "data", []) or []:
            if getattr(entry, "id", None) == self.model_name:
                value = (entry.model_extra or {}).get("max_model_len")
                return int(value) if isinstance(value, int) and value > 0 else None
        return None

    def server_reports_stops(self) -> bool:
        """Whether the server says which stop ended a completion (vLLM's ``stop_reason``,
        SGLang's ``matched_stop``); asked once with a 1-token probe, then remembered."""
        with self._probe_lock:
            if self._server_stops is None and self.chat:  # a chat-only server: no probe, stops found here
                self._server_stops = False
            if self._server_stops is None:
                resp = self._call(
                    lambda: self.client.completions.create(
                        model=self.model_name, prompt="Hello", max_tokens=1, temperature=0.0, stop=["\n\n"],
                        **_PLAIN, **self._extra({}),
                    ),
                    "completions (stop probe)",
                )
                extra = resp.choices[0].model_extra or {}
                self._server_stops = any(key in extra for key in _STOP_FIELDS)
            return self._server_stops

    def _extra(self, own: dict[str, Any]) -> dict[str, Any]:
        """``extra_body`` for a request: the engine's own fields, then the user's over them."""
        body = {**own, **self.extra_body}
        return {"extra_body": body} if body else {}

    def close(self) -> None:
        """Close the HTTP connections."""
        self.client.close()

    def apply_chat_template(self, messages: Sequence[dict[str, str]]) -> str:
        return self._tok.apply_chat_template(messages)

    # ---- generation -----------------------------------------------------------------------
    def generate(
        self, requests: Sequence[GenerationRequest], progress: Progress | None = None, *,
        on_batch: OnBatch | None = None,
    ) -> list[Generation]:
        """Continue every request, ``concurrency`` in flight; ``on_batch`` gets finished
        results ``concurrency`` at a time, as they complete (the last group at the end)."""
        for r in requests:
            if r.max_tokens < 0:
                raise InvalidInputError(f"max_tokens must be >= 0, got {r.max_tokens}")
            if self.chat and r.assistant_prefix:
                raise InvalidInputError(
                    "a chat completions request cannot start the assistant's turn with given text (assistant_prefix); "
                    "use the completions endpoint (chat=False, CLI: no --chat), where the prefix follows the rendered chat"
                )
        return self._map(self._generate_one, requests, progress, on_batch)

    def _generate_one(self, req: GenerationRequest) -> Generation:
        if req.max_tokens == 0:  # servers reject max_tokens=0; nothing to ask
            return Generation("", "length", 0, len(self._tok.encode_prompt(self._tok.prompt_text(req))))
        options: dict[str, Any] = {
            "model": self.model_name, "max_tokens": req.max_tokens, "temperature": req.temperature, **_PLAIN,
        }
        # Stops go to the server only when it will say whether one of them ended the completion.
        server_stops = bool(req.stop) and self.server_reports_stops()
        if server_stops:
            options["stop"] = list(req.stop)
        if req.seed is not None:
            options["seed"] = req.seed
        filters = sampling_filters(req)
        if "top_p" in filters:
            options["top_p"] = filters["top_p"]
        # top_k / min_p are not OpenAI API fields: vLLM's and SGLang's servers take them in the
        # body; a server that does not rejects the request, and that error names them.
        own = {k: v for k, v in filters.items() if k != "top_p"}
        options.update(self._extra((_KEEP_SPECIAL if self.keep_special_tokens else {}) | own))
        if self.chat:
            messages = [dict(m) for m in req.messages] if req.messages is not None else [{"role": "user", "content": req.prompt}]
            resp = self._call(lambda: self.client.chat.completions.create(messages=messages, **options), "chat/completions")
            choice = resp.choices[0]
            text = choice.message.content or ""
        else:
            prompt = self._tok.prompt_text(req)
            resp = self._call(lambda: self.client.completions.create(prompt=prompt, **options), "completions")
            choice = resp.choices[0]
            text = choice.text or ""
        reason = _stop_reason(choice.finish_reason, choice.model_extra or {}, server_stops, self.base_url)
        cut = [text.find(s) for s in req.stop if s in text]
        if cut:  # stops found here (not sent, or a server that returned them): cut and count here
            text, reason = text[: min(cut)], "stop"
            return Generation(text, reason, len(self._tok.encode(text)), self._prompt_tokens(req))
        usage = resp.usage
        if usage is None:  # the server reports no counts: count with the local tokenizer
            return Generation(text, reason, len(self._tok.encode(text)), self._prompt_tokens(req))
        return Generation(text, reason, usage.completion_tokens, usage.prompt_tokens)

    def _prompt_tokens(self, req: GenerationRequest) -> int:
        """The request's prompt in tokens, as the local tokenizer counts the text it stands for."""
        return len(self._tok.encode_prompt(self._tok.prompt_text(req)))

    # ---- next-token scoring ---------------------------------------------------------------
    def next_token_logprobs(
        self, prompts: Sequence[str], token_ids: Sequence[int], progress: Progress | None = None, *,
        on_batch: OnBatch | None = None, shared_prefixes: Sequence[str] | None = None,
    ) -> list[dict[int, float]]:
        """Log-probs of ``token_ids`` as the next token after each prompt, **renormalised over
        those ids** (their differences are exact; see :mod:`thinkrank.engines.restricted`).
        ``on_batch`` gets them ``concurrency`` at a time, as they complete.
        ``shared_prefixes`` is ignored: servers (vLLM's, llama.cpp's) cache shared prompt
        prefixes themselves, and the API has no way to declare them.

        Raises:
            EngineError: the server is unreachable, rejects ``logprobs``/``logit_bias``, or
                ignored the restriction (then no score is invented).
        """
        ids = list(dict.fromkeys(int(t) for t in token_ids))
        if not ids:
            raise InvalidInputError("next_token_logprobs needs at least one token id")
        names = _token_names(self._tok, ids)
        return self._map(lambda p: self._answer(p, ids, names), prompts, progress, on_batch)

    def _answer(self, prompt: str, ids: list[int], names: dict[str, int]) -> dict[int, float]:
        where = f"the server at {self.base_url}"
        reading = self._restricted(prompt, ids, names)
        check_restricted(reading, ids, where)
        for t in missing(reading, ids):  # a raw-logprob server's top-k left it out: force it alone
            reading.logprobs[t] = forced_value(self._restricted(prompt, [t], names), t, where)
        return renormalise(reading.logprobs, ids, where)

    def _restricted(self, prompt: str, allowed: list[int], names: dict[str, int]) -> Reading:
        options = self._extra({})
        resp = self._call(
            lambda: self.client.completions.create(
                model=self.model_name, prompt=prompt, max_tokens=1, temperature=0.0, logprobs=len(allowed),
                logit_bias={str(t): _BIAS for t in allowed}, **_PLAIN, **options,
            ),
            "completions (logprobs)",
        )
        lp = resp.choices[0].logprobs
        if lp is None or not lp.tokens or not lp.token_logprobs:
            raise EngineError(
                f"the server at {self.base_url} returned no log-probabilities on /v1/completions; "
                "the openai engine needs a server that supports `logprobs` there (vLLM, SGLang, llama.cpp server)"
            )
        sampled = _token_id(lp.tokens[0], names)
        values: dict[int, float] = {}
        top = (lp.top_logprobs or [None])[0] or {}
        for token, value in top.items():
            tid = _token_id(token, names)
            if tid is not None and value is not None:
                values[tid] = float(value)
        if sampled is not None and lp.token_logprobs[0] is not None:
            values[sampled] = float(lp.token_logprobs[0])
        return Reading(sampled, values)

    # ---- plumbing -------------------------------------------------------------------------
    def _map(self, fn: Callable[[T], R], items: Sequence[T], progress: Progress | None,
             on_batch: OnBatch | None = None) -> list[R]:
        """``fn`` over ``items`` with at most ``concurrency`` in flight; results in input order.
        Finished results go to ``on_batch`` ``concurrency`` at a time (what the server worked
        on together), the rest at the end. The first failure cancels what has not started and
        is raised."""
        results: list[Any] = [None] * len(items)
        if not items:
            return results
        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(items)), thread_name_prefix="thinkrank-openai")
        finished: list[int] = []
        try:
            futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
            for done, future in enumerate(as_completed(futures), 1):
                i = futures[future]
                results[i] = future.result()
                finished.append(i)
                if on_batch and (len(finished) >= self.concurrency or done == len(items)):
                    # Called here, in the caller's thread, while the pool keeps the server busy.
                    on_batch(finished, [results[j] for j in finished])
                    finished = []
                if progress:
                    progress(1)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return results

    def _call(self, send: Callable[[], Any], endpoint: str) -> Any:
        openai = self._openai
        try:
            return send()
        except openai.APIStatusError as exc:
            raise EngineError(_status_message(exc, endpoint, self.base_url, self.model_name, self.max_retries)) from exc
        except openai.APIConnectionError as exc:  # includes timeouts
            kind = "timed out" if isinstance(exc, openai.APITimeoutError) else "could not be reached"
            raise EngineError(
                f"the OpenAI-compatible server at {self.base_url} {kind} (tried {self.max_retries + 1} times): "
                f"{exc}. Start it (e.g. `vllm serve MODEL`) or fix --base-url / OPENAI_BASE_URL"
            ) from exc


def _local_tokenizer(source: Any, model: str) -> HFTokenizer:
    if not isinstance(source, (str, os.PathLike)):
        return HFTokenizer(source, model)
    try:
        return HFTokenizer(load_tokenizer(resolve_model(source)), model)
    except ModelLoadError as exc:
        raise ModelLoadError(
            f"the openai engine needs the model's tokenizer locally (to count and cut passages and find "
            f"single-token answers); pass tokenizer= (CLI: --tokenizer) a local directory or hub id. {exc}"
        ) from exc


def _token_names(tok: Any, ids: Sequence[int]) -> dict[str, int]:
    """How a server spells each answer id in its log-prob lists (the token's decoded text)."""
    names: dict[str, int] = {}
    for t in ids:
        text = tok.decode([t])
        if text in names:
            raise InvalidInputError(
                f"token ids {names[text]} and {t} both read {text!r}; a server's log-prob lists cannot tell them apart"
            )
        names[text] = t
    return names


def _token_id(token: str, names: dict[str, int]) -> int | None:
    match = _TOKEN_ID.fullmatch(token)
    return int(match.group(1)) if match else names.get(token)


def _stop_reason(finish: str | None, extra: dict[str, Any], stops_sent: bool, base_url: str) -> str:
    """Map the server's finish reason to ``stop``/``eos``/``length``. vLLM says which stop ended a
    completion in ``stop_reason`` (the string, or None for end-of-sequence), SGLang in
    ``matched_stop``. A server that says neither was sent no stop strings (see the module
    docstring), so its "stop" is end-of-sequence."""
    if finish == "length":
        return "length"
    if finish != "stop":
        raise EngineError(f"the server at {base_url} ended a completion with finish_reason={finish!r}")
    for key in _STOP_FIELDS:
        if key in extra:
            return "stop" if isinstance(extra[key], str) else "eos"
    if stops_sent:
        raise EngineError(
            f"the server at {base_url} ended a completion with finish_reason='stop' without saying whether a stop "
            "string or end-of-sequence ended it; pass server_stops=False so stops are found client-side"
        )
    return "eos"


def _tokenizer_context(tok: Any) -> int | None:
    value = getattr(tok.hf, "model_max_length", None)
    return int(value) if isinstance(value, int) and 0 < value < _NO_LIMIT else None


def _status_message(exc: Any, endpoint: str, base_url: str, model: str, retries: int) -> str:
    detail = " ".join(str(getattr(exc, "message", exc)).split())[:500]
    head = f"the server at {base_url} answered HTTP {exc.status_code} to /{endpoint} for model {model!r}"
    if exc.status_code == 404:
        return (
            f"{head}: {detail}. Check that --model is the name the server serves (GET {base_url}/models) "
            "and that the base URL ends in /v1"
        )
    if exc.status_code in (408, 409, 429) or exc.status_code >= 500:
        return f"{head} after {retries} retries: {detail}. The server is overloaded or failing; retry later"
    return f"{head}: {detail}"
