"""The durable store: inbox, dead letters, ledger, processing log and small state values.

One schema and one behaviour for both back ends (``sqlite.py``, ``postgres.py``):

- **inbox** — every notification, polled change or sweep request is a row *before* it is
  acknowledged. Workers ``claim`` due rows under a lease (a crashed worker's rows come back when
  the lease ends), then ``complete`` or ``fail`` them; failed rows are retried with backoff and,
  after the configured attempts, become **dead letters** (kept with the error until a person
  retries or discards them). Rows carry references and versions only, never resource bodies.
  A duplicate delivery (same source, resource and version) is stored once.
- **ledger** — per patient-day: the input versions seen, the decision's hash and what was
  written; ``ledger_inputs`` maps each procedure to the days it was part of (so a procedure that
  moved to another date also recomputes its old day).
- **runs** — one row per processing of a patient-day (worker, decision hash, whether anything
  was written): the evidence that no day was processed into two different results.
- **kv** — small state values (the poll watermark).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from adapter.errors import AdapterError
from adapter.store.review import ReviewStore

Clock = Callable[[], float]


def _at_least(seen: str, version: str) -> bool:
    """``seen`` is ``version`` or later (numerically when both are numbers)."""
    if seen.isascii() and seen.isdigit() and version.isascii() and version.isdigit():
        return int(seen) >= int(version)
    return seen == version


class StoreBusyError(AdapterError):
    """A patient-day stayed locked by another worker past the wait limit (retried later)."""


class StoreUnavailable(AdapterError):
    """The store did not answer (a database restart, a lost connection): temporary."""


@dataclass(frozen=True, slots=True)
class InboxItem:
    id: int
    source: str
    payload: dict[str, Any]
    status: str
    attempts: int
    last_error: str | None
    received_at: float


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    day: str
    inputs: dict[str, str]
    decision_hash: str
    written: dict[str, Any]
    updated_at: float


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One message of a delivery target's outbox."""

    id: int
    target: str
    day: str
    seq: int
    control: str
    body: str
    state: dict[str, Any]
    status: str  # pending | acked | delivered | rejected
    attempts: int
    next_at: float
    ack: str | None
    last_error: str | None
    created_at: float


_OUTBOX = ("id, target, day, seq, control, body, state, status, attempts, next_at, ack, "
           "last_error, created_at")  # fmt: skip


def _outbox_row(r: Sequence[Any]) -> OutboxRow:
    return OutboxRow(int(r[0]), str(r[1]), str(r[2]), int(r[3]), str(r[4]), str(r[5]),
                     dict(json.loads(r[6])), str(r[7]), int(r[8]), float(r[9]),
                     None if r[10] is None else str(r[10]), None if r[11] is None else str(r[11]),
                     float(r[12]))  # fmt: skip


class SqlStore(ReviewStore):
    """Shared SQL; subclasses set the dialect (placeholders, id type, claim query, locks)."""

    placeholder = "?"
    id_type = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def __init__(self, clock: Clock = time.time, max_attempts: int = 6, base_delay: float = 2.0):
        self.clock = clock
        self.max_attempts = max_attempts
        self.base_delay = base_delay

    # -- dialect hooks -------------------------------------------------------------------------
    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _claim_sql(
        self, worker: str, limit: int, lease: float, now: float
    ) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    @contextmanager
    def day_lock(self, day: str) -> Iterator[None]:
        raise NotImplementedError
        yield  # pragma: no cover

    def close(self) -> None:
        raise NotImplementedError

    # -- schema ----------------------------------------------------------------------------------
    def schema(self) -> list[str]:
        return [
            f"""CREATE TABLE IF NOT EXISTS inbox (
                id {self.id_type}, received_at DOUBLE PRECISION NOT NULL, source TEXT NOT NULL,
                payload TEXT NOT NULL, dedupe TEXT UNIQUE, status TEXT NOT NULL DEFAULT 'pending',
                attempts INTEGER NOT NULL DEFAULT 0, next_at DOUBLE PRECISION NOT NULL,
                lease_until DOUBLE PRECISION, claimed_by TEXT, last_error TEXT,
                done_at DOUBLE PRECISION)""",
            "CREATE INDEX IF NOT EXISTS inbox_due ON inbox (status, next_at)",
            """CREATE TABLE IF NOT EXISTS ledger (
                day TEXT PRIMARY KEY, inputs TEXT NOT NULL, decision_hash TEXT NOT NULL,
                written TEXT NOT NULL, updated_at DOUBLE PRECISION NOT NULL)""",
            """CREATE TABLE IF NOT EXISTS ledger_inputs (
                proc TEXT NOT NULL, day TEXT NOT NULL, version TEXT NOT NULL,
                PRIMARY KEY (proc, day))""",
            f"""CREATE TABLE IF NOT EXISTS runs (
                id {self.id_type}, day TEXT NOT NULL, worker TEXT NOT NULL,
                decision_hash TEXT NOT NULL, changed INTEGER NOT NULL,
                at DOUBLE PRECISION NOT NULL)""",
            "CREATE INDEX IF NOT EXISTS runs_day ON runs (day)",
            "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            # the year's KX running total: each synced day's expected allowed amounts per KX
            # group (decimal text); a day's total before it is the sum over its earlier days
            # and the disciplines it treated and evaluated (the progress-report clock)
            """CREATE TABLE IF NOT EXISTS kx_ledger (
                day TEXT PRIMARY KEY, patient TEXT NOT NULL, year INTEGER NOT NULL,
                dos TEXT NOT NULL, amounts TEXT NOT NULL, treated TEXT NOT NULL DEFAULT '[]',
                evaluated TEXT NOT NULL DEFAULT '[]', units TEXT NOT NULL DEFAULT '[]')""",
            "CREATE INDEX IF NOT EXISTS kx_ledger_year ON kx_ledger (patient, year, dos)",
            # each delivery target's durable outbox: a day's messages in order (seq), each sent
            # until the receiver accepts or rejects it; state: what the receiver has after it
            f"""CREATE TABLE IF NOT EXISTS outbox (
                id {self.id_type}, target TEXT NOT NULL, day TEXT NOT NULL,
                seq INTEGER NOT NULL, control TEXT NOT NULL, body TEXT NOT NULL,
                state TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
                attempts INTEGER NOT NULL DEFAULT 0, next_at DOUBLE PRECISION NOT NULL,
                ack TEXT, last_error TEXT, created_at DOUBLE PRECISION NOT NULL,
                done_at DOUBLE PRECISION, lease_until DOUBLE PRECISION,
                UNIQUE (target, day, seq))""",
            "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (target, status, id)",
            # the next due message of a target, without reading its history (outbox_claim)
            "CREATE INDEX IF NOT EXISTS outbox_next ON outbox (target, status, next_at, id)",
            # the CDS Hooks cards' feedback: what clinicians did with them (no free text kept)
            f"""CREATE TABLE IF NOT EXISTS cds_feedback (
                id {self.id_type}, service TEXT NOT NULL, card TEXT NOT NULL,
                outcome TEXT NOT NULL, reason TEXT NOT NULL, at TEXT NOT NULL,
                UNIQUE (service, card, at))""",
            # the CDS clients' token ids seen, until their token expires (a jti is used once)
            """CREATE TABLE IF NOT EXISTS cds_jti (
                key TEXT PRIMARY KEY, until DOUBLE PRECISION NOT NULL)""",
            # the billing office's workbench (adapter.store.review)
            *self.review_schema(self.id_type),
        ]

    #: columns added after a table was first created: (table, column, definition); each store
    #: adds those an older database lacks when it opens it
    added_columns: tuple[tuple[str, str, str], ...] = (
        # the units each day billed per discipline and code (the authorization counters)
        # (NULL on the rows before it: not known, the days still count as visits)
        ("kx_ledger", "units", "TEXT"),
    )

    def _atomic(self, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
        """Run statements (``?`` placeholders) in one transaction."""
        raise NotImplementedError

    def _sql(self, sql: str) -> str:
        return sql.replace("?", self.placeholder)

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._execute(self._sql(sql), params)

    # -- inbox -----------------------------------------------------------------------------------
    def enqueue(
        self, payload: Mapping[str, Any], *, source: str, dedupe: str | None = None
    ) -> bool:
        """Store a notification durably; False when the same delivery was stored before."""
        now = self.clock()
        rows = self._run(
            "INSERT INTO inbox (received_at, source, payload, dedupe, next_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (dedupe) DO NOTHING RETURNING id",
            (now, source, json.dumps(payload, sort_keys=True), dedupe, now),
        )
        return bool(rows)

    def claim(self, worker: str, *, limit: int = 10, lease: float = 60.0) -> list[InboxItem]:
        """Due rows (pending, or processing with an expired lease), now leased to ``worker``.

        A row whose lease ran out on its last attempt with no outcome recorded (the worker
        died on it, or could not record its failure) is a dead letter, not retried forever."""
        now = self.clock()
        self._run(
            "UPDATE inbox SET status = 'dead', last_error = ?, lease_until = NULL "
            "WHERE status = 'processing' AND lease_until < ? AND attempts >= ?",
            (f"no outcome recorded after {self.max_attempts} attempts", now, self.max_attempts),
        )
        return [self._item(r) for r in self._claim_sql(worker, limit, lease, now)]

    def renew(self, item_id: int, worker: str, lease: float) -> bool:
        """Extend the lease of a row this worker is processing; False when it is no longer
        this worker's (the lease ran out and another worker took it)."""
        rows = self._run(
            "UPDATE inbox SET lease_until = ? WHERE id = ? AND claimed_by = ? "
            "AND status = 'processing' RETURNING id",
            (self.clock() + lease, item_id, worker),
        )
        return bool(rows)

    def complete(self, item_id: int) -> None:
        self._run(
            "UPDATE inbox SET status = 'done', done_at = ?, lease_until = NULL WHERE id = ?",
            (self.clock(), item_id),
        )

    def fail(self, item_id: int, error: str) -> str:
        """Record a failure: retried with backoff, or a dead letter after the last attempt.
        ``error`` is kept as printable text (a NUL from a server's message would make
        PostgreSQL refuse the update, and the row would never get an outcome)."""
        error = "".join(c if c.isprintable() else "?" for c in error[:2000])
        rows = self._run("SELECT attempts FROM inbox WHERE id = ?", (item_id,))
        attempts = int(rows[0][0]) if rows else self.max_attempts
        if attempts >= self.max_attempts:
            self._run(
                "UPDATE inbox SET status = 'dead', last_error = ?, lease_until = NULL WHERE id = ?",
                (error[:2000], item_id),
            )
            return "dead"
        delay = self.base_delay * 2 ** max(0, attempts - 1)
        self._run(
            "UPDATE inbox SET status = 'pending', last_error = ?, next_at = ?, lease_until = NULL "
            "WHERE id = ?",
            (error[:2000], self.clock() + delay, item_id),
        )
        return "retry"

    def oldest_pending(self) -> float | None:
        """When the oldest row still waiting (pending or being worked on) was received."""
        rows = self._run(
            "SELECT MIN(received_at) FROM inbox WHERE status IN ('pending', 'processing')"
        )
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    def counts(self) -> dict[str, int]:
        return {
            str(s): int(n)
            for s, n in self._run("SELECT status, COUNT(*) FROM inbox GROUP BY status")
        }

    def dead_letters(self) -> list[InboxItem]:
        return [
            self._item(r) for r in self._run(f"{self._select()} WHERE status = 'dead' ORDER BY id")
        ]

    def get(self, item_id: int) -> InboxItem | None:
        rows = self._run(f"{self._select()} WHERE id = ?", (item_id,))
        return self._item(rows[0]) if rows else None

    def retry(self, item_id: int) -> bool:
        rows = self._run(
            "UPDATE inbox SET status = 'pending', attempts = 0, next_at = ? "
            "WHERE id = ? AND status = 'dead' RETURNING id",
            (self.clock(), item_id),
        )
        return bool(rows)

    def discard(self, item_id: int) -> bool:
        return bool(
            self._run("DELETE FROM inbox WHERE id = ? AND status = 'dead' RETURNING id", (item_id,))
        )

    @staticmethod
    def _select() -> str:
        return "SELECT id, source, payload, status, attempts, last_error, received_at FROM inbox"

    @staticmethod
    def _item(row: tuple[Any, ...]) -> InboxItem:
        return InboxItem(
            id=int(row[0]), source=str(row[1]), payload=json.loads(row[2]), status=str(row[3]),
            attempts=int(row[4]), last_error=row[5], received_at=float(row[6]),
        )  # fmt: skip

    # -- ledger and runs -------------------------------------------------------------------------
    def ledger_get(self, day: str) -> LedgerEntry | None:
        rows = self._run(
            "SELECT day, inputs, decision_hash, written, updated_at FROM ledger WHERE day = ?",
            (day,),
        )
        if not rows:
            return None
        r = rows[0]
        return LedgerEntry(str(r[0]), json.loads(r[1]), str(r[2]), json.loads(r[3]), float(r[4]))

    def ledger_put(
        self, day: str, inputs: Mapping[str, str], decision_hash: str, written: Mapping[str, Any],
        *, worker: str, changed: bool, kx: Mapping[str, str] | None = None,
        treated: Sequence[str] = (), evaluated: Sequence[str] = (),
        units: Sequence[Sequence[object]] = (),
    ) -> None:  # fmt: skip
        """The ledger row of a synced day, its inputs, its run and (``kx``: KX group -> the
        day's expected allowed amount, decimal text) its part of the year's KX totals, with
        the disciplines it treated and evaluated and the units it billed per (discipline, code)
        (``kx`` None: that part left as it was)."""
        now = self.clock()
        patient, _, dos = day.rpartition(":")
        kx_rows: list[tuple[str, tuple[Any, ...]]] = [
            ("DELETE FROM kx_ledger WHERE day = ?", (day,)),
            *(
                [("INSERT INTO kx_ledger (day, patient, year, dos, amounts, treated, evaluated, "
                  "units) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                  (day, patient, int(dos[:4]), dos, json.dumps(dict(kx or {}), sort_keys=True),
                   json.dumps(sorted(treated)), json.dumps(sorted(evaluated)),
                   json.dumps(sorted(list(u) for u in units))))]
                if (kx or treated) and dos[:4].isdigit()
                else []
            ),
        ]  # fmt: skip
        statements: list[tuple[str, tuple[Any, ...]]] = [
            *(kx_rows if kx is not None else []),
            (
                "INSERT INTO ledger (day, inputs, decision_hash, written, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (day) DO UPDATE SET inputs = excluded.inputs, "
                "decision_hash = excluded.decision_hash, written = excluded.written, "
                "updated_at = excluded.updated_at",
                (day, json.dumps(dict(inputs), sort_keys=True), decision_hash,
                 json.dumps(dict(written), sort_keys=True), now),
            ),
            # the day's procedures now: one that left the day (moved, deleted, entered in error
            # and dropped) no longer names it
            ("DELETE FROM ledger_inputs WHERE day = ?", (day,)),
            *(
                ("INSERT INTO ledger_inputs (proc, day, version) VALUES (?, ?, ?)",
                 (proc, day, version))
                for proc, version in sorted(inputs.items())
            ),
            (
                "INSERT INTO runs (day, worker, decision_hash, changed, at) "
                "VALUES (?, ?, ?, ?, ?)",
                (day, worker, decision_hash, 1 if changed else 0, now),
            ),
        ]  # fmt: skip
        self._atomic(statements)

    def kx_amounts(self, day: str) -> dict[str, str]:
        """The day's own part of its year's KX totals (empty: none recorded)."""
        rows = self._run("SELECT amounts FROM kx_ledger WHERE day = ?", (day,))
        return dict(json.loads(rows[0][0])) if rows else {}

    def day_record(
        self, day: str
    ) -> tuple[dict[str, str], list[str], list[str], list[list[Any]] | None] | None:
        """The day's row of the KX and treatment ledger: (amounts, treated, evaluated, units)."""
        rows = self._run(
            "SELECT amounts, treated, evaluated, units FROM kx_ledger WHERE day = ?", (day,)
        )
        if not rows:
            return None
        amounts, treated, evaluated, units = rows[0]
        return (dict(json.loads(amounts)), list(json.loads(treated)), list(json.loads(evaluated)),
                None if units is None else list(json.loads(units)))  # fmt: skip

    def treatment_history(
        self, day: str, days: int = 400
    ) -> list[tuple[date, list[str], list[str], list[list[Any]] | None]]:
        """(date, treated, evaluated, units) of the patient's days in the ``days`` before
        ``day``."""
        patient, _, dos = day.rpartition(":")
        since = (date.fromisoformat(dos) - timedelta(days=days)).isoformat()
        return [
            (date.fromisoformat(str(d)), list(json.loads(t)), list(json.loads(e)),
             None if u is None else list(json.loads(u)))
            for d, t, e, u in self._run(
                "SELECT dos, treated, evaluated, units FROM kx_ledger WHERE patient = ? "
                "AND dos < ? AND dos >= ? ORDER BY dos",
                (patient, dos, since),
            )
        ]  # fmt: skip

    def kx_prior(self, day: str) -> dict[str, Decimal]:
        """The sums of the patient's days of the year before ``day`` (a patient-day key), per
        KX group."""
        patient, _, dos = day.rpartition(":")
        total: dict[str, Decimal] = {}
        for (amounts,) in self._run(
            "SELECT amounts FROM kx_ledger WHERE patient = ? AND year = ? AND dos < ?",
            (patient, int(dos[:4]), dos),
        ):
            for group, value in json.loads(amounts).items():
                total[group] = total.get(group, Decimal("0.00")) + Decimal(value)
        return total

    def kx_later_days(self, day: str, days: int = 400) -> list[str]:
        """The patient's days in the ledger in the ``days`` after ``day``, by date: those whose
        KX total (same year), progress-report count or authorization counters an earlier
        day's change can move (a day whose every line is held included: it has no part in the
        totals, but its own answer can change)."""
        patient, _, dos = day.rpartition(":")
        until = (date.fromisoformat(dos) + timedelta(days=days)).isoformat()
        return self._ledger_days(patient, after=dos, until=until)

    def patient_days(self, patient: str, since: str) -> list[str]:
        """The patient's days in the ledger on or after ``since`` (an ISO date), by date."""
        bare = patient.split("/", 1)[1] if patient.startswith("Patient/") else patient
        return self._ledger_days(bare, since=since)

    def _ledger_days(
        self, patient: str, *, since: str = "", after: str = "", until: str = "9999-12-31"
    ) -> list[str]:
        """Day keys ``<patient>:<date>`` of the ledger in a date range, by date (a key range:
        ``;`` sorts right after ``:``)."""
        low = f"{patient}:{after}" if after else f"{patient}:{since}"
        return [
            str(d)
            for (d,) in self._run(
                f"SELECT day FROM ledger WHERE day {'>' if after else '>='} ? AND day <= ? "
                "AND day < ? ORDER BY day",
                (low, f"{patient}:{until}", f"{patient};"),
            )
        ]

    # -- the delivery targets' outboxes ------------------------------------------------------
    # status: pending (to compose and send), sending (leased to a delivery worker), acked /
    # delivered (the receiver holds its state), rejected (refused for good), unchanged (nothing
    # differed from what the receiver holds), superseded (a newer state of the day came before
    # it was sent), failed (given up after too many tries)
    def outbox_latest(self, target: str, day: str) -> OutboxRow | None:
        """The day's newest message to ``target``, whatever became of it."""
        rows = self._run(
            f"SELECT {_OUTBOX} FROM outbox WHERE target = ? AND day = ? ORDER BY seq DESC LIMIT 1",
            (target, day),
        )
        return _outbox_row(rows[0]) if rows else None

    def outbox_acked_state(self, target: str, day: str) -> dict[str, Any] | None:
        """What the receiver holds for the day: the state of its last accepted message."""
        rows = self._run(
            "SELECT state FROM outbox WHERE target = ? AND day = ? AND status IN ('acked', "
            "'delivered') ORDER BY seq DESC LIMIT 1",
            (target, day),
        )
        return dict(json.loads(rows[0][0])) if rows else None

    def outbox_queue(self, target: str, day: str, seq: int, state: Mapping[str, Any]) -> int | None:
        """The day's new desired state for ``target`` (its id; None when the day's ``seq`` is
        there already: a retry of the same sync). Earlier messages of the day not sent yet are
        superseded afterwards (the new one is composed from what the receiver holds when it is
        sent; a crash between leaves both, sent in order, which is still right)."""
        now = self.clock()
        rows = self._run(
            "INSERT INTO outbox (target, day, seq, control, body, state, next_at, created_at) "
            "VALUES (?, ?, ?, '', '', ?, ?, ?) ON CONFLICT (target, day, seq) DO NOTHING "
            "RETURNING id",
            (target, day, seq, json.dumps(state, sort_keys=True), now, now),
        )
        self._run(
            "UPDATE outbox SET status = 'superseded', done_at = ? WHERE target = ? AND day = ? "
            "AND status = 'pending' AND seq < ?",
            (now, target, day, seq),
        )
        return int(rows[0][0]) if rows else None

    def outbox_claim(self, target: str, lease: float = 60.0) -> OutboxRow | None:
        """The target's next due message, leased to the caller (one worker sends it; a lease
        that runs out returns it). A day's message waits while an earlier one of the day is
        being sent."""
        now = self.clock()
        # two searches along outbox_next (pending and due; sending with its lease run out),
        # the earlier of their first answers taken: one search with an OR over the status
        # read every message the target ever had (9 ms a claim at 3,000 days' history)
        free = ("NOT EXISTS (SELECT 1 FROM outbox e WHERE e.target = o.target AND e.day = o.day "
                "AND e.seq < o.seq AND e.status = 'sending' AND e.lease_until >= ?)")  # fmt: skip
        rows = [
            *self._run(
                f"SELECT o.next_at, o.id FROM outbox o WHERE o.target = ? AND o.status = "
                f"'pending' AND o.next_at <= ? AND {free} ORDER BY o.next_at, o.id LIMIT 1",
                (target, now, now),
            ),
            *self._run(
                f"SELECT o.next_at, o.id FROM outbox o WHERE o.target = ? AND o.status = "
                f"'sending' AND o.lease_until < ? AND {free} ORDER BY o.next_at, o.id LIMIT 1",
                (target, now, now),
            ),
        ]
        if not rows:
            return None
        first = min((float(at), int(item)) for at, item in rows)[1]
        claimed = self._run(
            f"UPDATE outbox SET status = 'sending', lease_until = ? WHERE id = ? AND "
            f"(status = 'pending' OR (status = 'sending' AND lease_until < ?)) "
            f"RETURNING {_OUTBOX}",
            (now + lease, first, now),
        )
        return _outbox_row(claimed[0]) if claimed else None

    def outbox_set_body(self, item_id: int, control: str, body: str) -> None:
        self._run("UPDATE outbox SET control = ?, body = ? WHERE id = ?", (control, body, item_id))

    def cds_feedback_add(self, service: str, card: str, outcome: str, reason: str, at: str) -> None:
        """One card's feedback (the same feedback posted again is kept once)."""
        self._run(
            "INSERT INTO cds_feedback (service, card, outcome, reason, at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (service, card, at) DO NOTHING",
            (service, card, outcome, reason, at),
        )

    def cds_feedback_counts(self, service: str) -> dict[tuple[str, str], int]:
        """(outcome, override reason) -> how many, for a service."""
        return {(str(o), str(r)): int(n) for o, r, n in self._run(
            "SELECT outcome, reason, COUNT(*) FROM cds_feedback WHERE service = ? "
            "GROUP BY outcome, reason", (service,))}  # fmt: skip

    def jti_first_use(self, key: str, until: float) -> bool:
        """Record a token id until it expires; False when it was recorded before (a replay).
        Ids whose tokens expired (an hour ago: past any clock leeway) are dropped as it goes."""
        self._run("DELETE FROM cds_jti WHERE until < ?", (self.clock() - 3600.0,))
        rows = self._run(
            "INSERT INTO cds_jti (key, until) VALUES (?, ?) ON CONFLICT (key) DO NOTHING "
            "RETURNING key",
            (key, until),
        )
        return bool(rows)

    def jti_count(self) -> int:
        return int(self._run("SELECT COUNT(*) FROM cds_jti")[0][0])

    def next_number(self, name: str) -> int:
        """The next of a counter (1, 2, …), atomically: control numbers one per interchange."""
        rows = self._run(
            "INSERT INTO kv (key, value) VALUES (?, '1') ON CONFLICT (key) DO UPDATE SET "
            "value = CAST(CAST(kv.value AS INTEGER) + 1 AS TEXT) RETURNING value",
            (f"counter:{name}",),
        )
        return int(rows[0][0])

    def outbox_done(self, item_id: int, status: str, ack: str | None, error: str | None) -> None:
        """``acked``, ``delivered``, ``rejected``, ``unchanged`` or ``failed``."""
        self._run(
            "UPDATE outbox SET status = ?, ack = ?, last_error = ?, done_at = ?, "
            "lease_until = NULL, attempts = attempts + 1 WHERE id = ? AND status = 'sending'",
            (status, ack, error, self.clock(), item_id),
        )

    def outbox_retry_later(self, item_id: int, error: str, delay: float) -> None:
        self._run(
            "UPDATE outbox SET status = 'pending', lease_until = NULL, attempts = attempts + 1, "
            "last_error = ?, next_at = ? WHERE id = ? AND status = 'sending'",
            (error, self.clock() + delay, item_id),
        )

    def outbox_postpone(self, item_id: int, delay: float, why: str) -> None:
        """A claimed message put back for later without counting a try (its day is held)."""
        self._run(
            "UPDATE outbox SET status = 'pending', lease_until = NULL, last_error = ?, "
            "next_at = ? WHERE id = ? AND status = 'sending'",
            (why, self.clock() + delay, item_id),
        )

    def outbox_rows(self, target: str | None = None, status: str | None = None,
                    limit: int = 200) -> list[OutboxRow]:  # fmt: skip
        where = [("target = ?", target), ("status = ?", status)]
        parts = [(sql, v) for sql, v in where if v is not None]
        clause = (" WHERE " + " AND ".join(sql for sql, _ in parts)) if parts else ""
        rows = self._run(f"SELECT {_OUTBOX} FROM outbox{clause} ORDER BY id DESC LIMIT ?",
                         (*(v for _, v in parts), limit))  # fmt: skip
        return [_outbox_row(r) for r in rows]

    def outbox_rows_for_day(self, target: str, day: str) -> list[OutboxRow]:
        """A day's messages to a target, newest first."""
        rows = self._run(f"SELECT {_OUTBOX} FROM outbox WHERE target = ? AND day = ? "
                         "ORDER BY seq DESC", (target, day))  # fmt: skip
        return [_outbox_row(r) for r in rows]

    def outbox_get(self, item_id: int) -> OutboxRow | None:
        rows = self._run(f"SELECT {_OUTBOX} FROM outbox WHERE id = ?", (item_id,))
        return _outbox_row(rows[0]) if rows else None

    def outbox_resend(self, item_id: int) -> bool:
        """A rejected (or failed) message queued again, composed afresh when it is sent (a
        person fixed the receiver's side); not when a newer message of its day exists."""
        rows = self._run(
            "UPDATE outbox SET status = 'pending', next_at = ?, done_at = NULL, body = '', "
            "control = '', attempts = 0 WHERE id = ? AND status IN ('rejected', 'failed') "
            "AND NOT EXISTS (SELECT 1 FROM outbox n WHERE n.target = outbox.target AND "
            "n.day = outbox.day AND n.seq > outbox.seq) RETURNING id",
            (self.clock(), item_id),
        )
        return bool(rows)

    def outbox_counts(self) -> dict[tuple[str, str], int]:
        return {(str(t), str(s)): int(n) for t, s, n in self._run(
            "SELECT target, status, COUNT(*) FROM outbox GROUP BY target, status")}  # fmt: skip

    def outbox_oldest_pending(self) -> dict[str, float]:
        """Per target, the age in seconds of its oldest message not yet delivered."""
        now = self.clock()
        return {str(t): now - float(c) for t, c in self._run(
            "SELECT target, MIN(created_at) FROM outbox WHERE status IN ('pending', 'sending') "
            "GROUP BY target")}  # fmt: skip

    def days_with(self, proc: str) -> list[str]:
        return [
            str(r[0]) for r in self._run("SELECT day FROM ledger_inputs WHERE proc = ?", (proc,))
        ]

    def ledger_rows(self, proc: str) -> list[tuple[str, str, str]]:
        """(day, version, when the day was last written) of every ledger row of a procedure,
        by day."""
        return [
            (str(d), str(v), repr(float(u)))
            for d, v, u in self._run(
                "SELECT i.day, i.version, l.updated_at FROM ledger_inputs i "
                "JOIN ledger l ON l.day = i.day WHERE i.proc = ? ORDER BY i.day",
                (proc,),
            )
        ]

    def procs_on_several_days(self, limit: int = 500) -> list[str]:
        """Procedures the ledger holds on more than one day (each should be on one)."""
        return [
            str(p)
            for (p,) in self._run(
                "SELECT proc FROM ledger_inputs GROUP BY proc HAVING COUNT(*) > 1 "
                "ORDER BY proc LIMIT ?",
                (limit,),
            )
        ]

    def on_other_days(self, procs: Sequence[str], day: str) -> list[str]:
        """Those of ``procs`` that the ledger also holds on a day other than ``day``."""
        found: set[str] = set()
        for i in range(0, len(procs), 200):
            chunk = list(procs[i : i + 200])
            marks = ",".join("?" * len(chunk))
            found |= {
                str(p)
                for (p,) in self._run(
                    f"SELECT DISTINCT proc FROM ledger_inputs WHERE proc IN ({marks}) AND day != ?",
                    (*chunk, day),
                )
            }
        return sorted(found)

    def processed(self, proc: str, version: str, day: str | None = None) -> bool:
        """Whether a change to ``proc`` at ``version`` needs no sync: every day the ledger
        holds it on has it at that version or later (so a day it left, not yet recomputed,
        keeps the change live), and, when the change's own ``day`` is known, that day is one of
        them."""
        rows = self._run("SELECT day, version FROM ledger_inputs WHERE proc = ?", (proc,))
        if not rows or (day is not None and day not in {str(d) for d, _ in rows}):
            return False
        return all(_at_least(str(seen), version) for _, seen in rows)

    def prune(self, before: float) -> int:
        """Delete done inbox rows finished, and runs logged, before ``before`` (epoch seconds):
        the rows retention no longer keeps. Dead letters and the ledger are never pruned."""
        done = self._run(
            "DELETE FROM inbox WHERE status = 'done' AND done_at < ? RETURNING id", (before,)
        )
        runs = self._run("DELETE FROM runs WHERE at < ? RETURNING id", (before,))
        return len(done) + len(runs)

    def runs(self) -> list[tuple[str, str, str, bool]]:
        return [
            (str(d), str(w), str(h), bool(c))
            for d, w, h, c in self._run(
                "SELECT day, worker, decision_hash, changed FROM runs ORDER BY id"
            )
        ]

    # -- small values ----------------------------------------------------------------------------
    def get_value(self, key: str) -> str | None:
        rows = self._run("SELECT value FROM kv WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def keys_with_prefix(self, prefix: str, limit: int = 100) -> list[str]:
        rows = self._run("SELECT key FROM kv WHERE key >= ? AND key < ? ORDER BY key LIMIT ?",
                         (prefix, prefix + "\uffff", limit))  # fmt: skip
        return [str(r[0]) for r in rows]

    def delete_value(self, key: str) -> None:
        self._run("DELETE FROM kv WHERE key = ?", (key,))

    def set_value(self, key: str, value: str) -> None:
        self._run(
            "INSERT INTO kv (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
