"""The one normalised event every live source produces, and what the durable inbox keeps of it.

- ``ChangeEvent``: a Procedure or Encounter that changed (with its body when the source sent it,
  or only its reference), from a webhook delivery, a poll or a sweep; or a resource of the
  patient's context the compliance clocks read (``CONTEXT``: a plan of care signed late, a
  progress report, an authorization, a coverage), whose patient's days are computed again;
- ``Notification``: one delivery's events, or a request to catch up (a ping, a gap, a sweep);
- ``InboxPayload``: what the inbox stores of a notification (references, versions and the
  procedure's own patient-day, never bodies), with a JSON round trip (``to_json`` /
  ``from_json``) in the form the store has always held.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, tzinfo
from typing import Any

from adapter.domain import PatientDay
from adapter.fhir.dates import service_date_of
from adapter.fhir.refs import is_id, patient_key, reference_of, version_of

Resource = dict[str, Any]
#: the patient's context: a change recomputes the patient's days the ledger holds
CONTEXT = frozenset({"CarePlan", "ClaimResponse", "DocumentReference", "Coverage", "Provenance"})
HANDLED = frozenset({"Procedure", "Encounter"}) | CONTEXT
#: the element of a context resource that names its patient
PATIENT_ELEMENT = {"CarePlan": "subject", "ClaimResponse": "patient",
                   "DocumentReference": "subject", "Coverage": "beneficiary"}  # fmt: skip


def context_patient(resource: Resource) -> str | None:
    """The Patient a context resource is about (None: not a Patient's, or not context). A
    ClaimResponse counts only as a preauthorization (a payer's answer to a claim changes no
    decision)."""
    kind = resource.get("resourceType")
    if kind not in PATIENT_ELEMENT or (
        kind == "ClaimResponse" and resource.get("use") != "preauthorization"
    ):
        return None
    return patient_key(reference_of(resource.get(PATIENT_ELEMENT[str(kind)])))


def context_since(resource: Resource) -> str | None:
    """The first date of service a context resource bears on (an ISO date), when it says:
    a plan's or a coverage's period start, an authorization's, a report's date."""
    kind = resource.get("resourceType")
    period = {"CarePlan": "period", "Coverage": "period", "ClaimResponse": "preAuthPeriod"}
    value: Any = None
    if kind in period:
        bounds = resource.get(period[str(kind)])
        value = bounds.get("start") if isinstance(bounds, dict) else None
    elif kind == "DocumentReference":
        value = resource.get("date")
    if isinstance(value, str) and len(value) >= 10:
        try:
            return date.fromisoformat(value[:10]).isoformat()
        except ValueError:
            return None
    return None


def target_plan(reference: Any) -> str | None:
    """The id of the CarePlan a Provenance target names (a signature on a plan), or None."""
    key = reference_of(reference)
    kind, _, rid = (key or "").rpartition("/")
    return rid if kind.endswith("CarePlan") and is_id(rid) else None


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One normalised notification: a resource that changed (full) or only its reference."""

    kind: str  # Procedure | Encounter | one of CONTEXT
    id: str
    resource: Resource | None = None
    version: str | None = None
    source: str = "unknown"  # rest-hook | backport | poll | sweep | recheck
    deleted: bool = False  # the EMR deleted it (found in _history): never "already processed"

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.id}"


def event_of(resource: Resource, source: str) -> ChangeEvent | None:
    """The event for a changed resource the adapter handles (None for anything else)."""
    kind, rid = resource.get("resourceType"), resource.get("id")
    if kind not in HANDLED or not isinstance(rid, str) or not is_id(rid):
        return None  # an id against FHIR's rule never reaches a URL
    return ChangeEvent(str(kind), rid, resource, version_of(resource), source)


@dataclass(frozen=True, slots=True)
class Notification:
    """A normalised delivery: changed resources (full or id-only), or a request to catch up."""

    events: tuple[ChangeEvent, ...] = ()
    catch_up: bool = False
    subscription: str | None = None
    kind: str = "event"  # event | ping | handshake | heartbeat | sweep
    recheck: int = 0  # a recheck the adapter queued itself: how many in a row (capped)

    @property
    def source(self) -> str:
        """The inbox row's source: the first event's, else the notification's kind."""
        return self.events[0].source if self.events else self.kind

    def dedupe(self) -> str | None:
        """The same delivery (source, resources, versions) is stored once; None when it cannot
        be told apart from a later one (a catch-up, or an event without a version)."""
        if self.catch_up or not self.events or any(e.version is None for e in self.events):
            return None
        # a hash of the exact parts: a crafted versionId ('1,Procedure/B@2') cannot make one
        # delivery's key equal another's
        parts = sorted([e.kind, e.id, e.version, e.deleted] for e in self.events)
        digest = hashlib.sha256(json.dumps(parts).encode()).hexdigest()
        return f"{self.events[0].source}:{digest}"


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    """An event as the inbox keeps it. ``day``: the procedure's own patient-day, when the
    notification carried the procedure (dates of service in the site's zone)."""

    kind: str
    id: str
    version: str | None
    source: str
    deleted: bool = False
    day: PatientDay | None = None
    patient: str | None = None  # a context resource's Patient, when the notification said

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.id}"

    @classmethod
    def of(cls, ev: ChangeEvent, zone: tzinfo | None) -> QueuedEvent:
        day = None
        if ev.resource is not None and ev.kind == "Procedure":
            patient = patient_key(reference_of(ev.resource.get("subject")))
            dos = service_date_of(ev.resource, zone)
            if patient and dos:  # a subject that is not a Patient has no day of its own
                day = PatientDay(patient, date.fromisoformat(dos))
        whose = context_patient(ev.resource) if ev.resource is not None else None
        return cls(ev.kind, ev.id, ev.version, ev.source, ev.deleted, day, whose)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "id": self.id,
            "version": self.version,
            "source": self.source,
        }
        if self.deleted:
            out["deleted"] = True
        if self.day is not None:
            out["day"] = [self.day.patient, self.day.service_date.isoformat()]
        if self.patient is not None:
            out["patient"] = self.patient
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QueuedEvent:
        """An event as stored; a row naming anything but a handled type and a valid id is
        refused (ValueError: the row fails, visibly, instead of reaching the EMR)."""
        if data.get("kind") not in HANDLED or not is_id(data.get("id")):
            raise ValueError("inbox row names no handled resource with a valid id")
        day = data.get("day")
        whose = data.get("patient")
        if whose is not None and patient_key(str(whose)) != whose:
            raise ValueError("inbox row names a patient that is no Patient reference")
        return cls(
            kind=str(data["kind"]),
            id=str(data["id"]),
            version=str(data["version"]) if data.get("version") else None,
            source=str(data.get("source") or ""),
            deleted=bool(data.get("deleted")),
            day=PatientDay(str(day[0]), date.fromisoformat(str(day[1]))) if day else None,
            patient=str(whose) if whose is not None else None,
        )

    def event(self) -> ChangeEvent:
        """Back to a reference-only change event."""
        return ChangeEvent(self.kind, self.id, None, self.version, self.source, self.deleted)


@dataclass(frozen=True, slots=True)
class InboxPayload:
    """What the inbox keeps of a notification."""

    events: tuple[QueuedEvent, ...] = ()
    catch_up: bool = False
    subscription: str | None = None
    kind: str = "event"
    recheck: int = 0

    @classmethod
    def of(cls, n: Notification, zone: tzinfo | None = None) -> InboxPayload:
        return cls(
            events=tuple(QueuedEvent.of(e, zone) for e in n.events),
            catch_up=n.catch_up,
            subscription=n.subscription,
            kind=n.kind,
            recheck=n.recheck,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "events": [e.to_json() for e in self.events],
            "catch_up": self.catch_up,
            "subscription": self.subscription,
            "kind": self.kind,
            **({"recheck": self.recheck} if self.recheck else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InboxPayload:
        return cls(
            events=tuple(QueuedEvent.from_json(e) for e in data.get("events") or []),
            catch_up=bool(data.get("catch_up")),
            subscription=data.get("subscription"),
            kind=str(data.get("kind") or "event"),
            recheck=int(data.get("recheck") or 0),
        )
