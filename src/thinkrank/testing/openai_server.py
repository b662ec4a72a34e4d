"""A small OpenAI-compatible server over thinkrank's transformers engine, for tests and demos.

``transformers serve`` (5.x) has ``/v1/completions`` but returns no log-probs there, so it
cannot exercise exact answer scoring. This server runs real generation and real log-probs:

* ``GET /v1/models``; ``POST /v1/completions`` (one string prompt, ``max_tokens``, ``stop``,
  ``temperature``, ``seed``, ``top_p`` and vLLM's ``top_k``/``min_p`` (-1, 0 and 0: off)); ``POST /v1/chat/completions`` (the model's chat template).
* ``logprobs`` and ``logit_bias`` on one-token completions (the scoring requests thinkrank
  sends); longer completions with them are refused with HTTP 400 rather than half-served.
* vLLM's extras: ``stop_reason`` in each choice (the matched stop string, None for
  end-of-sequence); ``max_model_len`` in ``/v1/models``; ``skip_special_tokens`` (default
  true, as vLLM's): special tokens are left out of the text, and a stop string can only match
  the text without them, so a special ``</think>`` never ends a completion unless the request
  asks for ``skip_special_tokens: false``.

Test knobs (:class:`ServerOptions`): fail the first N requests with a status code; report
log-probs after ``logit_bias`` (``"processed"``, the OpenAI API's semantics) or before it
(``"raw"``, vLLM V1's default); ignore ``logit_bias`` altogether (a server that cannot
restrict); leave ``stop_reason`` out (llama.cpp's servers only say ``"stop"``). :class:`ServerStats` counts requests and the most in flight at once.

Run one: ``python -m thinkrank.testing.openai_server MODEL_DIR --port 8000``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from thinkrank.engines.base import GenerationRequest
from thinkrank.engines.transformers import TransformersEngine
from thinkrank.errors import require


@dataclass
class ServerOptions:
    """Test behaviour. ``fail_first`` requests get ``fail_status`` (with a ``retry-after-ms``
    header when ``retry_after_ms`` is set)."""

    fail_first: int = 0
    fail_status: int = 500
    retry_after_ms: int | None = 20
    logprobs_mode: str = "processed"
    honour_logit_bias: bool = True
    report_stop_reason: bool = True  # False: like llama.cpp, "stop" for a stop string and for end-of-sequence alike


@dataclass
class ServerStats:
    """Request counts: all, injected failures, per path, and the most in flight at once."""

    requests: int = 0
    failed: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    paths: Counter[str] = field(default_factory=Counter)


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class EngineServer:
    """The FastAPI app (``.app``) serving ``engine`` under ``model_name``."""

    def __init__(self, engine: TransformersEngine, model_name: str | None = None, options: ServerOptions | None = None):
        self.engine = engine
        self.model_name = model_name or engine.model_name
        self.options = options or ServerOptions()
        if self.options.logprobs_mode not in ("processed", "raw"):
            raise ValueError(f"logprobs_mode must be 'processed' or 'raw', got {self.options.logprobs_mode!r}")
        self.stats = ServerStats()
        self._lock = threading.Lock()  # one model call at a time: the engine is not re-entrant
        self.app = self._build()

    # ---- app ------------------------------------------------------------------------------
    def _build(self) -> Any:
        fastapi = require("fastapi", "server")
        from fastapi.responses import JSONResponse

        app = fastapi.FastAPI(title="thinkrank test server")

        @app.middleware("http")
        async def count_and_fail(request: Any, call_next: Any) -> Any:
            stats = self.stats
            stats.requests += 1
            stats.paths[request.url.path] += 1
            if stats.failed < self.options.fail_first:
                stats.failed += 1
                headers = {"retry-after-ms": str(self.options.retry_after_ms)} if self.options.retry_after_ms else {}
                body = {"error": {"message": "injected failure", "type": "server_error", "code": self.options.fail_status}}
                return JSONResponse(body, status_code=self.options.fail_status, headers=headers)
            stats.in_flight += 1
            stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
            try:
                return await call_next(request)
            finally:
                stats.in_flight -= 1

        @app.exception_handler(_Refused)
        async def refused(request: Any, exc: _Refused) -> Any:
            return JSONResponse({"error": {"message": str(exc), "type": "invalid_request_error"}}, exc.status)

        @app.get("/v1/models")
        def models() -> dict[str, Any]:
            card = {"id": self.model_name, "object": "model", "created": 0, "owned_by": "thinkrank"}
            if self.engine.context_length is not None:
                card["max_model_len"] = self.engine.context_length
            return {"object": "list", "data": [card]}

        @app.post("/v1/completions")
        def completions(body: dict[str, Any] = fastapi.Body(...)) -> dict[str, Any]:
            self._check_model(body)
            prompt = body.get("prompt")
            if not isinstance(prompt, str):
                raise _Refused(400, "this test server takes one string prompt per request")
            choice, usage = self._complete(prompt, body)
            if not self.options.report_stop_reason:
                choice.pop("stop_reason")
            return _envelope("text_completion", self.model_name, choice, usage)

        @app.post("/v1/chat/completions")
        def chat(body: dict[str, Any] = fastapi.Body(...)) -> dict[str, Any]:
            self._check_model(body)
            if body.get("logprobs"):
                raise _Refused(400, "this test server has no log-probs on chat completions; use /v1/completions")
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise _Refused(400, "messages must be a non-empty list")
            prompt = self.engine.apply_chat_template(messages)
            choice, usage = self._complete(prompt, body)
            message = {"role": "assistant", "content": choice.pop("text")}
            choice.pop("logprobs")
            return _envelope("chat.completion", self.model_name, {**choice, "message": message}, usage)

        return app

    def _check_model(self, body: dict[str, Any]) -> None:
        if body.get("model") != self.model_name:
            raise _Refused(404, f"The model `{body.get('model')}` does not exist.")

    # ---- completion -----------------------------------------------------------------------
    def _complete(self, prompt: str, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
        max_tokens = int(body.get("max_tokens") or 16)
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        temperature = float(body.get("temperature", 1.0))
        seed = body.get("seed")
        if max_tokens < 1:
            raise _Refused(400, "max_tokens must be at least 1")
        if body.get("logprobs") is not None or body.get("logit_bias"):
            if max_tokens != 1:
                raise _Refused(400, "this test server supports logprobs/logit_bias on one-token completions only")
            return self._one_token(prompt, body, stop, temperature, seed)
        filters = _filters(body)
        if body.get("skip_special_tokens", True):
            return self._complete_skipping(prompt, max_tokens, stop, temperature, seed, filters)
        request = GenerationRequest(prompt, max_tokens, tuple(stop), temperature, seed, **filters)
        with self._lock:
            gen = self.engine.generate([request])[0]
        matched = None
        if gen.stop_reason == "stop":
            rest = self.engine.tokenizer.decode(gen.token_ids)[len(gen.text):]
            matched = min((s for s in stop if rest.startswith(s)), default=None)
        choice = {
            "index": 0, "text": gen.text, "logprobs": None,
            "finish_reason": "length" if gen.stop_reason == "length" else "stop", "stop_reason": matched,
        }
        return choice, _usage(gen.prompt_tokens, gen.num_tokens)

    def _complete_skipping(
        self, prompt: str, max_tokens: int, stop: list[str], temperature: float, seed: int | None,
        filters: dict[str, Any],
    ) -> tuple[dict[str, Any], dict[str, int]]:
        """vLLM's default: the text leaves special tokens out and stop strings are matched in
        that text. Stops that hold a special token can never match there, so the engine gets
        only the others; the text is then cut where the first stop shows."""
        specials = [t.content for t in self.engine.tokenizer.hf.added_tokens_decoder.values() if t.special]
        plain = tuple(s for s in stop if not any(t in s for t in specials))
        with self._lock:
            gen = self.engine.generate([GenerationRequest(prompt, max_tokens, plain, temperature, seed, **filters)])[0]
        text = self.engine.tokenizer.hf.decode(gen.token_ids, skip_special_tokens=True)
        finish, matched = ("length" if gen.stop_reason == "length" else "stop"), None
        found = [(text.find(s), s) for s in stop if s in text]
        if found:
            cut, matched = min(found)
            text, finish = text[:cut], "stop"
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish, "stop_reason": matched}
        return choice, _usage(gen.prompt_tokens, gen.num_tokens)

    def _one_token(
        self, prompt: str, body: dict[str, Any], stop: list[str], temperature: float, seed: int | None
    ) -> tuple[dict[str, Any], dict[str, int]]:
        import torch

        tok = self.engine.tokenizer
        vocab = min(len(tok.hf), self.engine.model.config.vocab_size)
        with self._lock:
            raw = torch.tensor(list(self.engine.next_token_logprobs([prompt], range(vocab))[0].values()))
        bias = torch.zeros(vocab)
        if self.options.honour_logit_bias:
            for key, value in (body.get("logit_bias") or {}).items():
                bias[int(key)] = max(-100.0, min(100.0, float(value)))
        processed = torch.log_softmax(raw + bias, dim=-1)
        if temperature > 0:
            generator = torch.Generator().manual_seed(int(seed) if seed is not None else torch.seed())
            token = int(torch.multinomial(torch.softmax((raw + bias) / temperature, -1), 1, generator=generator))
        else:
            token = int(torch.argmax(processed))
        reported = processed if self.options.logprobs_mode == "processed" else raw
        logprobs = None
        if body.get("logprobs") is not None:
            k = int(body["logprobs"])
            values, indices = torch.topk(reported, k) if k > 0 else (torch.empty(0), torch.empty(0, dtype=torch.long))
            logprobs = {
                "tokens": [tok.decode([token])],
                "token_logprobs": [float(reported[token])],
                "top_logprobs": [{tok.decode([int(i)]): float(v) for v, i in zip(values, indices)}],
                "text_offset": [0],
            }
        text, finish, matched = tok.decode([token]), "length", None
        if token == tok.hf.eos_token_id:
            text, finish = "", "stop"
        for s in stop:
            if s in text:
                text, finish, matched = text[: text.find(s)], "stop", s
        prompt_tokens = len(tok.encode_prompt(prompt))
        choice = {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish, "stop_reason": matched}
        return choice, _usage(prompt_tokens, 1)


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}


def _envelope(kind: str, model: str, choice: dict[str, Any], usage: dict[str, int]) -> dict[str, Any]:
    prefix = "chatcmpl" if kind == "chat.completion" else "cmpl"
    return {
        "id": f"{prefix}-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()), "model": model,
        "choices": [choice], "usage": usage,
    }


@contextmanager
def serving(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run ``app`` with uvicorn in a background thread; yields its base URL (``…/v1``).
    ``port=0`` takes a free port. The server stops when the block ends."""
    import socket

    uvicorn = require("uvicorn", "server")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="thinkrank-test-server")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m thinkrank.testing.openai_server", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="transformers model directory, .gguf file or hub id")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name", default=None)
    args = parser.parse_args(argv)
    server = EngineServer(TransformersEngine(args.model), args.served_model_name)
    with serving(server.app, args.host, args.port) as url:
        print(f"serving {server.model_name!r} at {url} (Ctrl-C stops)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


def _filters(body: dict[str, Any]) -> dict[str, Any]:
    """The request's sampling filters as vLLM's server reads them (``top_k`` -1 or 0, ``top_p`` 1
    and ``min_p`` 0 are off), refused with HTTP 400 when out of range."""
    from thinkrank.engines.base import check_filters
    from thinkrank.errors import InvalidInputError

    top_k = body.get("top_k")
    given = {"top_p": body.get("top_p"), "top_k": None if top_k in (-1, 0) else top_k, "min_p": body.get("min_p")}
    try:
        check_filters(given["top_p"], given["top_k"], given["min_p"])
    except InvalidInputError as exc:
        raise _Refused(400, str(exc)) from exc
    return {k: v for k, v in given.items() if v is not None}


if __name__ == "__main__":
    main()
