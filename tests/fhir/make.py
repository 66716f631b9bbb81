"""Builders of small FHIR R4 inputs for pipeline tests (synthetic; no real people)."""

from __future__ import annotations

from typing import Any

CPT = "http://www.ama-assn.org/go/cpt"
NUCC = "http://nucc.org/provider-taxonomy"
GOOD = (
    "Balance training with tactile cues and perturbations; patient tolerated well and "
    "improved single-leg stance time."
)
NAME = "Zelda Testpatient"


def procedure(
    pid: str,
    code: str | None,
    start: str | None,
    end: str | None,
    actor: str = "PractitionerRole/r-pt",
    *,
    patient: str = "Patient/p1",
    encounter: str | None = "Encounter/e1",
    status: str = "completed",
    note: str = GOOD,
    coding: list[dict[str, Any]] | None = None,
    text: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    concept: dict[str, Any] = {}
    if coding is not None:
        concept["coding"] = coding
    elif code is not None:
        concept["coding"] = [{"system": CPT, "code": code}]
    if text:
        concept["text"] = text
    period = {k: v for k, v in (("start", start), ("end", end)) if v}
    return {
        "resourceType": "Procedure",
        "id": pid,
        "status": status,
        "code": concept,
        "subject": {"reference": patient},
        **({"encounter": {"reference": encounter}} if encounter else {}),
        **({"performedPeriod": period} if period else {}),
        **({"performer": [{"actor": {"reference": actor}}]} if actor else {}),
        "reasonCode": [
            {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M17.11"}]}
        ],
        "note": [{"text": note}],
        **extra,
    }


def role(rid: str, practitioner: str, taxonomy: str | None) -> dict[str, Any]:
    return {
        "resourceType": "PractitionerRole",
        "id": rid,
        "practitioner": {"reference": practitioner},
        **({"code": [{"coding": [{"system": NUCC, "code": taxonomy}]}]} if taxonomy else {}),
    }


def context(
    patient: str = "p1", sopt: str | None = "121", care_plan: bool = True, **coverage: Any
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": patient,
            "name": [{"text": NAME}],
            "birthDate": "1941-02-03",
        },
        {"resourceType": "Practitioner", "id": "pt"},
        role("r-pt", "Practitioner/pt", "225100000X"),
        {"resourceType": "Practitioner", "id": "pta"},
        role("r-pta", "Practitioner/pta", "225200000X"),
        {"resourceType": "Practitioner", "id": "ot"},
        role("r-ot", "Practitioner/ot", "225X00000X"),
        {
            "resourceType": "Encounter",
            "id": "e1",
            "status": "finished",
            "class": {"code": "AMB"},
            "subject": {"reference": f"Patient/{patient}"},
            "period": {"start": "2026-03-02T08:00:00-05:00", "end": "2026-03-02T12:00:00-05:00"},
            "participant": [{"individual": {"reference": "PractitionerRole/r-pt"}}],
        },
    ]
    if sopt is not None:
        out.append(
            {
                "resourceType": "Coverage",
                "id": f"cov-{patient}",
                "status": "active",
                "beneficiary": {"reference": f"Patient/{patient}"},
                "payor": [{"reference": "Organization/payer"}],
                "type": {"coding": [{"system": "https://nahdo.org/sopt", "code": sopt}]},
                **coverage,
            }
        )
    if care_plan:
        # certified (clocks.toml convention "author") by the physician the day before
        out.append(
            {"resourceType": "CarePlan", "id": f"cp-{patient}", "status": "active",
             "intent": "plan", "subject": {"reference": f"Patient/{patient}"},
             "author": {"reference": "Practitioner/md"}, "created": "2026-03-01"}
        )  # fmt: skip
    return out


def bundle(*resources: dict[str, Any], kind: str = "collection") -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {"fullUrl": f"http://emr.example/fhir/{r['resourceType']}/{r['id']}", "resource": r}
            for r in resources
        ],
    }


def at(hhmm: str, date: str = "2026-03-02", offset: str = "-05:00") -> str:
    return f"{date}T{hhmm}:00{offset}"
