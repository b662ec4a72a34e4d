"""Micro-batching: the documents of concurrent requests share engine calls.

Requests arrive as :class:`Job` s, each a list of units (pointwise: one (query, document) pair
per unit; listwise: the whole request as one unit) weighted by their documents. One loop takes
units first come, first served, up to ``max_batch_size`` documents and ``max_batch_requests``
requests, and hands them to ``compute`` in a single worker thread (the engine is not
re-entrant, and the event loop stays free to accept requests meanwhile). A large request is
split across calls and a small one rides along with others; each unit's result is delivered as
its call finishes, so streaming responses see their documents arrive call by call. When the
loop was idle it waits ``max_wait`` seconds for company first: an engine call over 8 documents
costs little more than over 1.

Memory is bounded by ``max_queue`` documents (waiting or in progress): a job that does not fit
is refused with :class:`QueueFull`, whose ``retry_after`` comes from the measured throughput.

A failed engine call that served several requests is split in halves and each retried, down to
one request: one bad request costs the others a few extra calls, never their answer.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any


class QueueFull(Exception):
    """No room for the job's documents; try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the queue is full; retry after {retry_after}s")
        self.retry_after = retry_after


class Closed(Exception):
    """The batcher is shutting down and takes no new work."""


@dataclass(eq=False)
class Job:
    """One request's work. ``key`` picks the reranker variant that computes it (jobs with other
    keys never share a call). ``on_results(pairs)`` is called in the event loop with
    ``(unit index, result)`` pairs as they finish; ``future`` resolves to all results in order."""

    key: Hashable
    units: Sequence[Any]
    weights: Sequence[int]
    on_results: Callable[[list[tuple[int, Any]]], None] | None = None
    results: list[Any] = field(init=False)
    future: asyncio.Future[list[Any]] = field(init=False)
    taken: int = 0
    finished: int = 0
    cancelled: bool = False

    def __post_init__(self) -> None:
        self.results = [None] * len(self.units)
        self.future = asyncio.get_running_loop().create_future()

    @property
    def weight(self) -> int:
        return sum(self.weights)


@dataclass
class BatchStats:
    """What one engine call did: for metrics."""

    key: Hashable
    documents: int
    requests: int
    seconds: float


@dataclass
class _Part:
    job: Job
    start: int
    end: int


class Batcher:
    """Runs jobs through ``compute(key, units) -> results`` (called in ``executor``), batched.

    ``observe(stats)`` is called after every engine call."""

    def __init__(self, compute: Callable[[Hashable, list[Any]], list[Any]], executor: Executor, *,
                 max_batch_size: int, max_batch_requests: int, max_wait: float, max_queue: int,
                 observe: Callable[[BatchStats], None] | None = None) -> None:
        self.compute, self.executor = compute, executor
        self.max_batch_size, self.max_batch_requests = max_batch_size, max_batch_requests
        self.max_wait, self.max_queue = max_wait, max_queue
        self.observe = observe
        self.pending = 0  # documents submitted and not yet delivered
        self._jobs: deque[Job] = deque()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._rate = 0.0  # documents per second, smoothed

    # ---- the outside --------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="thinkrank-batcher")

    def submit(self, job: Job) -> None:
        """Queue ``job``. Raises :class:`QueueFull` or :class:`Closed` without queueing it."""
        if self._closing:
            raise Closed()
        if self.pending + job.weight > self.max_queue:
            raise QueueFull(self.retry_after())
        self.pending += job.weight
        self._jobs.append(job)
        self._wakeup.set()

    def cancel(self, job: Job) -> None:
        """Drop the job's units that have not started (a timeout, a client that left)."""
        if job.cancelled:
            return
        job.cancelled = True
        self.pending -= sum(job.weights[job.taken:])
        job.taken = len(job.units)

    def retry_after(self) -> int:
        """Seconds until the queue has room, from the measured throughput (1 to 60)."""
        if self._rate <= 0:
            return 1
        return max(1, min(60, math.ceil(self.pending / self._rate)))

    async def close(self) -> None:
        """Take no new jobs, finish the queued ones, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task

    # ---- the loop -----------------------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._drop_finished()
            if not self._jobs:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._gather(loop)
            for key, parts in self._group(self._take()):
                await self._call(loop, key, parts)

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait up to ``max_wait`` for a full batch."""
        deadline = loop.time() + self.max_wait
        while not self._closing and self._waiting() < self.max_batch_size and len(self._jobs) < self.max_batch_requests:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _waiting(self) -> int:
        return sum(sum(j.weights[j.taken:]) for j in self._jobs)

    def _drop_finished(self) -> None:
        while self._jobs and self._jobs[0].taken >= len(self._jobs[0].units):
            self._jobs.popleft()

    def _take(self) -> list[_Part]:
        """Units first come, first served, within the batch caps (always at least one unit)."""
        parts: list[_Part] = []
        size = 0
        for job in list(self._jobs):
            if job.taken >= len(job.units):
                continue
            if len(parts) >= self.max_batch_requests:
                break
            start = end = job.taken
            while end < len(job.units) and (size == 0 or size + job.weights[end] <= self.max_batch_size):
                size += job.weights[end]
                end += 1
            if end == start:
                break
            job.taken = end
            parts.append(_Part(job, start, end))
            if end < len(job.units):
                break  # the batch is full; this job goes on in the next call
        self._drop_finished()
        return parts

    @staticmethod
    def _group(parts: list[_Part]) -> list[tuple[Hashable, list[_Part]]]:
        groups: dict[Hashable, list[_Part]] = {}
        for part in parts:
            groups.setdefault(part.job.key, []).append(part)
        return list(groups.items())

    async def _call(self, loop: asyncio.AbstractEventLoop, key: Hashable, parts: list[_Part]) -> None:
        """One engine call over ``parts``. When it fails and holds several requests, each half is
        tried again on its own (bisection), so that only the request whose input breaks the
        engine gets the error and the others their normal results."""
        units = [u for p in parts for u in p.job.units[p.start:p.end]]
        documents = sum(sum(p.job.weights[p.start:p.end]) for p in parts)
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(self.executor, self.compute, key, units)
        except Exception as exc:
            live = [p for p in parts if not p.job.cancelled]
            if len(live) <= 1:
                for part in parts:
                    self._fail(part, exc)
                return
            for part in parts:
                if part.job.cancelled:
                    self._deliver(part, [])  # gives back its documents' room in the queue
            half = len(live) // 2
            await self._call(loop, key, live[:half])
            await self._call(loop, key, live[half:])
            return
        seconds = time.perf_counter() - started
        rate = documents / max(seconds, 1e-6)
        self._rate = rate if self._rate == 0 else 0.7 * self._rate + 0.3 * rate
        if self.observe:
            self.observe(BatchStats(key, documents, len({id(p.job) for p in parts}), seconds))
        it = iter(results)
        for part in parts:
            self._deliver(part, [next(it) for _ in range(part.start, part.end)])

    def _deliver(self, part: _Part, results: list[Any]) -> None:
        job = part.job
        self.pending -= sum(job.weights[part.start:part.end])  # cancel() only took back the untaken units
        if job.cancelled:
            return
        for offset, result in enumerate(results):
            job.results[part.start + offset] = result
        job.finished += len(results)
        if job.on_results:
            job.on_results([(part.start + i, r) for i, r in enumerate(results)])
        if job.finished == len(job.units) and not job.future.done():
            job.future.set_result(job.results)

    def _fail(self, part: _Part, exc: Exception) -> None:
        job = part.job
        self.pending -= sum(job.weights[part.start:part.end])
        self.cancel(job)
        if not job.future.done():
            job.future.set_exception(exc)
