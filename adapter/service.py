"""The running service: notifications in through a durable inbox, patient-days synced out.

- ``enqueue`` stores a normalised ``Notification`` in the store's inbox and returns only once it
  is stored: the webhook acknowledges a delivery after that, never before.
- ``catch_up`` (an empty rest-hook ping, a gap in backport event numbers, the periodic
  reconciliation sweep, or ``poll``) searches the EMR for changes since the stored watermark and
  enqueues them; the watermark moves once they are stored.
- Workers (``work_once``; one thread in ``serve``, or ``charge-adapter work`` in other
  replicas) claim inbox rows under a lease, resolve them to patient-days and sync each day under
  the store's day lock, then record the ledger. A redelivery or an older version arriving late
  is recognised from the ledger and changes nothing; anything written is idempotent anyway.
- A failure is retried with backoff by the inbox; after the configured attempts the row becomes a
  dead letter (``charge-adapter dead-letters``).
Logs carry ids, counts and error types only.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, overload

from adapter.domain import Rulebook
from adapter.errors import AdapterError, FatalServerError
from adapter.fhir import codes
from adapter.fhir.build import day_key_of
from adapter.fhir.client import FhirClient
from adapter.fhir.parse import ref_key, reference_of, service_date_of
from adapter.intake.live import ChangeEvent, DayKey, days_of
from adapter.intake.polling import Watermark, poll, stamp
from adapter.intake.webhook import Notification
from adapter.observe import Metrics, correlated
from adapter.pipeline import Options, SyncResult, sync_day
from adapter.store import InboxItem, SqlStore

log = logging.getLogger(__name__)
WATERMARK = "poll-watermark"
MAX_RECHECKS = 5  # rechecks in a row for one procedure before giving up until the next sweep


@dataclass
class Counters:
    notifications: int = 0
    duplicates: int = 0
    days: int = 0
    written: int = 0
    stale: int = 0
    failures: int = 0
    dead: int = 0
    catch_ups: int = 0


@dataclass(frozen=True, slots=True)
class Change:
    """One change that leads to a patient-day being synced."""

    key: str  # Kind/id ("": the day came from a search, not from a known change)
    version: str | None
    day: str | None  # the ledger day the changed procedure itself is on, when known
    deleted: bool = False


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _event_json(ev: ChangeEvent, zone: tzinfo | None) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": ev.kind, "id": ev.id, "version": ev.version, "source": ev.source}
    if ev.deleted:
        out["deleted"] = True
    if ev.resource is not None and ev.kind == "Procedure":
        subject, dos = reference_of(ev.resource.get("subject")), service_date_of(ev.resource, zone)
        if subject and dos:
            out["day"] = [ref_key(subject), dos]
    return out


def payload_of(n: Notification, zone: tzinfo | None = None) -> dict[str, Any]:
    """What the inbox keeps of a notification: references, versions and days (dates of service
    in the site's ``zone``), no bodies."""
    return {
        "events": [_event_json(e, zone) for e in n.events],
        "catch_up": n.catch_up,
        "subscription": n.subscription,
        "kind": n.kind,
        **({"recheck": n.recheck} if n.recheck else {}),
    }


def dedupe_of(n: Notification) -> str | None:
    if n.catch_up or not n.events or any(e.version is None for e in n.events):
        return None
    keys = ",".join(
        sorted(f"{e.key}@{e.version}{'/deleted' if e.deleted else ''}" for e in n.events)
    )
    return f"{n.events[0].source}:{keys}"


class Service:
    def __init__(
        self,
        emr: FhirClient,
        target: FhirClient,
        rulebook: Rulebook,
        options: Options,
        store: SqlStore,
        *,
        lookback: timedelta = timedelta(days=1),
        lease: float = 120.0,
        batch: int = 10,
        worker: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.emr = emr
        self.target = target
        self.rulebook = rulebook
        self.options = options
        self.store = store
        self.lookback = lookback
        self.lease = lease
        self.batch = batch
        self.worker = worker or worker_id()
        self.clock = clock
        self.counters = Counters()
        self.metrics = Metrics()
        self.metrics.gauge("dead_letters", lambda: {(): float(self.store.counts().get("dead", 0))})
        self.metrics.gauge(
            "inbox_rows",
            lambda: {(("status", k),): float(v) for k, v in self.store.counts().items()},
        )
        self.metrics.gauge(
            "retries_total",
            lambda: {
                (): float(
                    self.emr.retries + (self.target.retries if self.target is not self.emr else 0)
                )
            },
        )
        self.stopping = threading.Event()
        self._wake = threading.Event()  # set by enqueue: idle workers look at once
        self._threads: list[threading.Thread] = []

    # -- intake ------------------------------------------------------------------------------
    def enqueue(
        self, notification: Notification, source: str | None = None, dedupe: str | None = None
    ) -> None:
        """Store a notification durably (returns once stored)."""
        src = source or (
            notification.events[0].source if notification.events else notification.kind
        )
        self.counters.notifications += 1
        if not self.store.enqueue(
            payload_of(notification, self.options.zone),
            source=src,
            dedupe=dedupe or dedupe_of(notification),
        ):
            self.counters.duplicates += 1
        else:
            self._wake.set()

    def watermark(self) -> Watermark:
        raw = self.store.get_value(WATERMARK)
        if raw:
            return Watermark.from_json(json.loads(raw))
        start = self.clock() - self.lookback
        return Watermark(since=stamp(start))

    def catch_up(self) -> int:
        """Enqueue every change since the watermark; then move the watermark."""
        events, mark = poll(self.emr, self.watermark())
        for ev in events:
            self.enqueue(Notification(events=(ev,)), source="poll")
        self.store.set_value(WATERMARK, json.dumps(mark.as_json()))
        # the durable backstop: any procedure still on two days (a recheck lost to a crash, a
        # dead-lettered item) is queued again at every sweep
        self._recheck(set(self.store.procs_on_several_days()))
        for kind in mark.truncated:
            self.metrics.inc("history_truncated_total", kind=kind)
        self.counters.catch_ups += 1
        return len(events)

    # -- work --------------------------------------------------------------------------------
    def _days(self, payload: dict[str, Any]) -> dict[DayKey, list[Change]]:
        """The patient-days a payload touches, each with the changes that led to it."""
        days: dict[DayKey, list[Change]] = {}
        unknown: list[ChangeEvent] = []
        for e in payload.get("events") or []:
            key = f"{e['kind']}/{e['id']}"
            own = day_key_of(e["day"][0], e["day"][1]) if e.get("day") else None
            change = Change(key, str(e["version"]) if e.get("version") else None, own,
                            bool(e.get("deleted")))  # fmt: skip
            if self._processed(change):
                self.counters.stale += 1
                continue  # already processed at this version or a later one, on every day
            if e.get("day"):
                days.setdefault((e["day"][0], e["day"][1]), []).append(change)
            else:
                unknown.append(ChangeEvent(e["kind"], e["id"], None, change.version,
                                           e.get("source", ""), change.deleted))  # fmt: skip
            old_days = set(self.store.days_with(key))  # a procedure that moved or went
            if key.startswith("Procedure/") and (
                change.deleted or (change.day is None and not old_days)
            ):
                # days this store never recorded (a crash before the ledger write, a new state
                # directory): from the ChargeItems' day tags on the target
                old_days |= self._billed_days(key, strict=change.deleted)
            for old in sorted(old_days):
                patient, _, dos = old.rpartition(":")
                days.setdefault((f"Patient/{patient}", dos), []).append(change)
        if unknown:
            found: set[str] = set()  # an Encounter's procedures: the days they were on before
            for day in days_of(self.emr, unknown, zone=self.options.zone, procedures=found):
                days.setdefault(day, []).append(Change("", None, None))  # never processed
            for key in sorted(found):
                for old in self.store.days_with(key):
                    patient, _, dos = old.rpartition(":")
                    days.setdefault((f"Patient/{patient}", dos), []).append(Change(key, None, None))
        return days

    def _billed_days(self, key: str, *, strict: bool) -> set[str]:
        """The patient-days (ledger form) of the adapter's ChargeItems for a procedure, from
        their day tags on the write target: a deleted procedure is voided even when this
        store has no ledger row for it (a new state directory, another replica's store).
        A target that ignores ``service`` is not paged through: for a delete (``strict``) that
        is an error (its lines could stay billed), otherwise a warning."""
        days: set[str] = set()
        unrelated = 0
        for item in self.target.search("ChargeItem", [("service", key), ("_count", "200")]):
            services = {ref_key(ref) for s in item.get("service") or [] if (ref := reference_of(s))}
            if key not in services:
                unrelated += 1
                if unrelated >= 200:
                    message = f"the target ignores ChargeItem?service=: {key}'s billed days unknown"
                    if strict:
                        raise FatalServerError(message)
                    log.warning(message)
                    break
                continue
            for tag in (item.get("meta") or {}).get("tag") or []:
                if isinstance(tag, dict) and tag.get("system") == codes.CS_PATIENT_DAY:
                    code = str(tag.get("code") or "")
                    if ":" in code:
                        days.add(code)
        return days

    def _recheck(self, procs: set[str], generation: int = 1) -> None:
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
            self.enqueue(
                Notification(
                    events=(
                        ChangeEvent("Procedure", proc.split("/", 1)[1], None, None, "recheck"),
                    ),
                    recheck=generation,
                ),
                source="recheck",
                dedupe=f"recheck:{proc}:{state}",
            )

    def process(self, payload: dict[str, Any]) -> list[SyncResult]:
        if payload.get("catch_up"):
            self.catch_up()
        results = []
        # the payload's own procedures too: a retry after a crash between the last sync and
        # the recheck finds its days already processed, but the procedure may still be on two
        elsewhere: set[str] = {
            f"Procedure/{e['id']}"
            for e in payload.get("events") or []
            if e.get("kind") == "Procedure"
        }
        for (patient, dos), changes in sorted(self._days(payload).items()):
            result = self.sync(patient, dos, changes=changes, elsewhere=elsewhere)
            if result is not None:
                results.append(result)
        self._recheck(elsewhere, int(payload.get("recheck") or 0) + 1)
        return results

    def _processed(self, change: Change) -> bool:
        return (
            change.key.startswith("Procedure/")
            and change.version is not None
            and not change.deleted
            and self.store.processed(change.key, change.version, change.day)
        )

    @overload
    def sync(self, patient: str, dos: str) -> SyncResult: ...
    @overload
    def sync(
        self,
        patient: str,
        dos: str,
        *,
        changes: Sequence[Change],
        elsewhere: set[str] | None = None,
    ) -> SyncResult | None: ...
    def sync(
        self,
        patient: str,
        dos: str,
        *,
        changes: Sequence[Change] = (),
        elsewhere: set[str] | None = None,
    ) -> SyncResult | None:
        """Recompute and write back one patient-day. With ``changes`` (what led here), return
        None without syncing when, by the time this worker holds the day, every one of them has
        been processed on every day it touches (the second notification of one EMR
        transaction, handled by another worker meanwhile). Procedures the ledger also holds on
        another day are added to ``elsewhere`` (rechecked by the caller once all its days are
        synced), or rechecked at once without it."""
        options = replace(self.options, evaluated_at=self.clock())
        day = day_key_of(patient, dos)
        started = time.monotonic()
        with self.store.day_lock(day):
            if changes and all(self._processed(c) for c in changes):
                self.counters.stale += 1
                log.info("day %s already synced for these changes", day)
                return None
            result = sync_day(
                self.emr, self.target, self.rulebook,
                patient=patient, service_date=dos, options=options,
            )  # fmt: skip
            w = result.write
            self.store.ledger_put(
                result.day_key, result.inputs, result.decision_hash,
                {"created": len(w.created), "updated": len(w.updated), "voided": len(w.voided),
                 "unchanged": len(w.unchanged), "claim_locked": w.claim_locked},
                worker=self.worker, changed=w.changed,
            )  # fmt: skip
            # the day's procedures the ledger also holds on another day: checked again once
            # the caller's other days are synced too (a plain move recomputes both days)
            others = self.store.on_other_days(list(result.inputs), result.day_key)
            if elsewhere is not None:
                elsewhere.update(others)
            else:
                self._recheck(set(others))
        self.counters.days += 1
        self.counters.written += int(w.changed)
        self.metrics.observe(time.monotonic() - started)
        self.metrics.inc("patient_days_processed_total")
        self.metrics.inc(
            "lines_written_total",
            len([c for c in w.created + w.updated if c.startswith("ChargeItem")]),
        )
        for f in result.decision.findings if result.decision else ():
            self.metrics.inc("findings_total", code=f.code.value)
        log.info("day %s synced: %s", day, "written" if w.changed else "unchanged")
        return result

    def work_once(self) -> int:
        """Claim and process one batch; the number of inbox rows handled."""
        items = self.store.claim(self.worker, limit=self.batch, lease=self.lease)
        for item in items:
            with correlated(f"inbox-{item.id}"):
                self._work_item(item)
        return len(items)

    def _work_item(self, item: InboxItem) -> None:
        try:
            self.process(item.payload)
        except (AdapterError, OSError, ValueError, KeyError) as err:
            self.counters.failures += 1
            outcome = self.store.fail(item.id, f"{type(err).__name__}: {err}"[:500])
            if outcome == "dead":
                self.counters.dead += 1
            log.warning("inbox item %d failed (%s): %s", item.id, outcome, type(err).__name__)
        else:
            self.store.complete(item.id)

    def drain(self, timeout: float = 300.0, idle_sleep: float = 0.1) -> bool:
        """Work until no row is pending or leased (dead letters aside); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.work_once():
                continue
            counts = self.store.counts()
            if not counts.get("pending") and not counts.get("processing"):
                return True
            time.sleep(idle_sleep)
        return False

    def run(self, idle_sleep: float = 0.2) -> None:
        """Work until stopped. An idle worker wakes when this process enqueues a notification,
        and every ``idle_sleep`` seconds for rows other processes stored."""
        while not self.stopping.is_set():
            if not self.work_once():
                self._wake.wait(idle_sleep)
                self._wake.clear()

    def start(self, workers: int = 1, idle_sleep: float = 0.2) -> None:
        """Start ``workers`` worker threads (they share the inbox; a day is never computed by
        two at once, thanks to the store's day lock)."""
        for n in range(workers):
            thread = threading.Thread(
                target=self.run, args=(idle_sleep,), name=f"worker-{n}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming; the batches in hand finish (unfinished rows return after their lease)."""
        self.stopping.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)


class Health:
    """``/healthz``, ``/readyz`` and ``/metrics`` for the webhook server."""

    def __init__(self, service: Service, cache_seconds: float = 15.0) -> None:
        self.service = service
        self.cache_seconds = cache_seconds
        self._emr_ok: tuple[float, bool] = (0.0, False)

    def ready(self) -> tuple[bool, dict[str, str]]:
        checks: dict[str, str] = {}
        try:
            self.service.store.counts()
            checks["store"] = "ok"
        except Exception as err:  # any store failure means not ready
            checks["store"] = type(err).__name__
        at, ok = self._emr_ok
        if time.monotonic() - at > self.cache_seconds:
            try:
                self.service.emr.request("GET", "metadata")
                ok = True
            except AdapterError:
                ok = False
            self._emr_ok = (time.monotonic(), ok)
        checks["emr"] = "ok" if ok else "unreachable"
        return all(v == "ok" for v in checks.values()), checks

    def metrics(self) -> str:
        return self.service.metrics.render()
