"""A teacher behind any OpenAI-compatible API (DeepSeek, vLLM, SGLang, OpenRouter, …), called
with the official ``openai`` client from a pool of threads, paced and retried."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from thinkrank.distill.answers import trace_from_response
from thinkrank.distill.records import Trace
from thinkrank.distill.teacher import Job, TeacherSettings, request_body
from thinkrank.distill.throttle import RateLimiter, backoff_delay, retry_after_seconds
from thinkrank.errors import EngineError, InvalidInputError, require

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
FATAL_STATUS = {401, 402, 403, 404}  # every other request would fail the same way


class APITeacher:
    """Sends each prompt to ``base_url`` and returns the reasoning and answer.

    Args:
        settings: model, ``chat`` or ``completions``, temperature, max_tokens, seed, extra fields.
        base_url / api_key: the server (``…/v1``) and its key.
        concurrency: requests in flight at once (threads).
        rpm: most request starts per minute (None: no limit).
        max_retries: retries of one request after a 429, a 5xx, a timeout or a broken reply.
        backoff / max_backoff: first retry delay and its cap, in seconds (doubling in between).
        timeout: seconds to wait for one response.

    Raises:
        MissingExtraError: the ``openai`` package is missing (``thinkrank[openai]``).
        InvalidInputError: a bad option.
    """

    def __init__(self, settings: TeacherSettings, *, base_url: str | None = None, api_key: str | None = None,
                 concurrency: int = 8, rpm: float | None = None, max_retries: int = 6, backoff: float = 1.0,
                 max_backoff: float = 60.0, timeout: float = 600.0) -> None:
        if settings.api not in ("chat", "completions"):
            raise InvalidInputError(f"an API teacher speaks chat or completions, not {settings.api!r}")
        if concurrency < 1 or max_retries < 0 or backoff < 0:
            raise InvalidInputError("concurrency must be >= 1, max_retries and backoff >= 0")
        openai = require("openai", "openai")
        self.settings = settings
        self.concurrency = concurrency
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff
        self.limiter = RateLimiter(rpm)
        self.retries = 0  # how many retries this teacher made (for the report)
        self._count_lock = threading.Lock()
        self._openai = openai
        # The client's own retries are off: ours are paced by the shared limiter and counted.
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "EMPTY", max_retries=0, timeout=timeout)
        self._rng = random.Random()

    def run(self, jobs: Sequence[Job]) -> Iterator[tuple[Job, Trace | Exception]]:
        """Yield ``(job, trace)`` or ``(job, error)`` as requests finish.

        At most ``4 * concurrency`` jobs are queued at a time, so stopping early (Ctrl-C, a fatal
        error) wastes little. Raises :class:`EngineError` on a 401/403/404-type error.
        """
        pending = iter(jobs)
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="teacher") as pool:
            inflight: dict[Future[Trace], Job] = {}
            try:
                while True:
                    for job in pending:
                        inflight[pool.submit(self._one, job)] = job
                        if len(inflight) >= 4 * self.concurrency:
                            break
                    if not inflight:
                        return
                    done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                    for future in done:
                        job = inflight.pop(future)
                        exc = future.exception()
                        if isinstance(exc, _Fatal):
                            raise EngineError(str(exc)) from exc.__cause__
                        if exc is not None and not isinstance(exc, Exception):
                            raise exc  # KeyboardInterrupt, SystemExit: not a failed job
                        yield job, (exc if exc is not None else future.result())
            finally:
                for future in inflight:
                    future.cancel()

    def _one(self, job: Job) -> Trace:
        for attempt in range(self.max_retries + 1):
            self.limiter.wait()
            try:
                return trace_from_response(self._call(job.prompt))
            except Exception as exc:  # sorted below: retry, give up on this job, or stop the run
                retry_after = self._classify(exc)
                if attempt == self.max_retries:
                    raise
                with self._count_lock:
                    self.retries += 1
                time.sleep(backoff_delay(attempt, self.backoff, self.max_backoff, retry_after, self._rng))
        raise AssertionError("unreachable")

    def _call(self, prompt: str) -> dict[str, Any]:
        _, body = request_body(self.settings, prompt)
        known = {"model", "messages", "prompt", "temperature", "max_tokens", "seed"}
        extra = {k: v for k, v in body.items() if k not in known}
        args = {k: v for k, v in body.items() if k in known}
        endpoint = self.client.chat.completions if self.settings.api == "chat" else self.client.completions
        response = endpoint.create(**args, extra_body=extra or None)
        return response.model_dump() if hasattr(response, "model_dump") else dict(response)

    def _classify(self, exc: Exception) -> float | None:
        """Return the server's Retry-After for a retryable error; re-raise anything else."""
        openai = self._openai
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            if status in FATAL_STATUS:
                raise _Fatal(f"the teacher API refused the request ({status}): {_message(exc)}; "
                             "check --base-url, the API key and --teacher-model") from exc
            if status in RETRY_STATUS or status >= 500:
                return retry_after_seconds(exc.response.headers)
            raise exc  # 400 and the like: this prompt will not work; the run goes on
        if isinstance(exc, (openai.APIConnectionError, EngineError)):
            return None
        raise exc


class _Fatal(Exception):
    """An error every request would hit; ends the run."""


def _message(exc: Exception) -> str:
    return " ".join(str(getattr(exc, "message", exc)).split())[:300]
