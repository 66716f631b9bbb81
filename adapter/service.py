"""The running service: webhook deliveries and polls in, patient-days synced out.

``Service`` owns a queue of normalised ``Notification``s (filled by the webhook receiver, the
poller and the catch-up sweep) and one worker thread that turns them into synced patient-days
through ``pipeline.handle_events``. A catch-up (an empty rest-hook ping, a gap in backport event
numbers, or the periodic sweep) searches the EMR for changes since the poll watermark.

The queue is in memory: a delivery is acknowledged once queued, so a crash loses what was queued
but not yet processed until the next catch-up sweep finds it again (the durable inbox of the
reliability work replaces this queue).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from adapter.domain import Rulebook
from adapter.errors import AdapterError, TemporaryServerError
from adapter.fhir.client import FhirClient
from adapter.intake.live import ChangeEvent
from adapter.intake.polling import Watermark, poll
from adapter.intake.webhook import Notification
from adapter.pipeline import Options, SyncResult, handle_events

log = logging.getLogger(__name__)


@dataclass
class Counters:
    notifications: int = 0
    days: int = 0
    written: int = 0
    failures: int = 0
    catch_ups: int = 0
    results: list[SyncResult] = field(default_factory=list)


class Service:
    def __init__(
        self,
        emr: FhirClient,
        target: FhirClient,
        rulebook: Rulebook,
        options: Options,
        state_dir: Path,
        *,
        lookback: timedelta = timedelta(days=1),
        attempts: int = 5,
        retry_delay: float = 2.0,
        keep_results: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.emr = emr
        self.target = target
        self.rulebook = rulebook
        self.options = options
        self.state_path = state_dir / "poll-watermark.json"
        self.lookback = lookback
        self.attempts = attempts
        self.retry_delay = retry_delay
        self.keep_results = keep_results
        self.clock = clock
        self.queue: queue.Queue[tuple[Notification, int]] = queue.Queue()
        self.counters = Counters()
        self.stopping = threading.Event()
        self.idle = threading.Event()
        self.idle.set()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None

    # -- intake ------------------------------------------------------------------------------
    def enqueue(self, notification: Notification) -> None:
        self.counters.notifications += 1
        self.idle.clear()
        self.queue.put((notification, 1))

    def watermark(self) -> Watermark:
        mark = Watermark.load(self.state_path)
        if mark.since is None:
            start = self.clock() - self.lookback
            mark = Watermark(since=start.isoformat().replace("+00:00", "Z"))
        return mark

    def catch_up(self) -> list[ChangeEvent]:
        """Changes since the watermark (the state is saved once they have been handled)."""
        with self._lock:
            mark = self.watermark()
            events, new_mark = poll(self.emr, mark)
            self.counters.catch_ups += 1
            return self._handle(events, after=lambda: new_mark.save(self.state_path))

    # -- processing --------------------------------------------------------------------------
    def _handle(
        self, events: list[ChangeEvent], after: Callable[[], None] | None = None
    ) -> list[ChangeEvent]:
        options = replace(self.options, evaluated_at=self.clock())
        results = handle_events(self.emr, self.target, self.rulebook, events, options)
        self.counters.days += len(results)
        self.counters.written += sum(1 for r in results if r.write.changed)
        if self.keep_results:
            self.counters.results += results
        if after is not None:
            after()
        return events

    def process(self, notification: Notification) -> None:
        if notification.events:
            self._handle(list(notification.events))
        if notification.catch_up:
            self.catch_up()

    def run_worker(self) -> None:
        while not self.stopping.is_set() or not self.queue.empty():
            try:
                notification, attempt = self.queue.get(timeout=0.2)
            except queue.Empty:
                self.idle.set()
                continue
            try:
                self.process(notification)
            except (AdapterError, OSError) as err:
                self.counters.failures += 1
                if attempt < self.attempts and not self.stopping.is_set():
                    delay = self.retry_delay * 2 ** (attempt - 1)
                    kind = "temporary" if isinstance(err, TemporaryServerError) else "error"
                    log.warning(
                        "notification failed (%s, attempt %d): %s; retrying in %.1fs",
                        kind, attempt, type(err).__name__, delay,
                    )  # fmt: skip
                    threading.Timer(delay, self.queue.put, ((notification, attempt + 1),)).start()
                else:
                    log.error(
                        "notification dropped after %d attempts: %s; the next catch-up sweep "
                        "will find the change again",
                        attempt,
                        type(err).__name__,
                    )
            finally:
                self.queue.task_done()

    def start(self) -> None:
        self._worker = threading.Thread(target=self.run_worker, name="worker", daemon=True)
        self._worker.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking work; finish what is queued (up to ``timeout`` seconds)."""
        self.stopping.set()
        if self._worker is not None:
            self._worker.join(timeout)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.queue.unfinished_tasks == 0:
                return True
            time.sleep(0.05)
        return False
