"""The compliance clocks kept by the live service against the real FHIR server (issue 15): a
payer's authorization (ClaimResponse, Da Vinci PAS shape) consumed over several days, whatever
order the days arrive in; and a plan of care signed late, whose signature clears the held line
when the CarePlan's change recomputes the patient's days."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

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
#: Medicare Advantage-like: beyond the authorization the lines are held
BLOCKING = replace(
    RULEBOOK,
    payers={**RULEBOOK.payers,
            "medicare": replace(RULEBOOK.payers["medicare"], authorization="block")},
)  # fmt: skip
PAS = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition"
DAYS = ("2026-03-02", "2026-03-04", "2026-03-06", "2026-03-09")


def _preauth(patient: str) -> dict[str, Any]:
    """3 PT visits from 2026-03-01 to 2026-03-31 (X12 service type PT, quantity VS)."""
    detail = {"url": f"{PAS}/extension-itemAuthorizedDetail", "extension": [
        {"url": "productOrServiceCode", "valueCodeableConcept": {"coding": [
            {"system": "https://codesystem.x12.org/005010/1365", "code": "PT"}]}},
        {"url": "quantity", "valueQuantity": {"value": 3, "code": "VS"}}]}  # fmt: skip
    return {
        "resourceType": "ClaimResponse", "id": f"{patient}-pa", "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type",
                             "code": "professional"}]},
        "use": "preauthorization", "patient": {"reference": f"Patient/{patient}"},
        "created": "2026-02-27T10:00:00-05:00", "insurer": {"display": "Test Payer"},
        "outcome": "complete", "preAuthRef": "PA-LIVE-1",
        "preAuthPeriod": {"start": "2026-03-01", "end": "2026-03-31"},
        "item": [{"itemSequence": 1, "extension": [detail], "adjudication": [{"category": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/adjudication",
                        "code": "submitted"}]}}]}],
    }  # fmt: skip


def _billed(fhir: FhirServer, patient: str) -> dict[str, list[str]]:
    """The billable ChargeItem codes per date of service."""
    out: dict[str, list[str]] = {}
    for item in fhir.search(f"ChargeItem?subject=Patient/{patient}&_count=200"):
        if item["status"] == "billable":
            out.setdefault(item["occurrencePeriod"]["start"][:10], []).append(
                item["code"]["coding"][0]["code"]
            )
    return out


def _claim(fhir: FhirServer, patient: str, dos: str) -> dict[str, Any] | None:
    claims = [c for c in fhir.search(f"Claim?patient=Patient/{patient}&_count=50")
              if c["status"] == "draft" and c["item"][0]["servicedDate"] == dos]  # fmt: skip
    return claims[0] if claims else None


def _findings(fhir: FhirServer, patient: str, dos: str) -> set[str]:
    out: set[str] = set()
    for c in fhir.search(f"Communication?subject=Patient/{patient}&_count=100"):
        if (
            c["identifier"][0]["value"].startswith(f"{patient}:{dos}:")
            and c["status"] == "completed"
        ):
            out |= {r["coding"][0]["code"] for r in c.get("reasonCode", [])}
    return out


def _notify(service: Service, *ids: str, kind: str = "Procedure", source: str = "t") -> None:
    for rid in ids:
        service.inbox.enqueue(Notification(events=(ChangeEvent(kind, rid, source=source),)))
    assert service.drain(timeout=90)


def test_an_authorization_is_consumed_over_several_days(
    fresh_fhir: FhirServer, tmp_path: Path
) -> None:
    patient = "auth-live"
    me = f"Patient/{patient}"
    procs = [procedure(f"{patient}-{n}", "97110", at("09:00", d), at("09:30", d), patient=me,
                       encounter=None) for n, d in enumerate(DAYS, start=1)]  # fmt: skip
    fresh_fhir.put_all(*context(patient=patient), _preauth(patient), *procs)
    client = FhirClient(fresh_fhir.base)
    store = open_store(tmp_path / "auth.db")
    service = Service(client, client, BLOCKING, Options(), store)
    try:
        # the last day first: nothing before it yet, it is visit 1 of 3 and bills
        _notify(service, f"{patient}-4")
        assert _billed(fresh_fhir, patient) == {"2026-03-09": ["97110"]}
        claim = _claim(fresh_fhir, patient, "2026-03-09")
        assert claim is not None and claim["insurance"][0]["preAuthRef"] == ["PA-LIVE-1"]
        # the three earlier days arrive: visits 1-3 of 3 (the 3rd is the last: running out);
        # the later day is computed again as visit 4, beyond the authorization: held
        _notify(service, f"{patient}-1", f"{patient}-2", f"{patient}-3")
        assert _billed(fresh_fhir, patient) == {d: ["97110"] for d in DAYS[:3]}
        assert "authorization-running-out" in _findings(fresh_fhir, patient, "2026-03-04")
        assert "authorization-running-out" in _findings(fresh_fhir, patient, "2026-03-06")
        assert "authorization-exceeded" in _findings(fresh_fhir, patient, "2026-03-09")
        for d in DAYS[:3]:
            claim = _claim(fresh_fhir, patient, d)
            assert claim is not None and claim["insurance"][0]["preAuthRef"] == ["PA-LIVE-1"]
        assert store.day_record(f"{patient}:2026-03-06")[3] == [["PT", "97110", 2, ["PA-LIVE-1"]]]  # type: ignore[index]
        # the payer authorizes 6 visits: the ClaimResponse's change recomputes the patient's
        # days, and the 4th bills again
        more = _preauth(patient)
        more["item"][0]["extension"][0]["extension"][1]["valueQuantity"]["value"] = 6
        fresh_fhir.put_all(more)
        _notify(service, f"{patient}-pa", kind="ClaimResponse")
        assert _billed(fresh_fhir, patient) == {d: ["97110"] for d in DAYS}
        assert "authorization-exceeded" not in _findings(fresh_fhir, patient, "2026-03-09")
        assert set(store.counts()) == {"done"}
    finally:
        store.close()


UNSIGNED_DAYS = ("2026-01-05", "2026-02-10")


def _unsigned_plan(patient: str) -> tuple[list[dict[str, Any]], dict[str, Any], list[Any]]:
    """The patient's context, an unsigned plan of care for 2026-01-01 to 2026-03-31, and 30
    minutes of 97110 on each of ``UNSIGNED_DAYS`` (the second 36 days after the first)."""
    me = f"Patient/{patient}"
    ctx = [r for r in context(patient=patient) if r["resourceType"] != "CarePlan"]
    plan = {"resourceType": "CarePlan", "id": f"{patient}-cp", "status": "active",
            "intent": "plan", "subject": {"reference": me},
            "period": {"start": "2026-01-01", "end": "2026-03-31"}}  # fmt: skip
    procs = [procedure(f"{patient}-{n}", "97110", at("09:00", d), at("09:30", d), patient=me,
                       encounter=None) for n, d in enumerate(UNSIGNED_DAYS, start=1)]  # fmt: skip
    return ctx, plan, procs


def test_a_late_signature_clears_the_held_line_on_recompute(
    fresh_fhir: FhirServer, tmp_path: Path
) -> None:
    """First treatment 2026-01-05 under an unsigned plan: a warning; 2026-02-10 (36 days on): an
    error, the line held. The physician signs on 2026-02-12 with a reason for the delay: the
    poll finds the changed CarePlan and both days are computed again; the line bills."""
    patient = "cert-live"
    ctx, plan, procs = _unsigned_plan(patient)
    fresh_fhir.put_all(*ctx, plan, *procs)
    client = FhirClient(fresh_fhir.base)
    store = open_store(tmp_path / "cert.db")
    service = Service(client, client, RULEBOOK, Options(poll_context=True), store)
    try:
        _notify(service, f"{patient}-1", f"{patient}-2")
        assert _billed(fresh_fhir, patient) == {"2026-01-05": ["97110"]}
        assert "plan-uncertified" in _findings(fresh_fhir, patient, "2026-02-10")
        service.inbox.catch_up()  # the watermark moves past what is there now
        assert service.drain(timeout=90)
        signed = copy.deepcopy(plan)
        reason = {"url": codes.EXT_DELAYED_CERTIFICATION,
                  "valueString": "Physician on leave until 2026-02-11"}  # fmt: skip
        signed.update({"author": {"reference": "Practitioner/md"}, "created": "2026-02-12",
                       "extension": [reason]})  # fmt: skip
        fresh_fhir.put_all(signed)
        service.inbox.catch_up()  # a poll: the changed CarePlan
        assert service.drain(timeout=90)
        assert _billed(fresh_fhir, patient) == {d: ["97110"] for d in UNSIGNED_DAYS}
        assert "plan-uncertified" not in _findings(fresh_fhir, patient, "2026-02-10")
        assert set(store.counts()) == {"done"}
    finally:
        store.close()


def test_the_history_before_bill_from_counts_and_is_never_written(
    fresh_fhir: FhirServer, tmp_path: Path
) -> None:
    """Ten treatment days before the adapter bills (bill_from 2026-04-16), backfilled from the
    EMR: none of them is written, and the first billed day is the 11th treatment day with no
    progress report, an error that holds its line. A notification about a day before bill_from
    keeps it as history too."""
    patient = "backfill-live"
    me = f"Patient/{patient}"
    before = [f"2026-04-{d:02d}" for d in (1, 2, 3, 6, 7, 8, 9, 10, 13, 14)]
    days = [*before, "2026-04-20"]
    procs = [procedure(f"{patient}-{n}", "97110", at("09:00", d), at("09:30", d), patient=me,
                       encounter=None) for n, d in enumerate(days, start=1)]  # fmt: skip
    fresh_fhir.put_all(*context(patient=patient), *procs)
    client = FhirClient(fresh_fhir.base)
    store = open_store(tmp_path / "backfill.db")
    service = Service(client, client, RULEBOOK, Options(bill_from=date(2026, 4, 16)), store)
    try:
        assert service.backfill(date(2026, 1, 1), date(2026, 4, 16)) == (10, 10)
        assert service.backfill(date(2026, 1, 1), date(2026, 4, 16)) == (10, 0)  # kept once
        assert _billed(fresh_fhir, patient) == {}
        assert fresh_fhir.search(f"Claim?patient={me}&_count=50") == []
        _notify(service, f"{patient}-11", f"{patient}-3")
        assert _billed(fresh_fhir, patient) == {}
        assert "progress-report-missing" in _findings(fresh_fhir, patient, "2026-04-20")
        assert _findings(fresh_fhir, patient, "2026-04-03") == set()  # history: nothing posted
        assert set(store.counts()) == {"done"}
    finally:
        store.close()


def test_a_provenance_signature_certifies_the_plan_live(
    fresh_fhir: FhirServer, tmp_path: Path
) -> None:
    """Convention "provenance": the plan is unsigned (2026-02-10, 36 days after the first
    treatment, is held); the physician's signature arrives as a Provenance targeting the
    CarePlan, dated 2026-01-20 (within 30 days): its notification recomputes the patient's
    days (the CarePlan search brings the Provenance by _revinclude) and the line bills. A
    therapist's signature would not have certified it."""
    cert = replace(RULEBOOK.clocks.certification, convention="provenance")
    book = replace(RULEBOOK, clocks=replace(RULEBOOK.clocks, certification=cert))
    patient = "prov-live"
    ctx, plan, procs = _unsigned_plan(patient)
    md = {"resourceType": "Practitioner", "id": f"{patient}-md", "name": [{"text": "Test MD"}]}
    fresh_fhir.put_all(*ctx, plan, md, *procs)
    client = FhirClient(fresh_fhir.base)
    store = open_store(tmp_path / "prov.db")
    service = Service(client, client, book, Options(), store)

    def signature(pid: str, who: str) -> dict[str, Any]:
        return {"resourceType": "Provenance", "id": pid, "recorded": "2026-01-20T15:00:00Z",
                "target": [{"reference": f"CarePlan/{patient}-cp"}],
                "agent": [{"who": {"reference": who}}],
                "signature": [{"type": [{"system": "urn:iso-astm:E1762-95:2013",
                                         "code": "1.2.840.10065.1.12.1.1"}],
                               "when": "2026-01-20T15:00:00Z", "who": {"reference": who},
                               "data": "c2lnbmVk"}]}  # fmt: skip

    try:
        _notify(service, f"{patient}-1", f"{patient}-2")
        assert _billed(fresh_fhir, patient) == {"2026-01-05": ["97110"]}
        fresh_fhir.put_all(signature(f"{patient}-by-pt", "PractitionerRole/r-pt"))
        _notify(service, f"{patient}-by-pt", kind="Provenance")
        assert _billed(fresh_fhir, patient) == {"2026-01-05": ["97110"]}  # not a physician
        fresh_fhir.put_all(signature(f"{patient}-by-md", f"Practitioner/{patient}-md"))
        _notify(service, f"{patient}-by-md", kind="Provenance")
        assert _billed(fresh_fhir, patient) == {d: ["97110"] for d in UNSIGNED_DAYS}
        claim = _claim(fresh_fhir, patient, "2026-02-10")
        assert claim is not None
        assert any(m["provider"]["reference"] == f"Practitioner/{patient}-md"
                   for m in claim["careTeam"])  # fmt: skip
        assert set(store.counts()) == {"done"}
    finally:
        store.close()
