"""The write-back plan for one patient-day, pure: what to send so the server holds the day's
resources, changing only what changed.

The builder gives the resources the day should have. ``plan`` compares them with what the adapter
wrote for that day before (found by the patient-day tag; ``adapter.emr.writeback`` reads it) and
yields one transaction:

- a resource not there yet is created (conditional create on its business identifier);
- a resource whose content differs is updated in place (``PUT Type/id`` with ``If-Match``);
- an identical resource is left alone, so re-processing the same input writes nothing;
- a ChargeItem no longer billable becomes ``entered-in-error``; so does a draft Claim with no
  lines left;
- a Claim past ``draft`` is never rewritten: a Communication asks for a corrected claim instead;
- a review Communication whose findings are all gone is rewritten to say nothing is left to fix;
- the Provenance is written only when something else was.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from adapter.domain import PatientDay
from adapter.errors import FatalServerError
from adapter.fhir import codes
from adapter.fhir.build import day_tag
from adapter.fhir.refs import key_of, ref_key, reference_of, token_query, version_of

Resource = dict[str, Any]
Search = tuple[str, list[tuple[str, str]]]  # resource type, search parameters
KINDS = ("ChargeItem", "Claim", "Communication", "Provenance")
#: on a draft Claim the adapter voided (no billable lines left): not a submitted claim
VOIDED_DRAFT = {"url": codes.EXT_VOIDED_DRAFT, "valueBoolean": True}


@dataclass(slots=True)
class WriteResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    voided: list[str] = field(default_factory=list)
    claim_locked: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.voided)


def existing_searches(day: PatientDay) -> list[Search]:
    """The searches that find what the adapter wrote for a patient-day (by its tag)."""
    tag = day_tag(day)
    return [(k, [("_tag", f"{tag['system']}|{tag['code']}"), ("_count", "200")]) for k in KINDS]


#: the element naming the patient, by resource type written (Provenance: its tag only)
_PATIENT_OF = {"ChargeItem": "subject", "Claim": "patient", "Communication": "subject"}


class ForeignAnswer(FatalServerError):
    """The target answered a day's ``_tag`` search with a resource that is not the day's
    (retrying will not help: the day is a dead letter until the target is fixed)."""


def existing_from(
    answers: Sequence[Sequence[Resource]], day: PatientDay
) -> dict[str, list[Resource]]:
    """The answers to ``existing_searches``, by resource type.

    Everything returned must carry the day's tag exactly (system and code) and, but for a
    Provenance, name the day's patient: what is not wanted is voided, so a target that ignores
    ``_tag`` (FHIR's lenient default for an unsupported parameter) or matches it loosely would
    otherwise have one day's sync void every other patient's charges. Raises ``ForeignAnswer``
    naming the first resource that is not the day's."""
    tag = day_tag(day)
    out: dict[str, list[Resource]] = {k: [] for k in KINDS}
    for found in answers:
        for r in found:
            kind = r.get("resourceType")
            if kind not in out:
                continue
            tags = (r.get("meta") or {}).get("tag") if isinstance(r.get("meta"), dict) else None
            tagged = any(
                isinstance(t, dict)
                and t.get("system") == tag["system"]
                and t.get("code") == tag["code"]
                for t in tags or []
            )
            element = _PATIENT_OF.get(str(kind))
            subject = reference_of(r.get(element)) if element else None
            if not tagged or (element and (not subject or ref_key(subject) != day.patient)):
                raise ForeignAnswer(
                    f"the target answered the {day.key} _tag search with {key_of(r)}, which is "
                    "not that day's: it ignores or loosely matches _tag; nothing is written"
                )
            out[str(kind)].append(r)
    return out


def voided_services(existing: dict[str, list[Resource]], result: WriteResult) -> set[str]:
    """The procedures (``Procedure/id``) named by the ChargeItems a plan voids."""
    voided = set(result.voided)
    return {
        ref_key(ref)
        for item in existing.get("ChargeItem", [])
        if _identity(item) in voided
        for s in item.get("service") or []
        if (ref := reference_of(s))
    }


def _identity(resource: Resource) -> str:
    if resource["resourceType"] == "Provenance":
        return "Provenance"
    idents = resource.get("identifier") or []
    for i in idents:
        if isinstance(i, dict) and str(i.get("system", "")).startswith(codes.BASE):
            return f"{resource['resourceType']}|{i.get('value')}"
    return f"{resource['resourceType']}|?"


def _content(resource: Resource, *also: str) -> str:
    """What a resource says, without its server-side parts (id, meta, narrative), a Claim's
    ``created`` (the day it was evaluated: a re-evaluation that bills the same is no change)
    and ``also``."""
    ignored = ("id", "meta", "text", "created", *also)
    trimmed = {k: v for k, v in resource.items() if k not in ignored}
    return json.dumps(_numbers(trimmed), sort_keys=True)


def _numbers(value: Any) -> Any:
    """Numbers as a server may give them back: 95.0 and 95 are the same decimal (a server that
    normalises them must not look like a change every time)."""
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _locked(claim: Resource) -> bool:
    """A Claim past draft, that the adapter must not rewrite: submitted, cancelled, or voided
    by someone else. One the adapter itself voided while a draft is not locked."""
    if claim.get("status") == "draft":
        return False
    return not (
        claim.get("status") == "entered-in-error" and VOIDED_DRAFT in (claim.get("extension") or [])
    )


def _rewrite(value: Any, refs: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            k: (refs.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, refs))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_rewrite(v, refs) for v in value]
    return value


def _put(resource: Resource, current: Resource) -> Resource:
    kind, rid = current["resourceType"], current["id"]
    body = {**resource, "id": rid}
    request: Resource = {"method": "PUT", "url": f"{kind}/{rid}"}
    if version := version_of(current):
        request["ifMatch"] = f'W/"{version}"'
    return {"resource": body, "request": request}


def reference_to(entry: Resource) -> str:
    """How other entries of the transaction refer to this one."""
    if "fullUrl" in entry:
        return str(entry["fullUrl"])
    return f"{entry['resource']['resourceType']}/{entry['resource']['id']}"


def plan(
    desired: Sequence[Resource],
    existing: dict[str, list[Resource]],
    *,
    day: PatientDay,
    correction_recipient: str | None,
) -> tuple[list[Resource], WriteResult]:
    """The transaction entries that bring the server to ``desired``, and what they do."""
    step = _Plan(
        found={_identity(r): r for kind in KINDS for r in existing.get(kind, [])},
        day=day,
        recipient=correction_recipient,
    )
    # references to resources that already exist point at their ids, not at new urn:uuids
    refs = {
        e["fullUrl"]: key_of(step.found[_identity(e["resource"])])
        for e in desired
        if _identity(e["resource"]) in step.found
    }
    provenance: Resource | None = None
    wanted: set[str] = set()
    for entry in desired:
        resource = _rewrite(entry["resource"], refs)
        wanted.add(_identity(resource))
        if resource["resourceType"] == "Provenance":
            provenance = {**entry, "resource": resource}
        else:
            step.want({**entry, "resource": resource})
    for ident, current in sorted(step.found.items()):
        if ident not in wanted:
            step.leave(ident, current)
    if step.entries and provenance is not None:
        step.record(provenance)
    return step.entries, step.result


@dataclass(slots=True)
class _Plan:
    """The plan being made: what exists, and the entries and outcome so far."""

    found: dict[str, Resource]
    day: PatientDay
    recipient: str | None
    entries: list[Resource] = field(default_factory=list)
    result: WriteResult = field(default_factory=WriteResult)

    def want(self, entry: Resource) -> None:
        """A resource the day should have: created, updated, left alone, or (a Claim past
        draft) a correction request instead."""
        resource = entry["resource"]
        ident = _identity(resource)
        current = self.found.get(ident)
        if current is None:
            self.entries.append(entry)
            self.result.created.append(ident)
        elif _content(resource) == _content(current):
            self.result.unchanged.append(ident)
        elif resource["resourceType"] == "Claim" and _locked(current):
            if _content(resource, "status") == _content(current, "status"):
                # the billing system moved the claim along; what it bills has not changed
                self.result.unchanged.append(ident)
                return
            self.result.claim_locked = True
            self.entries.append(_correction(current, resource, self.day, self.recipient))
            self.result.created.append("Communication|claim-correction")
        else:  # a draft Claim (or one the adapter voided as a draft) is simply replaced
            self.entries.append(_put(resource, current))
            self.result.updated.append(ident)

    def leave(self, ident: str, current: Resource) -> None:
        """A resource written before that the day no longer has."""
        kind, status = current["resourceType"], current.get("status")
        if kind == "Communication":
            # a clinician's or the billing office's review message with nothing left to fix
            # says so, instead of asking for fixes already made
            resolved = _resolved(current, self.day)
            if resolved is not None and _content(resolved) != _content(current):
                self.entries.append(_put(resolved, current))
                self.result.updated.append(ident)
        elif kind not in ("ChargeItem", "Claim") or status in ("entered-in-error", "cancelled"):
            return
        elif kind == "Claim" and status != "draft":
            self.result.claim_locked = True
            self.entries.append(_correction(current, None, self.day, self.recipient))
        elif kind == "Claim":  # a draft: voided, and marked so, to be replaced when lines return
            extension = [*(current.get("extension") or []), VOIDED_DRAFT]
            voided = {**current, "status": "entered-in-error", "extension": extension}
            self.entries.append(_put(voided, current))
            self.result.voided.append(ident)
        else:
            self.entries.append(_put({**current, "status": "entered-in-error"}, current))
            self.result.voided.append(ident)

    def record(self, provenance: Resource) -> None:
        """The Provenance, targeting every entry written (only when something was)."""
        current = self.found.get("Provenance")
        targets = [{"reference": reference_to(e)} for e in self.entries]
        resource = {**provenance["resource"], "target": targets}
        self.entries.append(
            _put(resource, current) if current else {**provenance, "resource": resource}
        )


def _resolved(current: Resource, day: PatientDay) -> Resource | None:
    """A review Communication rewritten to say nothing is left to fix (None: a claim
    correction request, which stays as it was sent)."""
    values = [
        str(i.get("value"))
        for i in current.get("identifier") or []
        if isinstance(i, dict) and i.get("system") == codes.ID_COMMUNICATION
    ]
    if not values or any(":claim-correction:" in v for v in values):
        return None
    body = {k: v for k, v in current.items() if k not in ("meta", "text", "reasonCode")}
    return {
        **body,
        "meta": {"tag": [day_tag(day)]},
        "status": "completed",
        "priority": "routine",
        "category": [
            {"coding": [{"system": codes.COMMUNICATION_CATEGORY, "code": "notification"}]}
        ],
        "payload": [
            {
                "contentString": f"Therapy charge review for {day.service_date}: resolved, nothing "
                "left to fix (the documentation or the services changed since the last "
                "message)."
            }
        ],
    }


def _correction(
    claim: Resource, desired: Resource | None, day: PatientDay, recipient: str | None
) -> Resource:
    now = (
        "no billable lines"
        if desired is None
        else ", ".join(
            " ".join(
                [i["productOrService"]["coding"][0]["code"], f"x{i['quantity']['value']}"]
                + [m["coding"][0]["code"] for m in i.get("modifier", [])]
            )
            for i in desired.get("item", [])
        )
    )
    digest = hashlib.sha256(now.encode()).hexdigest()[:10]
    value = f"{day.key}:claim-correction:{digest}"
    resource: Resource = {
        "resourceType": "Communication",
        "meta": {"tag": [day_tag(day)]},
        "identifier": [{"system": codes.ID_COMMUNICATION, "value": value}],
        "status": "completed",
        "category": [{"coding": [{"system": codes.COMMUNICATION_CATEGORY, "code": "alert"}]}],
        "priority": "urgent",
        "subject": claim.get("patient", {}),
        "about": [{"reference": f"Claim/{claim['id']}"}],
        **({"recipient": [{"reference": recipient}]} if recipient else {}),
        "reasonCode": [
            {"coding": [{"system": codes.CS_FINDING, "code": "claim-correction-needed"}]}
        ],
        "payload": [
            {
                "contentString": f"Claim/{claim['id']} is already {claim.get('status')} and is "
                "not rewritten. The documentation changed: the day now bills "
                f"{now}. Submit a corrected claim."
            }
        ],
    }
    query = token_query("identifier", codes.ID_COMMUNICATION, value)
    full_url = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{codes.ID_COMMUNICATION}|{value}')}"
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "POST", "url": "Communication", "ifNoneExist": query},
    }
