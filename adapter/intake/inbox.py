"""The way into the durable inbox: every notification, polled change, sweep and recheck.

- ``enqueue`` stores a normalised ``Notification`` (as an ``InboxPayload``) and returns only once
  it is stored: the webhook acknowledges a delivery after that, never before. The same delivery
  is stored once.
- ``catch_up`` (an empty rest-hook ping, a gap in backport event numbers, the periodic
  reconciliation sweep, or ``poll``) searches the EMR for changes since the stored watermark and
  enqueues them; the watermark moves once they are stored.
- ``recheck`` queues a procedure the ledger holds on more than one day, so both are recomputed
  (the recheck policy: once per ledger state, at most ``MAX_RECHECKS`` in a row).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, tzinfo

from adapter.emr.client import FhirClient
from adapter.intake.events import ChangeEvent, InboxPayload, Notification
from adapter.intake.polling import Watermark, poll, stamp
from adapter.observe import Metrics
from adapter.store import SqlStore

log = logging.getLogger(__name__)
WATERMARK = "poll-watermark"
LAST_PRUNE = "last-prune"
MAX_RECHECKS = 5  # rechecks in a row for one procedure before giving up until the next sweep


@dataclass
class IntakeCounters:
    notifications: int = 0
    duplicates: int = 0
    catch_ups: int = 0


class Inbox:
    """Notifications into the store's inbox, for the workers of ``adapter.service``."""

    def __init__(
        self,
        emr: FhirClient,
        store: SqlStore,
        *,
        zone: tzinfo | None,
        metrics: Metrics,
        clock: Callable[[], datetime],
        lookback: timedelta = timedelta(days=1),
        on_stored: Callable[[], None] = lambda: None,
        max_events: int = 500,
        retention_days: float = 30.0,
        context: bool = False,
    ) -> None:
        self.emr = emr
        self.context = context  # polls search the patient's context too (CarePlan, ...)
        self.store = store
        self.zone = zone
        self.metrics = metrics
        self.clock = clock
        self.lookback = lookback
        self.on_stored = on_stored  # idle workers of this process look at once
        self.max_events = max_events  # a notification naming more is split into several items
        self.retention_days = retention_days  # done rows and runs are kept this long
        self.counters = IntakeCounters()

    def enqueue(
        self, notification: Notification, source: str | None = None, dedupe: str | None = None
    ) -> None:
        """Store a notification durably (returns once stored). One naming more than
        ``max_events`` resources becomes several items of at most that many (so one delivery
        cannot become an item that outlives its lease); a catch-up rides on the first."""
        events = notification.events
        if len(events) > self.max_events:
            for n, start in enumerate(range(0, len(events), self.max_events)):
                part = replace(
                    notification,
                    events=events[start : start + self.max_events],
                    catch_up=notification.catch_up and n == 0,
                )
                self._store(part, source, dedupe and f"{dedupe}#{n}")
            self.metrics.inc("notifications_split_total")
            return
        self._store(notification, source, dedupe)

    def _store(self, notification: Notification, source: str | None, dedupe: str | None) -> None:
        self.counters.notifications += 1
        stored = self.store.enqueue(
            InboxPayload.of(notification, self.zone).to_json(),
            source=source or notification.source,
            dedupe=dedupe or notification.dedupe(),
        )
        if stored:
            self.metrics.inc("notifications_received", kind=notification.kind)
            self.on_stored()
        else:
            self.counters.duplicates += 1
            self.metrics.inc("notifications_duplicate")

    def watermark(self) -> Watermark:
        raw = self.store.get_value(WATERMARK)
        if raw:
            return Watermark.from_json(json.loads(raw))
        return Watermark(since=stamp(self.clock() - self.lookback))

    def catch_up(self) -> int:
        """Enqueue every change since the watermark; then move the watermark."""
        events, mark = poll(self.emr, self.watermark(), context=self.context)
        for ev in events:
            self.enqueue(Notification(events=(ev,)), source="poll")
        self.store.set_value(WATERMARK, json.dumps(mark.as_json()))
        # the durable backstop: any procedure still on two days (a recheck lost to a crash, a
        # dead-lettered item) is queued again at every sweep
        self.recheck(set(self.store.procs_on_several_days()))
        for kind in mark.truncated:
            self.metrics.inc("history_truncated_total", kind=kind)
        self.counters.catch_ups += 1
        self.prune_if_due()
        return len(events)

    def prune_if_due(self, every: float = 3600.0) -> int:
        """Retention: done rows and runs older than ``retention_days`` go, at most once an hour
        (the sweep calls this); how many rows were deleted."""
        now = self.store.clock()
        last = self.store.get_value(LAST_PRUNE)
        if last is not None and now - float(last) < every:
            return 0
        deleted = self.store.prune(now - self.retention_days * 86400)
        self.store.set_value(LAST_PRUNE, repr(now))
        if deleted:
            self.metrics.inc("inbox_pruned", deleted)
            log.info("retention: %d done inbox rows and runs deleted", deleted)
        return deleted

    def recheck(self, procs: set[str], generation: int = 1) -> None:
        """A procedure the ledger holds on more than one day was billed on one of them from an
        older read (a worker that read a day before the procedure moved, and wrote after the
        move was synced): queue it, so both days are recomputed. Once per ledger state (each
        day's last write is part of the key); a chain of rechecks that does not converge (an
        EMR whose searches lag behind its writes) stops after ``MAX_RECHECKS`` with an error
        in the log, and the sweep tries again later."""
        for proc in sorted(procs):
            rows = self.store.ledger_rows(proc)
            if len(rows) < 2:
                continue
            if generation > MAX_RECHECKS:
                log.error("%s is still on %d days after %d rechecks", proc, len(rows), MAX_RECHECKS)
                self.metrics.inc("rechecks_exhausted_total")
                continue
            state = ",".join(f"{day}@{version}@{written}" for day, version, written in rows)
            log.info("%s is on %d days in the ledger; rechecking", proc, len(rows))
            self.metrics.inc("rechecks_total")
            event = ChangeEvent("Procedure", proc.split("/", 1)[1], None, None, "recheck")
            self.enqueue(
                Notification(events=(event,), recheck=generation),
                source="recheck",
                dedupe=f"recheck:{proc}:{state}",
            )
