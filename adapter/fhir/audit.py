"""A billing-office decision as an R4 ``AuditEvent`` written to the EMR: who (the signed-in
user and role), what (the decision, its reason, the patient-day), when. Its id is fixed by the
store's salt and the decision's id, so writing it again changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from adapter.fhir import codes

CS_DECISION = f"{codes.BASE}/CodeSystem/workbench-decision"
USERS = f"{codes.BASE}/workbench-user"
DCM = "http://dicom.nema.org/resources/ontology/DCM"


def audit_id(salt: str, action_id: int) -> str:
    return f"wb-{salt}-{action_id}"


def audit_event(
    *,
    salt: str,
    action_id: int,
    at: float,
    user: str,
    role: str,
    action: str,
    reason: str,
    patient: str,
    day: str,
    detail: str,
) -> dict[str, Any]:
    """The AuditEvent of one decision (``patient``: ``Patient/<id>``)."""
    recorded = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
    return {
        "resourceType": "AuditEvent",
        "id": audit_id(salt, action_id),
        # DICOM 110110 Patient Record: the patient's billing record was amended
        "type": {"system": DCM, "code": "110110", "display": "Patient Record"},
        "subtype": [{"system": CS_DECISION, "code": action}],
        "action": "U",
        "recorded": recorded,
        "outcome": "0",
        "outcomeDesc": reason[:1000] or action,
        "agent": [
            {
                "who": {"identifier": {"system": USERS, "value": user}, "display": user},
                "requestor": True,
                "role": [
                    {
                        "coding": [
                            {"system": f"{codes.BASE}/CodeSystem/workbench-role", "code": role}
                        ]
                    }
                ],
            }
        ],
        "source": {
            "observer": {"display": "Therapy charge adapter workbench"},
            "type": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "4",
                    "display": "Application Server",
                }
            ],
        },
        "entity": [
            {
                "what": {"reference": patient},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "1",
                    "display": "Person",
                },
            },
            {
                "what": {"identifier": {"system": codes.CS_PATIENT_DAY, "value": day}},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "2",
                    "display": "System Object",
                },
                "description": detail[:1000],
            },
        ],
    }
