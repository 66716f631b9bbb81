"""The live driver: workers that take the durable inbox's rows and sync patient-days.

Notifications come in through ``adapter.intake.inbox`` (webhook, polling, sweeps, rechecks);
workers (``work_once``; threads in ``serve``, or ``charge-adapter work`` in other replicas) claim
inbox rows under a lease, resolve them to patient-days and sync each day under the store's day
lock, then record the ledger. A redelivery or an older version arriving late is recognised from
the ledger and changes nothing; anything written is idempotent anyway. A failure is retried with
backoff by the inbox; after the configured attempts the row becomes a dead letter
(``charge-adapter dead-letters``). Logs carry ids, counts and error types only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, overload

from prometheus_client import CONTENT_TYPE_LATEST

from adapter.delivery import DayOutput, Target, backoff
from adapter.domain import KxGroup, KxSpend, PatientDay, Rulebook
from adapter.emr.client import FhirClient
from adapter.emr.writeback import billed_days
from adapter.errors import FatalServerError
from adapter.fhir.audit import audit_event
from adapter.fhir.coding import coding_keys
from adapter.intake.events import (
    CONTEXT,
    ChangeEvent,
    InboxPayload,
    Notification,
    QueuedEvent,
    context_patient,
    context_since,
    target_plan,
)
from adapter.intake.gather import days_of
from adapter.intake.inbox import Inbox
from adapter.ledger import as_spend, day_amounts, day_treatments, day_units, history_of
from adapter.observe import Metrics, correlated
from adapter.pipeline import Options, SyncResult, sync_day
from adapter.store import InboxItem, SqlStore
from adapter.workbench.state import day_review, record

log = logging.getLogger(__name__)
#: a change to a patient's context recomputes the patient's days of this many days back
CONTEXT_DAYS = 400
#: a message not delivered after this many tries is given up (``failed``; ``outbox retry``)
MAX_DELIVERY_ATTEMPTS = 50


#: the kv prefix of the days a decision left to recompute
RESYNC = "workbench:resync:"
#: how long a held day's queued message waits before its hold is looked at again
HELD_RECHECK = 30.0


def _empty_review(day: PatientDay) -> dict[str, Any]:
    """The review summary of a day left with nothing to bill or review."""
    return {"patient": day.patient, "dos": day.service_date.isoformat(), "payer": "",
            "clinic": "", "errors": 0, "warnings": 0, "held": 0, "unpriced": 0, "rejected": 0,
            "auth_low": 0, "at_risk": 0, "total": 0, "findings": [], "clinicians": [],
            "lines": []}  # fmt: skip


def _same_state(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Two desired states alike but for when they were computed."""
    return {k: v for k, v in a.items() if k != "at"} == {k: v for k, v in b.items() if k != "at"}


def _holds_anything(state: Mapping[str, Any]) -> bool:
    return bool(state.get("lines") or state.get("claim"))


@dataclass
class Counters:
    days: int = 0
    written: int = 0
    stale: int = 0
    failures: int = 0
    dead: int = 0


@dataclass(frozen=True, slots=True)
class Change:
    """One change that leads to a patient-day being synced."""

    key: str  # Kind/id ("": the day came from a search, not from a known change)
    version: str | None
    day: PatientDay | None  # the day the changed procedure itself is on, when known
    deleted: bool = False

    @classmethod
    def of(cls, ev: QueuedEvent) -> Change:
        return cls(ev.key, ev.version, ev.day, ev.deleted)


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Service:
    """The inbox's workers for one EMR, one write target and one store."""

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
        max_events: int = 500,
        retention_days: float = 30.0,
        targets: Sequence[Target] = (),
    ) -> None:
        self.emr = emr
        self.target = target
        self.rulebook = rulebook
        self.options = options
        self.store = store
        self.lease = lease
        self.batch = batch
        self.worker = worker or worker_id()
        self.clock = clock
        self.counters = Counters()
        self.metrics = _metrics(self)
        self._wake = threading.Event()  # set when this process stores a row: idle workers look
        self.inbox = Inbox(
            emr, store, zone=options.zone, metrics=self.metrics, clock=clock, lookback=lookback,
            on_stored=self._wake.set, max_events=max_events, retention_days=retention_days,
            context=options.poll_context,
        )  # fmt: skip
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        #: the delivery targets beside the FHIR write-back, each with its outbox
        self.targets = list(targets)
        #: set when this process queues a target's message: its idle delivery worker looks
        self._queued = {t.name: threading.Event() for t in self.targets}

    # -- which days an inbox row touches ----------------------------------------------------------
    def _days(self, payload: InboxPayload) -> dict[PatientDay, list[Change]]:
        """The patient-days a payload touches, each with the changes that led to it."""
        days: dict[PatientDay, list[Change]] = {}
        unknown: list[QueuedEvent] = []
        for ev in dict.fromkeys(payload.events):  # a focus repeated: its days searched once
            change = Change.of(ev)
            if self._processed(change):
                self.counters.stale += 1
                continue  # already processed at this version or a later one, on every day
            if ev.kind in CONTEXT:
                for touched in self._context_days(ev):
                    days.setdefault(touched, []).append(change)
                continue
            if ev.day is not None:
                days.setdefault(ev.day, []).append(change)
            else:
                unknown.append(ev)
            for old in sorted(self._days_before(change)):  # a procedure that moved or went
                days.setdefault(old, []).append(change)
        if unknown:
            found: set[str] = set()  # an Encounter's procedures: the days they were on before
            events = [e.event() for e in unknown]
            for touched in days_of(self.emr, events, zone=self.options.zone, procedures=found):
                days.setdefault(touched, []).append(Change("", None, None))  # never processed
            for key in sorted(found):
                for was in self.store.days_with(key):
                    days.setdefault(PatientDay.from_key(was), []).append(Change(key, None, None))
        return days

    def _context_days(self, ev: QueuedEvent) -> list[PatientDay]:
        """The days a change to the patient's context can change: the patient's days in the
        ledger from the date it bears on (a plan's or an authorization's start, a report's
        date; at most ``CONTEXT_DAYS`` back). The resource is read as the EMR has it now (a
        Provenance: the CarePlan it signs); a DocumentReference that is no progress report, a
        ClaimResponse that is no preauthorization, or a deleted resource (it names nobody any
        more: logged) recomputes nothing."""
        resource = None if ev.deleted else self._read_context(ev.kind, ev.id)
        if resource is not None and resource.get("resourceType") == "Provenance":
            plans = [p for t in resource.get("target") or []
                     if isinstance(t, dict) and (p := target_plan(t))]  # fmt: skip
            resource = self._read_context("CarePlan", plans[0]) if plans else None
        patient = context_patient(resource) if resource is not None else None
        if resource is not None and resource.get("resourceType") == "DocumentReference":
            types = self.rulebook.clocks.progress.types
            kinds = coding_keys(resource.get("type"), self.rulebook)
            patient = patient if any(k in types for k in kinds) else None
        if patient is None:
            log.info("%s changed: no patient's clock input, nothing to recompute", ev.key)
            return []
        floor = (self.clock().date() - timedelta(days=CONTEXT_DAYS)).isoformat()
        since = max(floor, context_since(resource) or floor) if resource else floor
        found = [PatientDay.from_key(d) for d in self.store.patient_days(patient, since)]
        log.info("%s changed: recomputing %d day(s) of its patient", ev.key, len(found))
        return found

    def _read_context(self, kind: str, rid: str) -> dict[str, Any] | None:
        try:
            return self.emr.read(kind, rid)
        except FatalServerError as err:
            if err.status not in (404, 410):
                raise
            return None

    def _days_before(self, change: Change) -> set[PatientDay]:
        """The days the changed resource was billed on: from the ledger, or (days this store
        never recorded: a crash before the ledger write, a new state directory) from the
        ChargeItems' day tags on the target."""
        old = {PatientDay.from_key(d) for d in self.store.days_with(change.key)}
        if change.key.startswith("Procedure/") and (
            change.deleted or (change.day is None and not old)
        ):
            old |= billed_days(self.target, change.key, strict=change.deleted)
        return old

    def _processed(self, change: Change) -> bool:
        return (
            change.key.startswith("Procedure/")
            and change.version is not None
            and not change.deleted
            and self.store.processed(
                change.key, change.version, change.day.key if change.day else None
            )
        )

    # -- work ------------------------------------------------------------------------------------
    def process(self, payload: InboxPayload) -> list[SyncResult]:
        if payload.catch_up:
            self.inbox.catch_up()
        results = []
        # the payload's own procedures too: a retry after a crash between the last sync and
        # the recheck finds its days already processed, but the procedure may still be on two
        elsewhere: set[str] = {e.key for e in payload.events if e.kind == "Procedure"}
        days = sorted(self._days(payload).items())
        batch = {day.key for day, _ in days}  # synced here, in date order: no recheck needed
        for day, changes in days:
            result = self.sync(day, changes=changes, elsewhere=elsewhere, batch=batch)
            if result is not None:
                results.append(result)
        self.inbox.recheck(elsewhere, payload.recheck + 1)
        return results

    @overload
    def sync(self, day: PatientDay) -> SyncResult: ...
    @overload
    def sync(
        self,
        day: PatientDay,
        *,
        changes: Sequence[Change],
        elsewhere: set[str] | None = None,
        batch: set[str] | None = None,
    ) -> SyncResult | None: ...
    def sync(
        self,
        day: PatientDay,
        *,
        changes: Sequence[Change] = (),
        elsewhere: set[str] | None = None,
        batch: set[str] | None = None,
    ) -> SyncResult | None:
        """Recompute and write back one patient-day. With ``changes`` (what led here), return
        None without syncing when, by the time this worker holds the day, every one of them has
        been processed on every day it touches (the second notification of one EMR
        transaction, handled by another worker meanwhile). Procedures the ledger also holds on
        another day are added to ``elsewhere`` (rechecked by the caller once all its days are
        synced), or rechecked at once without it."""
        started = time.monotonic()
        with self.store.day_lock(day.key):
            if changes and all(self._processed(c) for c in changes):
                self.counters.stale += 1
                log.info("day %s already synced for these changes", day.key)
                return None
            review, held = day_review(self.store.review_actions(day.key))
            options = replace(
                self.options,
                evaluated_at=self.clock(),
                kx_prior=self._kx_prior(day),
                history=history_of(self.store.treatment_history(day.key)),
                review=review,
                write_fhir=self.options.write_fhir and not held,
            )
            result = sync_day(self.emr, self.target, self.rulebook, day=day, options=options)
            self._review_record(result, "held" if held else "sync")
            if held:  # the billing office holds the day: computed, shown, nothing sent
                log.info("day %s is held by the billing office: nothing written", day.key)
                return result
            before = self.store.day_record(day.key)
            self._record(result)
            self._queue_outbound(result, options.evaluated_at or self.clock())
            self._recheck_later(day, before, self.store.day_record(day.key), batch or set())
            # the day's procedures the ledger also holds on another day: checked again once
            # the caller's other days are synced too (a plain move recomputes both days)
            others = self.store.on_other_days(list(result.inputs), day.key)
            if elsewhere is not None:
                elsewhere.update(others)
            else:
                self.inbox.recheck(set(others))
        self._count(result, time.monotonic() - started)
        log.info("day %s synced: %s", day.key, "written" if result.write.changed else "unchanged")
        return result

    def backfill(self, since: date, until: date) -> tuple[int, int]:
        """The history before the adapter bills: every patient-day with completed procedures
        dated from ``since`` to the day before ``until`` (the ``bill_from`` date), in date
        order, computed and kept in the ledger only (for the clocks' counts and the KX total;
        ``Options.bill_from`` makes sure nothing of it is written). Days the ledger already
        holds are left as they are. Returns (days found, days kept)."""
        if self.options.bill_from is None or until > self.options.bill_from:
            raise ValueError("backfill needs bill_from, and stops at it: days before it only")
        params = [("status", "completed"), ("date", f"ge{since.isoformat()}"),
                  ("date", f"lt{until.isoformat()}"), ("_count", "200")]  # fmt: skip
        events = [
            ChangeEvent("Procedure", str(p["id"]), p, None, "backfill")
            for p in self.emr.search("Procedure", params)
            if p.get("resourceType") == "Procedure" and isinstance(p.get("id"), str)
        ]
        found = sorted(
            (d for d in days_of(self.emr, events, zone=self.options.zone)
             if since <= d.service_date < until),
            key=lambda d: (d.service_date, d.patient),
        )  # fmt: skip
        kept = 0
        for day in found:
            if self.store.ledger_get(day.key) is None:
                self.sync(day)
                kept += 1
        log.info("backfill: %d day(s) found, %d kept as history", len(found), kept)
        return len(found), kept

    def _record(self, result: SyncResult) -> None:
        """The ledger row of a synced day (its run, and its part of the year's KX totals)."""
        w = result.write
        amounts = day_amounts(result.decision, self.rulebook) if result.decision else {}
        treated, evaluated = (
            day_treatments(result.decision, self.rulebook) if result.decision else (set(), set())
        )
        self.store.ledger_put(
            result.day.key, result.inputs, result.decision_hash,
            {"created": len(w.created), "updated": len(w.updated), "voided": len(w.voided),
             "unchanged": len(w.unchanged), "claim_locked": w.claim_locked},
            worker=self.worker, changed=w.changed,
            kx={g.value: str(a) for g, a in amounts.items()},
            treated=[d.value for d in treated], evaluated=[d.value for d in evaluated],
            units=day_units(result.decision) if result.decision else (),
        )  # fmt: skip

    def _review_record(self, result: SyncResult, cause: str) -> None:
        """The day's record in the billing office's workbench (a new version when it
        changed)."""
        if result.history_only:
            return
        if result.decision is None:  # nothing on the day is therapy any more: nothing to do
            if self.store.review_row(result.day.key) is not None:
                self.store.review_put(result.day.key, _empty_review(result.day),
                                      {"lines": [], "findings": [], "periods": [],
                                       "minutes": [], "explanation": [
                                           "No therapy procedure is on this day any more."]},
                                      cause)  # fmt: skip
            return
        provider = result.facts.provider if result.facts is not None else None
        clinic = provider if provider and provider.startswith("Organization/") else ""
        summary, body = record(result.decision, result.service_day, clinic, self.rulebook)
        summary["rejected"] = self._rejected(result.day.key)
        self.store.review_put(result.day.key, summary, body, cause)

    def _rejected(self, day: str) -> int:
        """The day's targets whose latest message the receiver refused (or that failed)."""
        latest = [self.store.outbox_latest(t.name, day) for t in self.targets]
        return sum(1 for row in latest
                   if row is not None and row.status in ("rejected", "failed"))  # fmt: skip

    def resync(self, day: PatientDay) -> SyncResult:
        """The day recomputed now (a decision in the workbench, or its re-run button)."""
        return self.sync(day)

    def _queue_outbound(self, result: SyncResult, at: datetime) -> None:
        """Each delivery target's desired state for the day, when it differs from the last
        one queued (under the day lock; composed and sent by the target's delivery worker)."""
        if result.history_only or result.facts is None or result.parties is None:
            return
        out = DayOutput(result.decision, result.facts, result.parties, at)
        key = result.day.key
        for target in self.targets:
            desired = target.desire(out)
            latest = self.store.outbox_latest(target.name, key)
            if latest is not None and _same_state(latest.state, desired):
                continue  # nothing changed for it (a rejected state is not queued again)
            if latest is None and not _holds_anything(desired):
                continue  # never sent, nothing to send
            item = self.store.outbox_queue(target.name, key, (latest.seq if latest else 0) + 1,
                                           desired)  # fmt: skip
            if item is not None:
                log.info("day %s: a new state queued for %s", key, target.name)
                self._queued[target.name].set()

    def held(self, day: str) -> bool:
        """Whether the billing office holds the day (its decisions say so)."""
        return day_review(self.store.review_actions(day))[1]

    def deliver_once(self, target: Target) -> bool:
        """Compose and send the target's next due message; False when there is none."""
        row = self.store.outbox_claim(target.name)
        if row is None:
            return False
        name = target.name
        if self.held(row.day):  # queued before the hold: it waits for the release
            self.store.outbox_postpone(row.id, HELD_RECHECK, "held by the billing office")
            return True
        if not row.body:
            acked = self.store.outbox_acked_state(name, row.day)
            composed = target.render(row, acked, self.store.next_number(f"control:{name}"),
                                     self._salt())  # fmt: skip
            if composed is None:
                self.store.outbox_done(row.id, "unchanged", None, None)
                return True
            control, body = composed
            self.store.outbox_set_body(row.id, control, body)
            row = replace(row, control=control, body=body)
        outcome = target.deliver(row)
        self.metrics.inc("outbox_sent_total", target=name)
        if outcome.status == "retry" and row.attempts + 1 < MAX_DELIVERY_ATTEMPTS:
            self.metrics.inc("outbox_retried_total", target=name)
            log.warning("%s: message %d not delivered (%s); retrying", name, row.id,
                        outcome.ack or "no answer")  # fmt: skip
            self.store.outbox_retry_later(row.id, outcome.error or "", backoff(row.attempts))
            return True
        status = "failed" if outcome.status == "retry" else outcome.status
        self.store.outbox_done(row.id, status, outcome.ack, outcome.error)
        tried_before = row.seq > 1 or row.ack is not None or row.last_error is not None
        if status not in ("acked", "delivered") or tried_before:
            # the workbench's count of refused targets: it changes only when this message was
            # refused, or when it or an earlier one of the day may have been (a resent message
            # keeps its seq, and its last answer); the day's first message accepted at its
            # first try changes nothing (3 statements a message saved)
            self.store.review_set_rejected(row.day, self._rejected(row.day))
        counter = "outbox_acked" if status in ("acked", "delivered") else "outbox_rejected"
        self.metrics.inc(f"{counter}_total", target=name)
        log.info("%s: message %d %s", name, row.id, status)
        return True

    def _salt(self) -> str:
        """The store's own salt for message ids (made once)."""
        salt = self.store.get_value("outbox:salt")
        if salt is None:
            self.store.set_value("outbox:salt", uuid.uuid4().hex[:12])
            salt = self.store.get_value("outbox:salt") or ""
        return salt

    def deliver_all(self) -> int:
        """Every target's due messages, until none is due (a retry waits for its time)."""
        sent = 0
        for target in self.targets:
            while self.deliver_once(target):
                sent += 1
        return sent

    def _deliver_loop(self, target: Target, idle_sleep: float) -> None:
        while not self.stopping.is_set():
            try:
                busy = self.deliver_once(target)
            except Exception as err:  # the store away: the loop goes on (no PHI: the type only)
                log.error("%s: delivery failed: %s", target.name, type(err).__name__)
                busy = False
            if not busy:  # another process's messages (or a retry's time) within idle_sleep
                queued = self._queued[target.name]
                queued.wait(idle_sleep)
                queued.clear()

    def _kx_prior(self, day: PatientDay) -> KxSpend:
        """The allowed amounts of the adapter's own lines on the patient's earlier days of the
        year (the store's KX ledger)."""
        prior = self.store.kx_prior(day.key)
        return as_spend({g: prior[g.value] for g in KxGroup if g.value in prior})

    def _recheck_later(
        self, day: PatientDay, before: object, after: object, batch: set[str]
    ) -> None:
        """A day whose allowed amounts, treated or evaluated disciplines changed changes the KX
        total and the progress-report count of the patient's later days: each is queued to be
        computed again (once per change)."""
        if before == after:
            return
        # the state of the day as written now: its amounts and when it was written (the same
        # amounts again after a change back are a new state, rechecked again)
        written = self.store.ledger_get(day.key)
        state = json.dumps([after, written.updated_at if written else None], sort_keys=True)
        digest = hashlib.sha256(state.encode()).hexdigest()[:12]
        for later in self.store.kx_later_days(day.key):
            if later in batch:
                continue  # synced after this one in the same batch, with the new history
            entry = self.store.ledger_get(later)
            procs = sorted(p for p in (entry.inputs if entry else {}) if p.startswith("Procedure/"))
            if not procs:
                continue
            log.info("day %s changed its history: rechecking %s", day.key, later)
            self.metrics.inc("history_rechecks_total")
            event = ChangeEvent("Procedure", procs[0].split("/", 1)[1], None, None, "history")
            self.inbox.enqueue(Notification(events=(event,)), source="history",
                               dedupe=f"history:{later}:{day.key}:{digest}")  # fmt: skip

    def _count(self, result: SyncResult, seconds: float) -> None:
        w = result.write
        self.counters.days += 1
        self.counters.written += int(w.changed)
        self.metrics.observe(seconds)
        self.metrics.inc("patient_days_processed_total")
        self.metrics.inc(
            "lines_written_total",
            len([c for c in w.created + w.updated if c.startswith("ChargeItem")]),
        )
        for f in result.decision.findings if result.decision else ():
            self.metrics.inc("findings_total", code=f.code.value)

    def work_once(self) -> int:
        """Claim and process one batch; the number of inbox rows handled."""
        items = self.store.claim(self.worker, limit=self.batch, lease=self.lease)
        for item in items:
            with correlated(f"inbox-{item.id}"):
                self._work_item(item)
        return len(items)

    def _work_item(self, item: InboxItem) -> None:
        """Process one row under a lease renewed while it runs; any failure of its own is
        recorded on the row (retried with backoff, then a dead letter)."""
        # a row claimed with others may have waited past its lease while they ran: another
        # worker may hold it now, and it is not processed twice
        if not self.store.renew(item.id, self.worker, self.lease):
            log.info("inbox item %d: lease lost before it was started; left to its holder", item.id)
            return
        with _Renewal(self.store, item.id, self.worker, self.lease):
            try:
                self.process(InboxPayload.from_json(item.payload))
            except Exception as err:  # whatever went wrong, the row says so and is retried
                self.counters.failures += 1
                outcome = self.store.fail(item.id, f"{type(err).__name__}: {err}"[:500])
                if outcome == "dead":
                    self.counters.dead += 1
                    self.metrics.inc("dead_lettered_total")
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

    # -- threads ---------------------------------------------------------------------------------
    def run(self, idle_sleep: float = 0.2, max_backoff: float = 30.0) -> None:
        """Work until stopped. An idle worker wakes when this process enqueues a notification,
        and every ``idle_sleep`` seconds for rows other processes stored. A failure outside
        any row (the store unreachable, say) is logged and waited out with a growing pause:
        the worker never dies of it (a row it held comes back when its lease ends)."""
        backoff = 0.0
        while not self.stopping.is_set():
            try:
                handled = self.work_once()
            except Exception as err:
                backoff = min(max_backoff, max(idle_sleep, backoff * 2))
                self.metrics.inc("worker_errors_total")
                log.error("worker: %s; again in %.1f s", type(err).__name__, backoff)
                self.stopping.wait(backoff)
                continue
            backoff = 0.0
            if not handled:
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
        for t in self.targets:  # one delivery worker per target: a target away delays itself
            thread = threading.Thread(target=self._deliver_loop, args=(t, max(idle_sleep, 0.5)),
                                      name=f"deliver-{t.name}", daemon=True)  # fmt: skip
            thread.start()
            self._threads.append(thread)
        thread = threading.Thread(target=self._audit_loop, args=(5.0,), name="audit",
                                  daemon=True)  # fmt: skip
        thread.start()
        self._threads.append(thread)

    def write_audits(self, limit: int = 100) -> int:
        """The billing office's decisions not yet in the EMR, written as AuditEvents (each
        under its fixed id: writing one again changes nothing). Without FHIR write-back they
        stay in the store only. Returns how many were written."""
        written = 0
        for a in self.store.review_actions(audit="pending", limit=limit):
            if not self.options.write_fhir:
                self.store.review_audited(a.id, "store-only")
                continue
            patient = "Patient/" + a.day.rpartition(":")[0]
            detail = f"{a.action} {json.dumps(a.payload, sort_keys=True)} on version {a.version}"
            try:
                self.target.update(audit_event(
                    salt=self._salt(), action_id=a.id, at=a.at, user=a.user, role=a.role,
                    action=a.action, reason=a.reason, patient=patient, day=a.day, detail=detail,
                ))  # fmt: skip
            except FatalServerError as err:  # refused for good: recorded, the rest go on
                log.error("workbench: AuditEvent of decision %d refused (%s)", a.id, err.status)
                self.store.review_audited(a.id, "refused")
                continue
            self.store.review_audited(a.id, "written")
            written += 1
        if written:
            log.info("workbench: %d decision(s) written to the EMR as AuditEvents", written)
        return written

    def resync_later(self, day: PatientDay) -> None:
        """A day to recompute once the EMR answers (a decision made while it was away)."""
        self.store.set_value(f"{RESYNC}{day.key}", "1")

    def resync_pending(self) -> int:
        """The days decisions left to recompute, recomputed now (each until it succeeds)."""
        done = 0
        for key in self.store.keys_with_prefix(RESYNC):
            self.sync(PatientDay.from_key(key[len(RESYNC) :]))
            self.store.delete_value(key)
            done += 1
        return done

    def _audit_loop(self, idle_sleep: float) -> None:
        while not self.stopping.is_set():
            for step in (self.resync_pending, self.write_audits):
                try:
                    step()
                except Exception as err:  # the EMR away: tried again (no PHI: the type only)
                    log.warning("workbench: %s not done: %s", step.__name__, type(err).__name__)
            self.stopping.wait(idle_sleep)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming; the batches in hand finish (unfinished rows return after their lease)."""
        self.stopping.set()
        self._wake.set()
        for queued in self._queued.values():
            queued.set()
        for thread in self._threads:
            thread.join(timeout)


class _Renewal:
    """Renews a row's lease every third of it while the row is worked on (so a long item is
    not taken by a second worker when its first lease ends)."""

    def __init__(self, store: SqlStore, item_id: int, worker: str, lease: float) -> None:
        self.store, self.item_id, self.worker, self.lease = store, item_id, worker, lease
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"lease-{item_id}", daemon=True)

    def _run(self) -> None:
        while not self.done.wait(self.lease / 3):
            try:
                if not self.store.renew(self.item_id, self.worker, self.lease):
                    log.warning("inbox item %d: lease lost", self.item_id)
                    return
            except Exception as err:  # the store is away: the next tick tries again
                log.warning("inbox item %d: lease not renewed (%s)", self.item_id,
                            type(err).__name__)  # fmt: skip

    def __enter__(self) -> _Renewal:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


def _metrics(service: Service) -> Metrics:
    """The service's metrics, with the gauges read from its store and clients."""
    metrics = Metrics()
    store, emr, target = service.store, service.emr, service.target
    metrics.gauge("dead_letters", lambda: {(): float(store.counts().get("dead", 0))})
    metrics.gauge(
        "inbox_rows", lambda: {(("status", k),): float(v) for k, v in store.counts().items()}
    )
    metrics.gauge(
        "inbox_oldest_pending_seconds",
        lambda: {
            (): max(0.0, store.clock() - oldest) if (oldest := store.oldest_pending()) else 0.0
        },
    )
    metrics.gauge(
        "outbox_rows",
        lambda: {(("target", t), ("status", st)): float(n)
                 for (t, st), n in store.outbox_counts().items()},
    )  # fmt: skip
    metrics.gauge(
        "outbox_oldest_pending_seconds",
        lambda: {(("target", t),): age for t, age in store.outbox_oldest_pending().items()},
    )
    metrics.gauge(
        "retries_total",
        lambda: {(): float(emr.retries + (target.retries if target is not emr else 0))},
    )
    return metrics


class Health:
    """``/healthz``, ``/readyz`` and ``/metrics`` for the web server.

    Live (``/healthz``): every worker thread started is running and the store answers. Ready
    (``/readyz``): the store answers; it never waits on the EMR (the adapter queues deliveries
    while the EMR is down) and answers within ``timeout`` seconds."""

    def __init__(self, service: Service, timeout: float = 1.0) -> None:
        self.service = service
        self.timeout = timeout

    def _store(self) -> str:
        outcome: list[str] = []

        def ask() -> None:
            try:
                self.service.store.counts()
                outcome.append("ok")
            except Exception as err:  # any store failure means not ready
                outcome.append(type(err).__name__)

        thread = threading.Thread(target=ask, name="store-check", daemon=True)
        thread.start()
        thread.join(self.timeout)
        return outcome[0] if outcome else "timeout"

    def live(self) -> tuple[bool, dict[str, str]]:
        threads = self.service._threads
        dead = sum(1 for t in threads if not t.is_alive())
        checks = {
            "store": self._store(),
            "workers": f"{len(threads) - dead} of {len(threads)} running",
        }
        return checks["store"] == "ok" and not dead, checks

    def ready(self) -> tuple[bool, dict[str, str]]:
        checks = {"store": self._store()}
        return checks["store"] == "ok", checks

    def metrics(self) -> tuple[bytes, str]:
        return self.service.metrics.render(), CONTENT_TYPE_LATEST
