"""Write one patient-day back to a FHIR server, changing only what changed.

The builder gives the resources the day should have. ``plan`` compares them with what the adapter
wrote for that day before (found by the patient-day tag) and yields one transaction:

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

from adapter.fhir import codes
from adapter.fhir.build import day_tag
from adapter.fhir.client import FhirClient, Params

Resource = dict[str, Any]
KINDS = ("ChargeItem", "Claim", "Communication", "Provenance")


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


def existing_searches(day_key: str) -> list[tuple[str, Params]]:
    """The searches that find what the adapter wrote for a patient-day (by its tag)."""
    tag = day_tag(day_key)
    return [(k, [("_tag", f"{tag['system']}|{tag['code']}"), ("_count", "200")]) for k in KINDS]


def existing_from(answers: Sequence[Sequence[Resource]]) -> dict[str, list[Resource]]:
    """The answers to ``existing_searches``, by resource type."""
    out: dict[str, list[Resource]] = {k: [] for k in KINDS}
    for found in answers:
        for r in found:
            if r.get("resourceType") in out:
                out[r["resourceType"]].append(r)
    return out


def existing_for_day(target: FhirClient, day_key: str) -> dict[str, list[Resource]]:
    """What the adapter wrote for a patient-day before, by resource type (one batch request)."""
    return existing_from(target.search_batch(existing_searches(day_key)))


def _identity(resource: Resource) -> str:
    if resource["resourceType"] == "Provenance":
        return "Provenance"
    idents = resource.get("identifier") or []
    for i in idents:
        if isinstance(i, dict) and str(i.get("system", "")).startswith(codes.BASE):
            return f"{resource['resourceType']}|{i.get('value')}"
    return f"{resource['resourceType']}|?"


def _content(resource: Resource) -> str:
    trimmed = {k: v for k, v in resource.items() if k not in ("id", "meta", "text")}
    return json.dumps(trimmed, sort_keys=True)


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
    meta = current.get("meta") if isinstance(current.get("meta"), dict) else {}
    request: Resource = {"method": "PUT", "url": f"{kind}/{rid}"}
    if isinstance(meta, dict) and meta.get("versionId"):
        request["ifMatch"] = f'W/"{meta["versionId"]}"'
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
    day_key: str,
    correction_recipient: str | None,
) -> tuple[list[Resource], WriteResult]:
    """The transaction entries that bring the server to ``desired``, and what they do."""
    result = WriteResult()
    found = {_identity(r): r for kind in KINDS for r in existing.get(kind, [])}
    # references to resources that already exist point at their ids, not at new urn:uuids
    refs = {
        e["fullUrl"]: f"{e['resource']['resourceType']}/{found[_identity(e['resource'])]['id']}"
        for e in desired
        if _identity(e["resource"]) in found
    }
    entries: list[Resource] = []
    provenance: Resource | None = None
    wanted: set[str] = set()
    for entry in desired:
        resource = _rewrite(entry["resource"], refs)
        ident = _identity(resource)
        wanted.add(ident)
        current = found.get(ident)
        if resource["resourceType"] == "Provenance":
            provenance = {**entry, "resource": resource}
            continue
        if current is None:
            entries.append({**entry, "resource": resource})
            result.created.append(ident)
        elif _content(resource) == _content(current):
            result.unchanged.append(ident)
        elif resource["resourceType"] == "Claim" and current.get("status") != "draft":
            result.claim_locked = True
            entries.append(_correction(current, resource, day_key, correction_recipient))
            result.created.append("Communication|claim-correction")
        else:
            entries.append(_put(resource, current))
            result.updated.append(ident)
    for ident, current in sorted(found.items()):
        if ident in wanted:
            continue
        if current["resourceType"] == "Communication":
            # a clinician's or the billing office's review message with nothing left to fix
            # says so, instead of asking for fixes already made
            resolved = _resolved(current, day_key)
            if resolved is not None and _content(resolved) != _content(current):
                entries.append(_put(resolved, current))
                result.updated.append(ident)
            continue
        if current["resourceType"] not in ("ChargeItem", "Claim"):
            continue
        if current.get("status") in ("entered-in-error", "cancelled"):
            continue
        if current["resourceType"] == "Claim" and current.get("status") != "draft":
            result.claim_locked = True
            entries.append(_correction(current, None, day_key, correction_recipient))
            continue
        entries.append(_put({**current, "status": "entered-in-error"}, current))
        result.voided.append(ident)
    if entries and provenance is not None:
        current = found.get("Provenance")
        targets = [{"reference": reference_to(e)} for e in entries]
        resource = {**provenance["resource"], "target": targets}
        entries.append(_put(resource, current) if current else {**provenance, "resource": resource})
    return entries, result


def _resolved(current: Resource, day_key: str) -> Resource | None:
    """A review Communication rewritten to say nothing is left to fix (None: a claim
    correction request, which stays as it was sent)."""
    values = [
        str(i.get("value"))
        for i in current.get("identifier") or []
        if isinstance(i, dict) and i.get("system") == codes.ID_COMMUNICATION
    ]
    if not values or any(":claim-correction:" in v for v in values):
        return None
    service_date = day_key.rpartition(":")[2]
    body = {k: v for k, v in current.items() if k not in ("meta", "text", "reasonCode")}
    return {
        **body,
        "meta": {"tag": [day_tag(day_key)]},
        "status": "completed",
        "priority": "routine",
        "category": [
            {"coding": [{"system": codes.COMMUNICATION_CATEGORY, "code": "notification"}]}
        ],
        "payload": [
            {
                "contentString": f"Therapy charge review for {service_date}: resolved, nothing "
                "left to fix (the documentation or the services changed since the last "
                "message)."
            }
        ],
    }


def _correction(
    claim: Resource, desired: Resource | None, day_key: str, recipient: str | None
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
    value = f"{day_key}:claim-correction:{digest}"
    resource: Resource = {
        "resourceType": "Communication",
        "meta": {"tag": [day_tag(day_key)]},
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
    query = f"identifier={codes.ID_COMMUNICATION}|{value}"
    full_url = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{codes.ID_COMMUNICATION}|{value}')}"
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "POST", "url": "Communication", "ifNoneExist": query},
    }
