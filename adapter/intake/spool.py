"""An on-disk spool that groups streamed FHIR resources into patient-days.

Replay reads inputs of any size: every resource goes into a temporary SQLite file (indexes on
patient + date of service, practitioner roles, coverages, care plans, performers), so memory holds
one patient-day at a time however many files or NDJSON lines come in. The spool also answers the
parser's ``Lookup`` questions. When the same resource arrives twice, the highest
``meta.lastUpdated`` / ``meta.versionId`` wins (later input wins a tie).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import Any

import orjson

from adapter.fhir import jsontext
from adapter.fhir.dates import service_date_of
from adapter.fhir.parse import Problem
from adapter.fhir.refs import (
    PLACEHOLDER,
    as_list,
    contained_ids,
    identifier_key,
    instant,
    is_id,
    meta_of,
    normalize_references,
    patient_key,
    ref_key,
    reference_of,
    version_of,
)

Resource = dict[str, Any]

_SCHEMA = """
CREATE TABLE resources(key TEXT PRIMARY KEY, type TEXT NOT NULL, body TEXT NOT NULL,
                       rank TEXT NOT NULL, file INTEGER NOT NULL);
CREATE TABLE aliases(alias TEXT PRIMARY KEY, key TEXT NOT NULL);
CREATE TABLE procedures(key TEXT PRIMARY KEY, patient TEXT NOT NULL, dos TEXT, status TEXT,
                        encounter TEXT, file INTEGER NOT NULL);
CREATE INDEX procedures_day ON procedures(patient, dos);
CREATE TABLE actors(proc TEXT NOT NULL, actor TEXT NOT NULL, dos TEXT);
CREATE INDEX actors_actor ON actors(actor, dos);
CREATE INDEX actors_proc ON actors(proc);
CREATE TABLE links(kind TEXT NOT NULL, owner TEXT NOT NULL, key TEXT NOT NULL);
CREATE INDEX links_owner ON links(kind, owner);
CREATE INDEX links_key ON links(key);
CREATE TABLE identifiers(ident TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY(ident, key));
CREATE INDEX identifiers_key ON identifiers(key);
CREATE TABLE deleted(key TEXT PRIMARY KEY, rank TEXT NOT NULL);
"""
#: resource type -> (the element naming its owner, the link kind)
_LINKS = {
    "PractitionerRole": ("practitioner", "role"),
    "Coverage": ("beneficiary", "coverage"),
    "CarePlan": ("subject", "careplan"),
    "DocumentReference": ("subject", "document"),
    "ClaimResponse": ("patient", "authorization"),
}
_KEPT = frozenset(
    {"Procedure", "Encounter", "Practitioner", "PractitionerRole", "Coverage", "CarePlan",
     "Patient", "Organization", "Condition", "DocumentReference", "ClaimResponse",
     "Provenance", "Claim"}
)  # fmt: skip


def _rank(resource: Resource) -> str:
    """``meta.lastUpdated`` (as UTC) and ``meta.versionId``, stored as JSON for ``_newer``."""
    updated = instant(meta_of(resource).get("lastUpdated"))
    return json.dumps([updated.isoformat() if updated else None, version_of(resource)])


def _newer(old: str, new: str) -> bool:
    """Whether the copy ranked ``new`` replaces the one ranked ``old``.

    The later ``lastUpdated`` wins when both have one and they differ; otherwise the higher
    ``versionId`` (numerically when both are numbers); otherwise the copy read later.
    """
    (old_stamp, old_version), (new_stamp, new_version) = json.loads(old), json.loads(new)
    if old_stamp and new_stamp and old_stamp != new_stamp:
        return bool(new_stamp > old_stamp)
    if old_version is not None and new_version is not None and old_version != new_version:
        if (
            old_version.isascii()
            and old_version.isdigit()
            and new_version.isascii()
            and new_version.isdigit()
        ):
            return int(new_version) > int(old_version)
        return bool(new_version > old_version)
    return True


#: cached resources kept across days (practitioners, roles, coverages, care plans) at most:
#: 20,000 kept a replay's memory rising up to 1M procedures (a worker at 122 MB); the few
#: clinicians' resources every day reads are read again after a clear at little cost
CACHE_BOUND = 4_000
#: cached lookups that belong to one patient-day (forgotten between days)
_DAY_SCOPED = ("Procedure/", "Encounter/", "urn:")


def dumps(resource: Resource) -> str:
    """A resource as the spool keeps it (compact JSON text)."""
    return jsontext.dumps(resource).decode()


@dataclass(slots=True)
class SpoolStats:
    resources: int = 0
    ignored: int = 0  # resource types replay does not need
    superseded: int = 0  # an older version of a resource already spooled


class Spool:
    """The spool file and the ``Lookup`` the parser uses."""

    def __init__(
        self, path: Path | str = ":memory:", *, zone: tzinfo | None = None, create: bool = True
    ) -> None:
        """A new spool at ``path``; ``create=False``: one written already, to read (a replay's
        worker processes)."""
        self.zone = zone  # the site's time zone for dates of service (None: own offsets)
        self.path = str(path)
        self.db = sqlite3.connect(str(path))
        pragmas = "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA temp_store=FILE;"
        self.db.executescript(pragmas + _SCHEMA if create else "PRAGMA query_only=ON;")
        self.stats = SpoolStats()
        self.problems: list[Problem] = []
        self.problem_count = 0
        self._cache: dict[str, Resource | None] = {}
        self._day_keys: list[str] = []  # cached keys of procedures and encounters
        self._aliases: dict[str, str] = {}  # key_of's answers (forgotten when an alias is added)
        self._roles: dict[str, list[Resource]] = {}

    def close(self) -> None:
        self.db.close()

    def problem(self, where: str, reason: str, *, keep: int = 200) -> None:
        self.problem_count += 1
        if len(self.problems) < keep:
            self.problems.append(Problem(where, reason))

    # -- writing ---------------------------------------------------------------------------
    def add(
        self, resource: Resource, *, file: int, where: str, full_url: str | None = None
    ) -> None:
        """Spool one resource read from input ``file`` (``where`` locates it for messages)."""
        key = self._key(resource, where, full_url)
        if key is None:
            return
        kind = str(resource["resourceType"])
        if full_url and full_url != key:
            self.db.execute(
                "INSERT OR REPLACE INTO aliases VALUES (?, ?)", (ref_key(full_url), key)
            )
            self._aliases.clear()
        rank = _rank(resource)
        gone = self.db.execute("SELECT rank FROM deleted WHERE key = ?", (key,)).fetchone()
        if gone is not None:
            if not _newer(gone[0], rank):
                self.stats.superseded += 1  # an older version than the delete already read
                return
            self.db.execute("DELETE FROM deleted WHERE key = ?", (key,))  # re-created since
        row = self.db.execute("SELECT rank FROM resources WHERE key = ?", (key,)).fetchone()
        if row is not None:
            self.stats.superseded += 1
            if not _newer(row[0], rank):
                return
            self._forget(key)
        # contained, conditional and identifier-only references made resolvable (see
        # normalize_references): the spool answers them like any other
        resource = normalize_references(resource, key)
        if kind == "Procedure" and not self._index_procedure(resource, key, file, where):
            return
        self._store(key, kind, resource, rank, file)
        siblings = contained_ids(resource)
        for inner in as_list(resource.get("contained")):
            inner_kind = inner.get("resourceType") if isinstance(inner, dict) else None
            if inner_kind in _KEPT and inner_kind != "Procedure" and is_id(inner.get("id")):
                fixed = normalize_references(inner, key, siblings)
                self._store(f"{key}#{inner['id']}", str(inner_kind), fixed, rank, file)

    def _store(self, key: str, kind: str, resource: Resource, rank: str, file: int) -> None:
        self.db.execute(
            "INSERT INTO resources VALUES (?, ?, ?, ?, ?)",
            (key, kind, dumps(resource), rank, file),
        )
        self.stats.resources += 1
        # a lookup before this resource arrived (live gathering adds in rounds) cached a miss
        # or an older copy: forget it
        self._cache.pop(key, None)
        self._link(kind, resource, key)
        idents = {
            found
            for ident in as_list(resource.get("identifier"))
            if isinstance(ident, dict)
            and (found := identifier_key(kind, ident.get("system"), ident.get("value")))
        }
        self.db.executemany(
            "INSERT OR IGNORE INTO identifiers VALUES (?, ?)", [(i, key) for i in idents]
        )
        for ident in idents:
            self._cache.pop(ident, None)

    def deleted_count(self) -> int:
        """Resources the input deleted (a history Bundle's DELETE entries) and never re-created."""
        return int(self.db.execute("SELECT COUNT(*) FROM deleted").fetchone()[0])

    def delete(self, kind: str, rid: str, version: Resource) -> None:
        """A delete read from the input (a history Bundle's ``DELETE`` entry): the resource is
        gone unless a newer version is read (``version``: the delete's ``meta``, ranked as a
        resource's). The version it removes is counted superseded; ``deleted_count`` tells how
        many resources stay deleted."""
        if kind not in _KEPT:
            self.stats.ignored += 1
            return
        key = f"{kind}/{rid}"
        rank = _rank(version)
        row = self.db.execute("SELECT rank FROM resources WHERE key = ?", (key,)).fetchone()
        if row is not None:
            if not _newer(row[0], rank):
                return  # a newer version than the delete: it stands
            self.stats.superseded += 1
            self._forget(key)
        gone = self.db.execute("SELECT rank FROM deleted WHERE key = ?", (key,)).fetchone()
        if gone is None or _newer(gone[0], rank):
            self.db.execute("INSERT OR REPLACE INTO deleted VALUES (?, ?)", (key, rank))

    def _key(self, resource: Resource, where: str, full_url: str | None) -> str | None:
        """The spool key of a resource worth keeping (``Type/id``, or its ``urn:uuid``); None
        for a resource that is not kept (counted or reported)."""
        kind = resource.get("resourceType")
        if not isinstance(kind, str):
            self.problem(where, "not a FHIR resource (no resourceType)")
            return None
        if kind not in _KEPT:
            self.stats.ignored += 1
            return None
        rid = resource.get("id")
        if isinstance(rid, str) and rid:
            return f"{kind}/{rid}"
        if full_url and full_url.startswith("urn:uuid:"):
            return full_url
        self.problem(where, f"{kind} without an id")
        return None

    def _link(self, kind: str, resource: Resource, key: str) -> None:
        """Index a role by its practitioner, a coverage by its beneficiary, a care plan by its
        subject."""
        if kind == "Provenance":  # a signature on a plan of care (the certification clock)
            for target in as_list(resource.get("target")):
                ref = reference_of(target)
                if ref and ref_key(ref).startswith("CarePlan/"):
                    self.db.execute("INSERT INTO links VALUES (?, ?, ?)",
                                    ("provenance", ref_key(ref), key))  # fmt: skip
            return
        field = _LINKS.get(kind)
        owner = reference_of(resource.get(field[0])) if field else None
        if field and owner:
            self.db.execute("INSERT INTO links VALUES (?, ?, ?)", (field[1], ref_key(owner), key))
            if field[1] == "role":
                self._roles.pop(self.key_of(owner), None)

    def _forget(self, key: str) -> None:
        inner = f"{key}#%"  # its contained resources go with it
        for sql in (
            "DELETE FROM resources WHERE key = ? OR key LIKE ?",
            "DELETE FROM procedures WHERE key = ? OR key LIKE ?",
            "DELETE FROM actors WHERE proc = ? OR proc LIKE ?",
            "DELETE FROM links WHERE key = ? OR key LIKE ?",
            "DELETE FROM identifiers WHERE key = ? OR key LIKE ?",
        ):
            self.db.execute(sql, (key, inner))
        for cached in [k for k in self._cache if k == key or k.startswith(f"{key}#")]:
            del self._cache[cached]
        if key.startswith("PractitionerRole/"):
            self._roles.clear()  # the old copy may have named another practitioner

    def _index_procedure(self, proc: Resource, key: str, file: int, where: str) -> bool:
        subject = reference_of(proc.get("subject"))
        if not subject:
            self.problem(where, f"{key} has no subject: cannot tell whose charge it is")
            return False
        encounter = reference_of(proc.get("encounter"))
        status = proc.get("status") if isinstance(proc.get("status"), str) else None
        if status is None:  # a required element: only a completed procedure bills, so say why not
            self.problem(where, f"{key} has no status (completed, entered-in-error, …): not billed")
        dos = service_date_of(proc, self.zone)
        self.db.execute(
            "INSERT INTO procedures VALUES (?, ?, ?, ?, ?, ?)",
            (key, ref_key(subject), dos, status, ref_key(encounter) if encounter else None, file),
        )
        performers = proc.get("performer")
        actors = {
            ref_key(r)
            for p in (performers if isinstance(performers, list) else [])
            if isinstance(p, dict) and (r := reference_of(p.get("actor")))
        }
        self.db.executemany("INSERT INTO actors VALUES (?, ?, ?)", [(key, a, dos) for a in actors])
        return True

    def finish(self) -> None:
        """Resolve urn:uuid references and place procedures without a date by their encounter."""
        for table, column in (
            ("procedures", "patient"),
            ("procedures", "encounter"),
            ("actors", "actor"),
            ("links", "owner"),
        ):
            self.db.execute(
                f"UPDATE {table} SET {column} = (SELECT key FROM aliases WHERE alias = {column}) "
                f"WHERE {column} IN (SELECT alias FROM aliases)"
            )
            # a reference by identifier: to the one resource holding it (none or several:
            # left as it is, and reported where it matters)
            self.db.execute(
                f"UPDATE {table} SET {column} = (SELECT MIN(key) FROM identifiers "
                f"WHERE ident = {column}) WHERE {column} LIKE '{PLACEHOLDER}%' AND "
                f"(SELECT COUNT(DISTINCT key) FROM identifiers WHERE ident = {column}) = 1"
            )
        self._drop_non_patients()
        undated = self.db.execute(
            "SELECT key, encounter FROM procedures WHERE dos IS NULL AND status = 'completed'"
        ).fetchall()
        for key, encounter in undated:
            enc = self.get(encounter) if encounter else None
            period = enc.get("period") if enc and isinstance(enc.get("period"), dict) else {}
            start = period.get("start") if isinstance(period, dict) else None
            dos = service_date_of({"performedDateTime": start}, self.zone)
            if dos is not None:
                self.db.execute("UPDATE procedures SET dos = ? WHERE key = ?", (dos, key))
                self.db.execute("UPDATE actors SET dos = ? WHERE proc = ?", (dos, key))
            else:
                self.problem(key, "no performed time and no encounter period: no date of service")
        self.db.commit()

    def _drop_non_patients(self) -> None:
        """Procedures whose subject is not a Patient (a Group, a Device, a malformed reference)
        are on no patient's day: reported and left out."""
        rows = self.db.execute("SELECT key, patient FROM procedures").fetchall()
        for key, subject in rows:
            if subject.startswith(PLACEHOLDER):
                self.problem(key, self._unresolved(subject, "subject") + ": not billed")
                self.db.execute("DELETE FROM procedures WHERE key = ?", (key,))
                self.db.execute("DELETE FROM actors WHERE proc = ?", (key,))
            elif patient_key(subject) != subject:
                self.problem(key, "subject is not a Patient: not billed")
                self.db.execute("DELETE FROM procedures WHERE key = ?", (key,))
                self.db.execute("DELETE FROM actors WHERE proc = ?", (key,))

    # -- reading ---------------------------------------------------------------------------
    def day_count(self) -> int:
        return int(self.db.execute(
            "SELECT COUNT(*) FROM (SELECT DISTINCT patient, dos FROM procedures "
            "WHERE status = 'completed' AND dos IS NOT NULL) AS d").fetchone()[0])  # fmt: skip

    def days(self) -> Iterator[tuple[int, str, str]]:
        """(file, patient, date) of every patient-day with completed procedures: by the first
        input file naming the patient (where all the patient's days are written), then patient,
        then date, so each patient's days come in date order (the year's KX running total)."""
        cur = self.db.execute(
            "WITH billed AS (SELECT patient, dos, file FROM procedures "
            "WHERE status = 'completed' AND dos IS NOT NULL), "
            "firsts AS (SELECT patient, MIN(file) AS f FROM billed GROUP BY patient) "
            "SELECT firsts.f, billed.patient, billed.dos FROM billed JOIN firsts "
            "ON firsts.patient = billed.patient GROUP BY billed.patient, billed.dos "
            "ORDER BY firsts.f, billed.patient, billed.dos"
        )
        yield from cur

    def procedures_of(self, patient: str, dos: str) -> list[Resource]:
        """The day's completed Procedures; ``_key`` carries the spool key (``urn:uuid:…`` for
        a procedure that has no id yet)."""
        rows = self.db.execute(
            "SELECT p.key, r.body FROM procedures p JOIN resources r ON r.key = p.key "
            "WHERE p.patient = ? AND p.dos = ? AND p.status = 'completed' ORDER BY p.key",
            (patient, dos),
        )
        return [{**orjson.loads(b), "_key": k} for k, b in rows]

    def procedure_files(self) -> list[int]:
        return [f for (f,) in self.db.execute("SELECT DISTINCT file FROM procedures ORDER BY file")]

    def status_counts(self) -> dict[str, int]:
        rows = self.db.execute(
            "SELECT COALESCE(status, '(none)'), COUNT(*) FROM procedures GROUP BY 1"
        )
        return dict(rows.fetchall())

    def resources(self, kind: str) -> list[Resource]:
        """Every spooled resource of one type (for small, in-memory spools)."""
        rows = self.db.execute("SELECT body FROM resources WHERE type = ? ORDER BY key", (kind,))
        return [orjson.loads(b) for (b,) in rows]

    def clear_cache(self) -> None:
        """Between patient-days: forget procedures and encounters (they belong to a day); keep
        practitioners, roles, coverages and care plans, up to a bound."""
        if len(self._cache) > CACHE_BOUND:
            self._cache.clear()
        else:
            for key in self._day_keys:
                self._cache.pop(key, None)
        self._day_keys.clear()

    def _holders(self, ident: str) -> list[str]:
        rows = self.db.execute(
            "SELECT DISTINCT key FROM identifiers WHERE ident = ? ORDER BY key", (ident,)
        )
        return [k for (k,) in rows]

    def _unresolved(self, ident: str, what: str) -> str:
        """Why a reference by identifier did not resolve (for a problem)."""
        shown = ident[len(PLACEHOLDER) :]
        holders = self._holders(ident)
        if holders:
            return f"{what} identifier {shown} names {len(holders)} resources"
        return f"{what} identifier {shown} matches no resource in the input"

    # Lookup protocol ---------------------------------------------------------------------
    def key_of(self, ref: str) -> str:
        key = ref_key(ref)
        if key.startswith(PLACEHOLDER):
            holders = self._holders(key)
            return holders[0] if len(holders) == 1 else key
        known = self._aliases.get(key)
        if known is None:
            row = self.db.execute("SELECT key FROM aliases WHERE alias = ?", (key,)).fetchone()
            known = str(row[0]) if row else key
            if len(self._aliases) > 50_000:
                self._aliases.clear()
            self._aliases[key] = known
        return known

    def get(self, ref: str) -> Resource | None:
        key = self.key_of(ref)
        if key not in self._cache:
            row = self.db.execute("SELECT body FROM resources WHERE key = ?", (key,)).fetchone()
            self._cache[key] = orjson.loads(row[0]) if row else None
            if key.startswith(_DAY_SCOPED):
                self._day_keys.append(key)
        return self._cache[key]

    def _linked(self, kind: str, owner: str) -> list[Resource]:
        rows = self.db.execute(
            "SELECT r.body FROM links l JOIN resources r ON r.key = l.key "
            "WHERE l.kind = ? AND l.owner = ? ORDER BY l.key",
            (kind, self.key_of(owner)),
        )
        return [orjson.loads(b) for (b,) in rows]

    def roles_of(self, practitioner_key: str) -> Sequence[Resource]:
        key = self.key_of(practitioner_key)
        if key not in self._roles:
            if len(self._roles) > 20_000:
                self._roles.clear()
            self._roles[key] = self._linked("role", key)
        return self._roles[key]

    def coverages_of(self, patient_key: str) -> Sequence[Resource]:
        return self._linked("coverage", patient_key)

    def care_plans_of(self, patient_key: str) -> Sequence[Resource]:
        return self._linked("careplan", patient_key)

    def documents_of(self, patient_key: str) -> Sequence[Resource]:
        return self._linked("document", patient_key)

    def authorizations_of(self, patient_key: str) -> Sequence[Resource]:
        return self._linked("authorization", patient_key)

    def provenances_of(self, target_key: str) -> Sequence[Resource]:
        return self._linked("provenance", target_key)

    def sessions_of(
        self, actor_keys: Iterable[str], service_date: str, exclude_patient: str
    ) -> Sequence[Resource]:
        keys = list(actor_keys)
        if not keys:
            return []
        marks = ",".join("?" * len(keys))
        rows = self.db.execute(
            "SELECT DISTINCT r.body FROM actors a JOIN procedures p ON p.key = a.proc "
            f"JOIN resources r ON r.key = p.key WHERE a.actor IN ({marks}) AND a.dos = ? "
            "AND p.patient != ? ORDER BY p.key",
            (*keys, service_date, exclude_patient),
        )
        return [orjson.loads(b) for (b,) in rows]
