"""The year's KX total kept by the live service (issue 14): each synced day's expected allowed
amounts go into the store's ledger, a day's total before it is the sum of its earlier days of
the year, and an amended earlier day makes every later day be computed again. Against the real
FHIR server.

Amounts from the shipped synthetic fee schedule: 97110 x2 + 97140 x1 allow $50.99 + $20.70;
97110 x1 alone $28.82 ((0.45 + 0.42 x 0.95 + 0.02 x 0.7) x 33.4009, the day's one unit at full
PE). Opening balance $2,400.00 on the patient's Coverage; the 2026 threshold is $2,480.00."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from adapter.domain import PatientDay
from adapter.emr.client import FhirClient
from adapter.fhir import codes
from adapter.intake.events import ChangeEvent, Notification
from adapter.mappings import load_rulebook
from adapter.pipeline import Options
from adapter.service import Service
from adapter.store import open_store
from tests.fhir.make import at, context, procedure
from tests.fhir_server import FhirServer

RULEBOOK = load_rulebook()
PATIENT = "kx-live"
DAY1 = PatientDay.of(f"Patient/{PATIENT}", "2026-03-02")


def _resources() -> list[dict[str, Any]]:
    ctx = copy.deepcopy(context(patient=PATIENT))
    for r in ctx:
        if r["resourceType"] == "Coverage":
            r["extension"] = [{"url": codes.EXT_YTD_PT_SLP,
                               "valueMoney": {"value": 2400.00, "currency": "USD"}}]  # fmt: skip
    me = f"Patient/{PATIENT}"
    return [
        *ctx,
        procedure("kx1a", "97110", at("09:00"), at("09:30"), patient=me, encounter=None),
        procedure("kx1b", "97140", at("09:30"), at("09:45"), patient=me, encounter=None),
        procedure(
            "kx2a",
            "97110",
            at("09:00", "2026-03-03"),
            at("09:15", "2026-03-03"),
            patient=me,
            encounter=None,
        ),
    ]


def _kx(fhir: FhirServer, date: str) -> list[bool]:
    claims = [c for c in fhir.search(f"Claim?patient=Patient/{PATIENT}&_count=50")
              if c["item"][0]["servicedDate"] == date and c["status"] == "draft"]  # fmt: skip
    (claim,) = claims
    return [any(m["coding"][0]["code"] == "KX" for m in i.get("modifier", []))
            for i in claim["item"]]  # fmt: skip


def test_an_amended_earlier_day_changes_a_later_days_kx(
    fresh_fhir: FhirServer, tmp_path: Path
) -> None:
    resources = _resources()
    fresh_fhir.put_all(*resources)
    client = FhirClient(fresh_fhir.base)
    store = open_store(tmp_path / "kx.db")
    service = Service(client, client, RULEBOOK, Options(), store)
    # the later day first: its total has no earlier day yet ($2,428.82, no KX) ...
    service.inbox.enqueue(Notification(events=(ChangeEvent("Procedure", "kx2a", source="t"),)))
    assert service.drain(timeout=60)
    assert _kx(fresh_fhir, "2026-03-03") == [False]
    # ... the earlier day arrives ($2,471.69): the later day is computed again and its 97110
    # takes the total to $2,500.51, past $2,480.00: KX
    service.inbox.enqueue(Notification(events=(ChangeEvent("Procedure", "kx1a", source="t"),)))
    assert service.drain(timeout=60)
    assert _kx(fresh_fhir, "2026-03-02") == [False, False]
    assert _kx(fresh_fhir, "2026-03-03") == [True]
    assert store.kx_amounts(DAY1.key) == {"PT_SLP": "71.69"}
    # the 97140 of the earlier day was entered in error: that day allows $50.99, the later
    # day's total is $2,479.81 and its KX goes
    amended = copy.deepcopy(next(r for r in resources if r.get("id") == "kx1b"))
    amended["status"] = "entered-in-error"
    fresh_fhir.put_all(amended)
    service.inbox.enqueue(Notification(events=(ChangeEvent("Procedure", "kx1b", source="t"),)))
    assert service.drain(timeout=60)
    assert store.kx_amounts(DAY1.key) == {"PT_SLP": "50.99"}
    assert _kx(fresh_fhir, "2026-03-03") == [False]
    # restored: the earlier day's amounts are what they were before, a new state all the same
    # (found in review: the recheck's dedupe key repeated an old one, so KX never came back)
    fresh_fhir.put_all(next(r for r in resources if r.get("id") == "kx1b"))
    service.inbox.enqueue(Notification(events=(ChangeEvent("Procedure", "kx1b", source="t2"),)))
    assert service.drain(timeout=60)
    assert store.kx_amounts(DAY1.key) == {"PT_SLP": "71.69"}
    assert _kx(fresh_fhir, "2026-03-03") == [True]
    assert set(store.counts()) == {"done"}
    store.close()
