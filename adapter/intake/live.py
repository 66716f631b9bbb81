"""Live intake: turn a changed Procedure or Encounter into the patient-days it touches, and gather
a patient-day's context from the EMR with as few requests as standard FHIR search allows.

Every source (webhook notification, polling, reconciliation sweep) produces ``ChangeEvent``s;
``days_of`` turns them into ``(patient, date)`` keys; ``gather_day`` fills an in-memory ``Spool``
(the same index replay uses) so the rest of the pipeline does not know where data came from.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta, tzinfo
from typing import Any

from adapter.errors import FatalServerError, InputError
from adapter.fhir.client import FhirClient, Params
from adapter.fhir.parse import ref_key, reference_of, service_date_of
from adapter.intake.spool import Spool

log = logging.getLogger(__name__)
Resource = dict[str, Any]
DayKey = tuple[str, str]  # (Patient/id, YYYY-MM-DD)


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One normalised notification: a resource that changed (full) or only its reference."""

    kind: str  # Procedure | Encounter
    id: str
    resource: Resource | None = None
    version: str | None = None
    source: str = "unknown"  # rest-hook | backport | poll | sweep | replay
    deleted: bool = False  # the EMR deleted it (found in _history): never "already processed"

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.id}"


def event_of(resource: Resource, source: str) -> ChangeEvent | None:
    kind, rid = resource.get("resourceType"), resource.get("id")
    if kind not in ("Procedure", "Encounter") or not isinstance(rid, str):
        return None
    meta = resource.get("meta") if isinstance(resource.get("meta"), dict) else {}
    version = meta.get("versionId") if isinstance(meta, dict) else None
    return ChangeEvent(kind, rid, resource, str(version) if version else None, source)


def _procedure_day(
    proc: Resource, zone: tzinfo | None, encounter_start: Callable[[str], str | None]
) -> DayKey | None:
    """A procedure's patient-day: its own date, or (no time documented) its encounter's, as
    the spool places it."""
    subject = reference_of(proc.get("subject"))
    dos = service_date_of(proc, zone)
    if dos is None and (enc := reference_of(proc.get("encounter"))):
        start = encounter_start(ref_key(enc))
        dos = service_date_of({"performedDateTime": start}, zone) if start else None
    return (ref_key(subject), dos) if subject and dos else None


def days_of(
    emr: FhirClient,
    events: Iterable[ChangeEvent],
    *,
    zone: tzinfo | None = None,
    procedures: set[str] | None = None,
) -> set[DayKey]:
    """The patient-days a batch of changes touches (reads what a notification left out).

    A Procedure the EMR no longer has (404, 410) is skipped: the caller adds the days the ledger
    billed it on, whose recomputation voids its lines. A procedure with no date is placed on its
    encounter's. An Encounter is not read unless one of its procedures has no date: its
    procedures are searched by reference (and their keys added to ``procedures``, so the caller
    can add the days they were billed on before).
    """
    starts: dict[str, str | None] = {}

    def encounter_start(key: str) -> str | None:
        if key not in starts:
            try:
                kind, _, rid = key.partition("/")
                period = emr.read(kind, rid).get("period")
                start = period.get("start") if isinstance(period, dict) else None
                starts[key] = start if isinstance(start, str) else None
            except FatalServerError as err:
                if err.status not in (404, 410):
                    raise
                starts[key] = None
        return starts[key]

    days: set[DayKey] = set()
    for ev in events:
        resource = ev.resource
        if resource is None and ev.kind == "Procedure":
            try:
                resource = emr.read(ev.kind, ev.id)
            except FatalServerError as err:
                if err.status not in (404, 410):
                    raise
                # deleted: the days it was billed on come from the ledger (the caller's)
                log.info("Procedure/%s is gone (%s): not placed", ev.id, err.status)
                continue
        if ev.kind == "Procedure":
            assert resource is not None
            day = _procedure_day(resource, zone, encounter_start)
            if day:
                days.add(day)
            else:
                log.warning("Procedure/%s has no subject or date: not placed", ev.id)
        else:  # Encounter: every procedure of it
            for proc in emr.search(
                "Procedure", {"encounter": f"Encounter/{ev.id}", "_count": "200"}
            ):
                if proc.get("resourceType") != "Procedure":
                    continue
                if procedures is not None:
                    procedures.add(f"Procedure/{proc.get('id')}")
                if day := _procedure_day(proc, zone, encounter_start):
                    days.add(day)
    return days


Search = tuple[str, Params]


def gather_day(
    emr: FhirClient,
    patient: str,
    service_date: str,
    *,
    also: Sequence[Search] = (),
    max_rounds: int = 4,
    zone: tzinfo | None = None,
) -> tuple[Spool, list[list[Resource]]]:
    """Fetch everything one patient-day's evaluation needs into an in-memory spool.

    Each round is one ``batch`` of searches, so a day usually costs two round trips: (1) the
    patient's procedures around the date with their performers and encounters, the patient's
    encounters around the date, coverages and care plans (plus ``also``, searches the caller
    wants answered in the same request); (2) whatever those reference but did not bring (``_id``
    searches), the roles of every practitioner, the procedures of the day's encounters (those
    with no time have no date to be found by), and the same clinicians' procedures with other
    patients that day (the concurrency check). Another round follows only when a round found new
    references (a role read in round 2 naming another practitioner, say); a day still finding
    some after ``max_rounds`` is an ``InputError``. Returns the spool and the answers to
    ``also``, in order.
    """
    spool = Spool(":memory:", zone=zone)
    day = date.fromisoformat(service_date)
    # the date of service is a local date (the site's zone, or each procedure's own offset):
    # search a day either side (servers compare dates in their own zone) and let the spool keep
    # the right day
    window = [
        ("date", f"ge{(day - timedelta(days=1)).isoformat()}"),
        ("date", f"le{(day + timedelta(days=1)).isoformat()}"),
    ]
    seen: set[str] = set()

    def add(resource: Resource) -> None:
        key = f"{resource.get('resourceType')}/{resource.get('id')}"
        if key not in seen:
            seen.add(key)
            spool.add(resource, file=0, where=key)

    first: list[Search] = [
        (
            "Procedure",
            [
                ("subject", patient),
                *window,
                ("_include", "Procedure:performer"),
                ("_include", "Procedure:encounter"),
                ("_count", "200"),
            ],
        ),
        ("Coverage", [("beneficiary", patient), ("_count", "50")]),
        ("CarePlan", [("subject", patient), ("_count", "50")]),
        # the patient's encounters around the date: a procedure with no time is on its
        # encounter's day, and a date search cannot find it
        ("Encounter", [("subject", patient), *window, ("_count", "50")]),
    ]
    try:
        answers = emr.search_batch([*first, *also])
        for found in answers[: len(first)]:
            for r in found:
                add(r)
        extra = answers[len(first) :]

        asked: set[str] = set()  # references read, practitioners' roles, days searched
        for round_no in range(max_rounds + 1):
            spool.clear_cache()
            searches = _next_round(
                spool, patient=patient, service_date=service_date, seen=seen, asked=asked,
                window=window, zone=zone,
            )  # fmt: skip
            if not searches:
                break
            if round_no == max_rounds:
                # a day still finding new references after this many rounds is not evaluated
                # on part of its context (a missed session of a clinician could bill one-on-one
                # time)
                raise InputError(
                    f"{patient} {service_date}: references still unresolved after "
                    f"{max_rounds} rounds of searches"
                )
            for found in emr.search_batch(searches):
                for r in found:
                    add(r)
        spool.finish()
    except BaseException:
        spool.close()
        raise
    return spool, extra


def _next_round(
    spool: Spool,
    *,
    patient: str,
    service_date: str,
    seen: set[str],
    asked: set[str],
    window: list[tuple[str, str]],
    zone: tzinfo | None,
) -> list[Search]:
    """The searches the day still needs, given what has been fetched and asked so far."""
    mine = [
        r
        for r in spool.resources("Procedure")
        if ref_key(reference_of(r.get("subject")) or "") == patient
    ]
    procs = [r for r in mine if service_date_of(r, zone) == service_date]
    encounters = {ref_key(e) for r in procs if (e := reference_of(r.get("encounter")))}
    # the patient's encounters that start on the day, and their procedures with no date,
    # which belong to the encounter's day (as replay places them)
    for enc in spool.resources("Encounter"):
        period = enc.get("period") if isinstance(enc.get("period"), dict) else {}
        start = period.get("start") if isinstance(period, dict) else None
        subject = reference_of(enc.get("subject"))
        if (
            subject
            and ref_key(subject) == patient
            and isinstance(start, str)
            and service_date_of({"performedDateTime": start}, zone) == service_date
        ):
            encounters.add(f"Encounter/{enc.get('id')}")
    procs += [
        r
        for r in mine
        if service_date_of(r, zone) is None
        and (e := reference_of(r.get("encounter")))
        and ref_key(e) in encounters
    ]
    refs: set[str] = set()
    actors: set[str] = set()
    for p in procs:
        if e := reference_of(p.get("encounter")):
            refs.add(ref_key(e))
        for perf in p.get("performer") or []:
            if isinstance(perf, dict) and (a := reference_of(perf.get("actor"))):
                actors.add(ref_key(a))
    for enc_key in sorted(k for k in refs if k.startswith("Encounter/")):
        for part in (spool.get(enc_key) or {}).get("participant") or []:
            if isinstance(part, dict) and (i := reference_of(part.get("individual"))):
                actors.add(ref_key(i))
    actors = {a for a in actors if a.startswith(("Practitioner/", "PractitionerRole/"))}
    refs |= actors
    practitioners = {a for a in actors if a.startswith("Practitioner/")}
    for role_key in sorted(a for a in actors if a.startswith("PractitionerRole/")):
        if pr := reference_of((spool.get(role_key) or {}).get("practitioner")):
            practitioners.add(ref_key(pr))
    refs |= practitioners
    # a clinician's sessions are found under the practitioner and under each of their roles
    actors |= practitioners
    for role in spool.resources("PractitionerRole"):
        pr = reference_of(role.get("practitioner"))
        if pr and ref_key(pr) in practitioners:
            actors.add(f"PractitionerRole/{role.get('id')}")

    searches: list[Search] = []
    missing: dict[str, list[str]] = {}
    for key in sorted(refs - seen):
        kind, _, rid = key.partition("/")
        if rid and f"read:{key}" not in asked:
            asked.add(f"read:{key}")
            missing.setdefault(kind, []).append(rid)
    for kind, ids in sorted(missing.items()):
        searches.extend((kind, [("_id", ",".join(chunk))]) for chunk in _chunks(ids))
    new_pracs = sorted(p for p in practitioners if f"roles:{p}" not in asked)
    asked.update(f"roles:{p}" for p in new_pracs)
    searches.extend(
        ("PractitionerRole", [("practitioner", ",".join(chunk)), ("_count", "200")])
        for chunk in _chunks(new_pracs)
    )
    # undated procedures of the day's encounters (a date search cannot find them)
    new_encounters = sorted(e for e in encounters if f"procs:{e}" not in asked)
    asked.update(f"procs:{e}" for e in new_encounters)
    searches.extend(
        ("Procedure", [("encounter", ",".join(chunk)), ("_count", "200")])
        for chunk in _chunks(new_encounters)
    )
    new_actors = sorted(a for a in actors if f"day:{a}" not in asked)
    asked.update(f"day:{a}" for a in new_actors)
    searches.extend(
        ("Procedure", [("performer", ",".join(chunk)), *window, ("_count", "200")])
        for chunk in _chunks(new_actors)
    )
    return searches


def _chunks(items: Sequence[str], size: int = 20) -> Iterator[list[str]]:
    """Comma-separated (OR) lists of at most ``size`` values, to keep URLs short."""
    for i in range(0, len(items), size):
        yield list(items[i : i + size])
