"""One request budget for all of the adapter's requests to one FHIR server: at most ``rate``
requests a second (in bursts of at most ``burst``) and at most ``concurrency`` at once, however
many workers share the client, so the adapter can never flood the EMR. A request waits for its
turn; nothing is dropped."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class RequestBudget:
    """A token bucket (``rate`` a second, ``burst`` deep) and a semaphore (``concurrency``)."""

    def __init__(
        self,
        rate: float,
        *,
        burst: int | None = None,
        concurrency: int = 8,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or concurrency < 1:
            raise ValueError("a request budget needs a positive rate and concurrency")
        self.rate = rate
        self.burst = float(burst if burst is not None else max(1, round(rate)))
        self.clock = clock
        self.sleep = sleep
        self._tokens = self.burst
        self._at = clock()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(concurrency)
        self.waited = 0.0  # seconds requests spent waiting for a token, for metrics

    def _take(self) -> float:
        """Take a token if one is there: 0; else the seconds until one will be."""
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self.rate

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the concurrent slots, after waiting for a token."""
        with self._slots:
            while (wait := self._take()) > 0:
                self.waited += wait
                self.sleep(wait)
            yield
