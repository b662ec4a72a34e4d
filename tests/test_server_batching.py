"""The server's micro-batcher on its own: which units share a call, in what order, within which
caps, and what a full queue, a cancelled job and a failing call do. ``compute`` here is a plain
function that records its calls (the batcher is generic; the engine is exercised in test_server)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")

from thinkrank.server.batching import Batcher, Closed, Job, QueueFull  # noqa: E402


class Recorder:
    """compute(key, units) -> [(key, unit)], recording each call; ``gate`` holds calls until set."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[int]]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail_on: int | None = None

    def __call__(self, key, units):
        self.gate.wait(10)
        self.calls.append((key, list(units)))
        if self.fail_on is not None and self.fail_on in units:
            raise RuntimeError("engine failed")
        return [(key, u) for u in units]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def make(recorder, **kw) -> Batcher:
    options = dict(max_batch_size=4, max_batch_requests=8, max_wait=0.05, max_queue=100)
    options.update(kw)
    return Batcher(recorder, ThreadPoolExecutor(1), **options)


def test_concurrent_jobs_share_calls_first_come_first_served_within_the_size_cap():
    async def main():
        rec = Recorder()
        b = make(rec)
        b.start()
        jobs = [Job("k", [10 * n + i for i in range(3)], [1] * 3) for n in range(3)]
        for j in jobs:
            b.submit(j)
        results = await asyncio.gather(*(j.future for j in jobs))
        await b.close()
        return rec.calls, results

    calls, results = run(main())
    assert [units for _, units in calls] == [[0, 1, 2, 10], [11, 12, 20, 21], [22]]
    assert results == [[("k", 10 * n + i) for i in range(3)] for n in range(3)]


def test_jobs_with_other_keys_never_share_a_call_and_request_cap_holds():
    async def main():
        rec = Recorder()
        b = make(rec, max_batch_size=100, max_batch_requests=2)
        b.start()
        jobs = [Job(key, [n], [1]) for n, key in enumerate("aabab")]
        for j in jobs:
            b.submit(j)
        await asyncio.gather(*(j.future for j in jobs))
        await b.close()
        return rec.calls

    calls = run(main())
    assert calls == [("a", [0, 1]), ("b", [2]), ("a", [3]), ("b", [4])]


def test_results_are_delivered_call_by_call_to_on_results():
    async def main():
        rec = Recorder()
        b = make(rec, max_batch_size=2)
        b.start()
        seen: list[list[int]] = []
        job = Job("k", [1, 2, 3, 4, 5], [1] * 5, on_results=lambda pairs: seen.append([i for i, _ in pairs]))
        b.submit(job)
        await job.future
        await b.close()
        return seen

    assert run(main()) == [[0, 1], [2, 3], [4]]


def test_a_full_queue_refuses_without_queueing_and_frees_as_work_finishes():
    async def main():
        rec = Recorder()
        rec.gate.clear()  # the first call blocks: nothing finishes
        b = make(rec, max_queue=5, max_wait=0)
        b.start()
        first = Job("k", [1, 2, 3], [1, 1, 1])
        b.submit(first)
        with pytest.raises(QueueFull) as full:
            b.submit(Job("k", [4, 5, 6], [1, 1, 1]))
        assert full.value.retry_after >= 1 and b.pending == 3
        b.submit(Job("k", [7, 8], [1, 1]))  # exactly fits
        rec.gate.set()
        await first.future
        await b.close()
        return b.pending

    assert run(main()) == 0


def test_a_cancelled_job_drops_its_waiting_units():
    async def main():
        rec = Recorder()
        rec.gate.clear()
        b = make(rec, max_batch_size=2, max_wait=0)
        b.start()
        job = Job("k", [1, 2, 3, 4, 5, 6], [1] * 6)
        b.submit(job)
        await asyncio.sleep(0.05)  # the first call (units 1, 2) has started
        b.cancel(job)
        rec.gate.set()
        await b.close()
        return rec.calls, b.pending, job.future.done()

    calls, pending, done = run(main())
    assert calls == [("k", [1, 2])] and pending == 0 and not done


def test_a_failing_call_fails_its_jobs_and_the_batcher_goes_on():
    async def main():
        rec = Recorder()
        rec.fail_on = 2
        b = make(rec, max_batch_size=10)
        b.start()
        bad, good = Job("k", [1, 2], [1, 1]), Job("other", [3], [1])
        b.submit(bad)
        b.submit(good)
        with pytest.raises(RuntimeError, match="engine failed"):
            await bad.future
        assert await good.future == [("other", 3)]
        await b.close()
        with pytest.raises(Closed):
            b.submit(Job("k", [9], [1]))
        return b.pending

    assert run(main()) == 0


def test_weights_count_documents_and_a_heavy_unit_runs_alone():
    async def main():
        rec = Recorder()
        b = make(rec, max_batch_size=4)
        b.start()
        jobs = [Job("k", ["big"], [10]), Job("k", ["s1"], [2]), Job("k", ["s2"], [2])]
        for j in jobs:
            b.submit(j)
        await asyncio.gather(*(j.future for j in jobs))
        await b.close()
        return rec.calls

    assert run(main()) == [("k", ["big"]), ("k", ["s1", "s2"])]


def test_a_failing_call_is_bisected_so_only_the_request_that_breaks_it_fails():
    async def main():
        rec = Recorder()
        rec.fail_on = 3
        b = make(rec, max_batch_size=10)
        b.start()
        first, poison, last = Job("k", [1, 2], [1, 1]), Job("k", [3], [1]), Job("k", [4, 5], [1, 1])
        for j in (first, poison, last):
            b.submit(j)
        with pytest.raises(RuntimeError, match="engine failed"):
            await poison.future
        got = await first.future, await last.future
        await b.close()
        return rec.calls, got, b.pending

    calls, (first, last), pending = run(main())
    assert first == [("k", 1), ("k", 2)] and last == [("k", 4), ("k", 5)]
    # the shared call, then halves of its requests: [first] | [poison, last] -> [poison] | [last]
    assert [units for _, units in calls] == [[1, 2, 3, 4, 5], [1, 2], [3, 4, 5], [3], [4, 5]]
    assert pending == 0
