"""Live intake: turn a changed Procedure or Encounter into the patient-days it touches, and gather
a patient-day's context from the EMR with as few requests as standard FHIR search allows.

Every source (webhook notification, polling, reconciliation sweep) produces ``ChangeEvent``s;
``days_of`` turns them into ``(patient, date)`` keys; ``gather_day`` fills an in-memory ``Spool``
(the same index replay uses) so the rest of the pipeline does not know where data came from.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from adapter.fhir.client import FhirClient
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


def _procedure_day(proc: Resource) -> DayKey | None:
    subject = reference_of(proc.get("subject"))
    dos = service_date_of(proc)
    return (ref_key(subject), dos) if subject and dos else None


def days_of(emr: FhirClient, events: Iterable[ChangeEvent]) -> set[DayKey]:
    """The patient-days a batch of changes touches (reads what a notification left out)."""
    days: set[DayKey] = set()
    for ev in events:
        resource = ev.resource
        if resource is None:
            resource = emr.read(ev.kind, ev.id)
        if ev.kind == "Procedure":
            day = _procedure_day(resource)
            if day:
                days.add(day)
            else:
                log.warning("Procedure/%s has no subject or date: not placed", ev.id)
        else:  # Encounter: every procedure of it
            for proc in emr.search(
                "Procedure", {"encounter": f"Encounter/{ev.id}", "_count": "200"}
            ):
                if proc.get("resourceType") == "Procedure" and (day := _procedure_day(proc)):
                    days.add(day)
    return days


def gather_day(emr: FhirClient, patient: str, service_date: str) -> Spool:
    """Fetch everything one patient-day's evaluation needs into an in-memory spool."""
    spool = Spool(":memory:")
    day = date.fromisoformat(service_date)
    # the date of service is the local date in each procedure's own offset: search a day either
    # side (servers compare dates in their own zone) and let the spool keep the right day
    window = [
        ("date", f"ge{(day - timedelta(days=1)).isoformat()}"),
        ("date", f"le{(day + timedelta(days=1)).isoformat()}"),
        ("_count", "200"),
    ]
    seen: set[str] = set()

    def add(resource: Resource) -> None:
        key = f"{resource.get('resourceType')}/{resource.get('id')}"
        if key not in seen:
            seen.add(key)
            spool.add(resource, file=0, where=key)

    includes = [("_include", "Procedure:performer"), ("_include", "Procedure:encounter")]
    for r in emr.search("Procedure", [("subject", patient), *window, *includes]):
        add(r)
    procs = [r for r in spool.resources("Procedure") if service_date_of(r) == service_date]
    encounters = {ref_key(e) for p in procs if (e := reference_of(p.get("encounter")))}
    wanted: set[str] = set(encounters)
    for p in procs:
        for perf in p.get("performer") or []:
            if isinstance(perf, dict) and (a := reference_of(perf.get("actor"))):
                wanted.add(ref_key(a))
    for enc_key in sorted(encounters):
        enc = spool.get(enc_key)
        for part in (enc or {}).get("participant") or []:
            if isinstance(part, dict) and (i := reference_of(part.get("individual"))):
                wanted.add(ref_key(i))
    _read_missing(emr, spool, wanted, add)
    practitioners = {k for k in seen if k.startswith("Practitioner/")}
    for k in sorted(seen):
        if k.startswith("PractitionerRole/"):
            pr = reference_of((spool.get(k) or {}).get("practitioner"))
            if pr:
                practitioners.add(ref_key(pr))
    for prac in sorted(practitioners):
        for r in emr.search("PractitionerRole", [("practitioner", prac), ("_count", "50")]):
            add(r)
    for r in emr.search("Coverage", [("beneficiary", patient), ("_count", "50")]):
        add(r)
    for r in emr.search("CarePlan", [("subject", patient), ("_count", "50")]):
        add(r)
    # the same clinicians' sessions with other patients that day (the concurrency check)
    for actor in sorted(a for a in wanted if a.startswith(("Practitioner/", "PractitionerRole/"))):
        for r in emr.search("Procedure", [("performer", actor), *window]):
            if r.get("resourceType") == "Procedure":
                add(r)
    spool.finish()
    return spool


def _read_missing(emr: FhirClient, spool: Spool, wanted: set[str], add: Any) -> None:
    missing = sorted(k for k in wanted if spool.get(k) is None and "/" in k)
    if not missing:
        return
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": k}} for k in missing],
    }
    spool.clear_cache()
    result = emr.transaction(batch)
    for entry in result.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") not in (
            None,
            "OperationOutcome",
        ):
            add(resource)
    spool.clear_cache()
