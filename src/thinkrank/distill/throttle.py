"""Pacing for API teachers: a requests-per-minute limit shared by all worker threads, and
exponential backoff with jitter between retries."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable


class RateLimiter:
    """At most ``rpm`` request starts per minute, spaced evenly (one every ``60/rpm`` seconds).

    Even spacing rather than bursts: providers count requests over short windows, and a burst
    of ``concurrency`` requests at start-up is what trips their 429s. ``rpm`` of None or 0
    means no limit.
    """

    def __init__(self, rpm: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 60.0 / rpm if rpm else 0.0
        self._clock, self._sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Block until this caller may start a request."""
        if not self.interval:
            return
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)


def backoff_delay(attempt: int, base: float, cap: float, retry_after: float | None = None,
                  rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (0 = the first retry).

    ``base * 2**attempt`` capped at ``cap``, scaled by a random factor in [0.5, 1] so that
    threads that failed together do not retry together. A server's ``Retry-After`` is a floor.
    """
    draw = rng.random() if rng is not None else random.random()
    delay = min(cap, base * (2 ** attempt)) * (0.5 + 0.5 * draw)
    if retry_after is not None:
        delay = max(delay, min(retry_after, max(cap, 60.0)))
    return delay


def retry_after_seconds(headers: object) -> float | None:
    """The ``Retry-After`` (or ``retry-after-ms``) header in seconds, when it is a number."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = get(name)
        if value is not None:
            try:
                return max(float(value) * scale, 0.0)
            except ValueError:
                return None
    return None
