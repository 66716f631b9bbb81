"""The billing office's workbench in the store: each synced day's review record (a summary
row for the queue, the decision's versions), the decisions people made on it (append-only),
and the workbench's local users.

The queue is paged by keyset (the sort value and the day key of the last row shown), so a
page costs the same at 100k days as at 100; its filters are indexed columns, and the
many-valued ones (clinicians, finding codes) a tag table.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: the queue's sort orders: (column, descending)
SORTS = {"risk": ("at_risk", True), "age": ("first_seen", False), "date": ("dos", True)}
#: the queue's kinds of attention: a summary column > 0
KINDS = ("errors", "held", "warnings", "unpriced", "rejected", "auth_low")
SUMMARY = (
    "patient",
    "dos",
    "payer",
    "clinic",
    "errors",
    "warnings",
    "held",
    "unpriced",
    "rejected",
    "auth_low",
    "at_risk",
    "total",
)


@dataclass(frozen=True, slots=True)
class QueueFilter:
    clinic: str | None = None
    payer: str | None = None
    clinician: str | None = None
    finding: str | None = None
    kind: str | None = None  # one of KINDS
    date_from: str | None = None
    date_to: str | None = None
    status: str = "open"  # open | held | done | all


@dataclass(frozen=True, slots=True)
class ReviewRow:
    day: str
    patient: str
    dos: str
    payer: str
    clinic: str
    errors: int
    warnings: int
    held: int
    unpriced: int
    rejected: int
    auth_low: int
    at_risk: int  # cents
    total: int  # cents
    status: str
    version: int
    first_seen: float
    updated_at: float
    findings: tuple[str, ...]
    clinicians: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Action:
    id: int
    day: str
    at: float
    user: str
    role: str
    action: str
    payload: dict[str, Any]
    reason: str
    version: int  # the day's version it was made on
    audit: str  # pending | written


_ROW = (
    "day, patient, dos, payer, clinic, errors, warnings, held, unpriced, rejected, auth_low, "
    "at_risk, total, status, version, first_seen, updated_at, findings, clinicians"
)


class ReviewStore:
    """Mixed into ``SqlStore`` (it supplies ``_run``, ``_atomic`` and ``clock``)."""

    clock: Callable[[], float]

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _atomic(self, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
        raise NotImplementedError

    @staticmethod
    def review_schema(id_type: str) -> list[str]:
        return [
            """CREATE TABLE IF NOT EXISTS review_days (
                day TEXT PRIMARY KEY, patient TEXT NOT NULL, dos TEXT NOT NULL,
                payer TEXT NOT NULL, clinic TEXT NOT NULL, errors INTEGER NOT NULL,
                warnings INTEGER NOT NULL, held INTEGER NOT NULL, unpriced INTEGER NOT NULL,
                rejected INTEGER NOT NULL DEFAULT 0, auth_low INTEGER NOT NULL,
                at_risk BIGINT NOT NULL, total BIGINT NOT NULL, status TEXT NOT NULL,
                version INTEGER NOT NULL, first_seen DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL, findings TEXT NOT NULL,
                clinicians TEXT NOT NULL)""",
            *(
                f"CREATE INDEX IF NOT EXISTS review_by_{name} ON review_days "
                f"(status, {column}, day)"
                for name, (column, _) in SORTS.items()
            ),
            "CREATE INDEX IF NOT EXISTS review_by_patient ON review_days (patient, dos)",
            """CREATE TABLE IF NOT EXISTS review_tags (
                kind TEXT NOT NULL, value TEXT NOT NULL, day TEXT NOT NULL,
                PRIMARY KEY (kind, value, day))""",
            "CREATE INDEX IF NOT EXISTS review_tags_day ON review_tags (day)",
            # the values the queue's filters offer (kept as days bring them; never removed)
            """CREATE TABLE IF NOT EXISTS review_values (
                kind TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (kind, value))""",
            # each day's latest lines (the reports: units, assistants' share, revenue)
            """CREATE TABLE IF NOT EXISTS review_lines (
                day TEXT NOT NULL, n INTEGER NOT NULL, dos TEXT NOT NULL, payer TEXT NOT NULL,
                code TEXT NOT NULL, discipline TEXT NOT NULL, units INTEGER NOT NULL,
                modifiers TEXT NOT NULL, assistant INTEGER NOT NULL, net BIGINT NOT NULL,
                PRIMARY KEY (day, n))""",
            "CREATE INDEX IF NOT EXISTS review_lines_dos ON review_lines (dos)",
            """CREATE TABLE IF NOT EXISTS review_versions (
                day TEXT NOT NULL, version INTEGER NOT NULL, at DOUBLE PRECISION NOT NULL,
                cause TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (day, version))""",
            f"""CREATE TABLE IF NOT EXISTS review_actions (
                id {id_type}, day TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,
                username TEXT NOT NULL, role TEXT NOT NULL, action TEXT NOT NULL,
                payload TEXT NOT NULL, reason TEXT NOT NULL, version INTEGER NOT NULL,
                audit TEXT NOT NULL DEFAULT 'pending')""",
            "CREATE INDEX IF NOT EXISTS review_actions_day ON review_actions (day, id)",
            "CREATE INDEX IF NOT EXISTS review_actions_audit ON review_actions (audit, id)",
            """CREATE TABLE IF NOT EXISTS workbench_users (
                username TEXT PRIMARY KEY, password TEXT NOT NULL, role TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL, disabled INTEGER NOT NULL DEFAULT 0)""",
        ]

    # -- the days ----------------------------------------------------------------------------
    def review_put(
        self, day: str, summary: Mapping[str, Any], body: Mapping[str, Any], cause: str
    ) -> int:
        """The day's review record after a sync: a new version when the decision's body
        changed (the status goes back to open when the day still needs attention; a held day
        stays held). Returns the day's version."""
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        now = self.clock()
        old = self._run("SELECT version, status, first_seen FROM review_days WHERE day = ?", (day,))
        if old:
            version, status, first_seen = int(old[0][0]), str(old[0][1]), float(old[0][2])
            latest = self._run(
                "SELECT body FROM review_versions WHERE day = ? AND version = ?", (day, version)
            )
            if latest and latest[0][0] == text:
                return version
            version += 1
        else:
            version, status, first_seen = 1, "open", now
        attention = any(int(summary.get(k, 0)) > 0 for k in KINDS)
        if status != "held":
            status = "open" if attention else "done"
        values = tuple(summary[k] for k in SUMMARY)
        findings = sorted(set(summary.get("findings", ())))
        clinicians = sorted(set(summary.get("clinicians", ())))
        tags = [("finding", f) for f in findings] + [("clinician", c) for c in clinicians]
        tags += [("note", n) for n in sorted(set(summary.get("notes", ())))]
        self._atomic(
            [
                ("DELETE FROM review_days WHERE day = ?", (day,)),
                (
                    f"INSERT INTO review_days ({_ROW}) VALUES ({', '.join('?' * 19)})",
                    (
                        day,
                        *values,
                        status,
                        version,
                        first_seen,
                        now,
                        json.dumps(findings),
                        json.dumps(clinicians),
                    ),
                ),
                (
                    "INSERT INTO review_versions (day, version, at, cause, body) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (day, version, now, cause, text),
                ),
                *(
                    (
                        "INSERT INTO review_values (kind, value) VALUES (?, ?) "
                        "ON CONFLICT DO NOTHING",
                        (k, v),
                    )
                    for k, v in [*tags, ("clinic", summary["clinic"]), ("payer", summary["payer"])]
                    if v
                ),
                ("DELETE FROM review_tags WHERE day = ?", (day,)),
                ("DELETE FROM review_lines WHERE day = ?", (day,)),
                *(
                    (
                        "INSERT INTO review_lines (day, n, dos, payer, code, discipline, units, "
                        "modifiers, assistant, net) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            day,
                            n,
                            summary["dos"],
                            summary["payer"],
                            ln["code"],
                            ln["discipline"],
                            ln["units"],
                            ln["modifiers"],
                            int(ln["assistant"]),
                            ln["net"],
                        ),
                    )
                    for n, ln in enumerate(summary.get("lines", ()))
                ),
                *(
                    ("INSERT INTO review_tags (kind, value, day) VALUES (?, ?, ?)", (k, v, day))
                    for k, v in tags
                ),
            ]
        )
        return version

    def review_report(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """A report's query over the review tables (``adapter.workbench.reports``)."""
        return self._run(sql, params)

    def review_set_status(self, day: str, status: str) -> None:
        self._run("UPDATE review_days SET status = ? WHERE day = ?", (status, day))

    def review_set_rejected(self, day: str, rejected: int) -> None:
        """Deliveries a receiver refused for the day (the outbox's count): a day worked to
        done needs attention again."""
        self._run(
            "UPDATE review_days SET rejected = ?, status = CASE WHEN ? > 0 AND "
            "status = 'done' THEN 'open' ELSE status END WHERE day = ?",
            (rejected, rejected, day),
        )

    def review_row(self, day: str) -> ReviewRow | None:
        rows = self._run(f"SELECT {_ROW} FROM review_days WHERE day = ?", (day,))
        return _review_row(rows[0]) if rows else None

    def review_versions(
        self, day: str, limit: int = 1_000
    ) -> list[tuple[int, float, str, dict[str, Any]]]:
        """(version, at, cause, body), newest first (``limit=1``: the latest alone)."""
        rows = self._run(
            "SELECT version, at, cause, body FROM review_versions WHERE day = ? "
            "ORDER BY version DESC LIMIT ?",
            (day, limit),
        )
        return [(int(v), float(a), str(c), json.loads(b)) for v, a, c, b in rows]

    def review_queue(
        self,
        f: QueueFilter,
        *,
        sort: str = "risk",
        after: tuple[Any, str] | None = None,
        limit: int = 50,
    ) -> list[ReviewRow]:
        """A page of the queue: rows after the keyset ``after`` (sort value, day)."""
        column, desc = SORTS[sort]
        where, params = self._where(f)
        if after is not None:
            op = "<" if desc else ">"
            where.append(f"({column} {op} ? OR ({column} = ? AND day > ?))")
            params += [after[0], after[0], after[1]]
        order = f"{column} {'DESC' if desc else 'ASC'}, day ASC"
        sql = (
            f"SELECT {_ROW} FROM review_days WHERE {' AND '.join(where) or '1 = 1'} "
            f"ORDER BY {order} LIMIT ?"
        )
        return [_review_row(r) for r in self._run(sql, (*params, limit))]

    def review_count(self, f: QueueFilter, cap: int = 1_000) -> int:
        """How many days the filter matches, counted up to ``cap`` (a bounded cost)."""
        where, params = self._where(f)
        sql = (
            f"SELECT COUNT(*) FROM (SELECT 1 FROM review_days WHERE "
            f"{' AND '.join(where) or '1 = 1'} LIMIT ?) AS q"
        )
        return int(self._run(sql, (*params, cap))[0][0])

    @staticmethod
    def _where(f: QueueFilter) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        if f.status != "all":
            where.append("status = ?")
            params.append(f.status)
        for column, value in (("clinic", f.clinic), ("payer", f.payer)):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        if f.kind in KINDS:
            where.append(f"{f.kind} > 0")
        if f.date_from:
            where.append("dos >= ?")
            params.append(f.date_from)
        if f.date_to:
            where.append("dos <= ?")
            params.append(f.date_to)
        for kind, value in (("clinician", f.clinician), ("finding", f.finding)):
            if value:
                where.append("day IN (SELECT day FROM review_tags WHERE kind = ? AND value = ?)")
                params += [kind, value]
        return where, params

    def review_choices(self) -> dict[str, list[str]]:
        """The values the queue's filters offer (clinics, payers, clinicians, findings)."""
        out: dict[str, list[str]] = {k: [] for k in ("clinic", "payer", "clinician", "finding")}
        for kind, value in self._run("SELECT kind, value FROM review_values ORDER BY kind, value"):
            out.setdefault(str(kind), []).append(str(value))
        return out

    # -- the decisions -----------------------------------------------------------------------
    def review_act(
        self,
        day: str,
        *,
        user: str,
        role: str,
        action: str,
        payload: Mapping[str, Any],
        reason: str,
        version: int,
    ) -> int:
        """Append a decision (never updated or deleted, but for its audit status)."""
        rows = self._run(
            "INSERT INTO review_actions (day, at, username, role, action, payload, reason, "
            "version) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                day,
                self.clock(),
                user,
                role,
                action,
                json.dumps(payload, sort_keys=True),
                reason,
                version,
            ),
        )
        return int(rows[0][0])

    def review_actions(self, day: str | None = None, *, audit: str | None = None,
                       limit: int | None = None) -> list[Action]:  # fmt: skip
        """A day's decisions, oldest first: all of them (what the rules and the hold are
        computed from is never cut short); ``limit`` only for the pending audits' batches."""
        where: list[str] = []
        params: list[Any] = []
        if day is not None:
            where.append("day = ?")
            params.append(day)
        if audit is not None:
            where.append("audit = ?")
            params.append(audit)
        clause = " AND ".join(where) or "1 = 1"
        sql = ("SELECT id, day, at, username, role, action, payload, reason, version, audit "
               f"FROM review_actions WHERE {clause} ORDER BY id")  # fmt: skip
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = self._run(sql, tuple(params))
        return [Action(int(i), str(d), float(a), str(u), str(r), str(k), json.loads(p),
                       str(why), int(v), str(au))
                for i, d, a, u, r, k, p, why, v, au in rows]  # fmt: skip

    def review_audited(self, action_id: int, status: str = "written") -> None:
        """``written`` (to the EMR as an AuditEvent) or ``store-only``."""
        self._run("UPDATE review_actions SET audit = ? WHERE id = ?", (status, action_id))

    # -- the users ---------------------------------------------------------------------------
    def user_put(self, username: str, password_hash: str, role: str) -> None:
        self._run(
            "INSERT INTO workbench_users (username, password, role, created_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (username) DO UPDATE SET "
            "password = excluded.password, role = excluded.role, disabled = 0",
            (username, password_hash, role, self.clock()),
        )

    def user_get(self, username: str) -> tuple[str, str, bool] | None:
        """(password hash, role, disabled)."""
        rows = self._run(
            "SELECT password, role, disabled FROM workbench_users WHERE username = ?", (username,)
        )
        return (str(rows[0][0]), str(rows[0][1]), bool(rows[0][2])) if rows else None

    def user_disable(self, username: str) -> bool:
        rows = self._run(
            "UPDATE workbench_users SET disabled = 1 WHERE username = ? RETURNING username",
            (username,),
        )
        return bool(rows)

    def users(self) -> list[tuple[str, str, bool]]:
        return [
            (str(u), str(r), bool(d))
            for u, r, d in self._run(
                "SELECT username, role, disabled FROM workbench_users ORDER BY username"
            )
        ]


def _review_row(r: Sequence[Any]) -> ReviewRow:
    return ReviewRow(
        day=str(r[0]),
        patient=str(r[1]),
        dos=str(r[2]),
        payer=str(r[3]),
        clinic=str(r[4]),
        errors=int(r[5]),
        warnings=int(r[6]),
        held=int(r[7]),
        unpriced=int(r[8]),
        rejected=int(r[9]),
        auth_low=int(r[10]),
        at_risk=int(r[11]),
        total=int(r[12]),
        status=str(r[13]),
        version=int(r[14]),
        first_seen=float(r[15]),
        updated_at=float(r[16]),
        findings=tuple(json.loads(r[17])),
        clinicians=tuple(json.loads(r[18])),
    )
