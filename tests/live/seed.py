"""Seed many synthetic patient-days into the FHIR test server (for fault and replica tests).

Every day is the CMS 47-minute example: 97112 24 min + 97110 23 min -> 97112 x2, 97110 x1. Each
patient is seen on a date of their own (the same therapist cannot see hundreds of patients in
one hour: that would be concurrent care).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from adapter.emr.client import FhirClient
from tests.fhir.make import at, context, procedure
from tests.fhir_server import FhirServer

EXPECTED_PER_DAY = [("97110", 1, "billable"), ("97112", 2, "billable")]


def day_of(n: int) -> str:
    return (date(2025, 1, 6) + timedelta(days=n)).isoformat()


def seed_days(fhir: FhirServer, prefix: str, count: int, chunk: int = 50) -> list[str]:
    """Create ``count`` patients with one therapy day each (patient n on ``day_of(n)``);
    returns the Procedure ids (one per day) to notify about."""
    shared = {r["id"]: r for r in context(patient=f"{prefix}-shared")
              if r["resourceType"] in ("Practitioner", "PractitionerRole")}  # fmt: skip
    fhir.put_all(*shared.values())
    notify = []
    for start in range(0, count, chunk):
        batch: list[dict[str, Any]] = []
        for n in range(start, min(count, start + chunk)):
            pid = f"{prefix}-{n}"
            enc_id = f"{pid}-enc"
            dos = day_of(n)
            period = {"start": at("08:00", dos), "end": at("12:00", dos)}
            for r in context(patient=pid):
                if r["resourceType"] == "Encounter":
                    batch.append({**r, "id": enc_id, "period": period})
                elif r["resourceType"] == "CarePlan":
                    batch.append({**r, "created": dos})  # certified the day of treatment
                elif r["resourceType"] not in ("Practitioner", "PractitionerRole"):
                    batch.append(r)
            who, enc = f"Patient/{pid}", f"Encounter/{enc_id}"
            a, b = (at("09:00", dos), at("09:24", dos)), (at("09:24", dos), at("09:47", dos))
            batch.append(procedure(f"{pid}-a", "97112", *a, patient=who, encounter=enc))
            batch.append(procedure(f"{pid}-b", "97110", *b, patient=who, encounter=enc))
            notify.append(f"{pid}-a")
        fhir.put_all(*batch)
    return notify


def server_state(
    fhir: FhirServer, prefix: str
) -> tuple[dict[str, list[tuple[str, int, str]]], int, int]:
    """(ChargeItem lines per patient, ChargeItem count, Claim count) for one prefix."""
    client = FhirClient(fhir.base)
    items = [i for i in client.search("ChargeItem", {"_count": "500"})
             if i["subject"]["reference"].startswith(f"Patient/{prefix}-")]  # fmt: skip
    claims = [c for c in client.search("Claim", {"_count": "500"})
              if c["patient"]["reference"].startswith(f"Patient/{prefix}-")]  # fmt: skip
    lines: dict[str, list[tuple[str, int, str]]] = {}
    for i in items:
        lines.setdefault(i["subject"]["reference"], []).append(
            (i["code"]["coding"][0]["code"], i["quantity"]["value"], i["status"])
        )
    return {k: sorted(v) for k, v in lines.items()}, len(items), len(claims)
