"""The live path against the real FHIR server: poll, write back, edits, voids, idempotence."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from adapter.domain import PatientDay
from adapter.emr.client import FhirClient
from adapter.intake.polling import Watermark, poll
from adapter.mappings import load_rulebook
from adapter.pipeline import Options, handle_events
from tests.fhir.make import at, context, procedure
from tests.fhir_server import FhirServer

RULEBOOK = load_rulebook()
NOW = datetime(2026, 11, 23, tzinfo=UTC)


def charge_lines(fhir: FhirServer, patient: str) -> list[tuple[str, int, str]]:
    items = fhir.search(f"ChargeItem?subject=Patient/{patient}&_count=100")
    return sorted(
        (i["code"]["coding"][0]["code"], i["quantity"]["value"], i["status"]) for i in items
    )


def cycle(client: FhirClient, mark: Watermark) -> tuple[Watermark, Any]:
    events, new_mark = poll(client, mark)
    results = handle_events(client, client, RULEBOOK, events, Options(evaluated_at=NOW))
    return new_mark, results


def test_poll_write_edit_void_and_nothing_twice(fresh_fhir: FhirServer) -> None:
    pid = "live-p1"
    a = procedure("live-a", "97112", at("09:00"), at("09:24"), patient=f"Patient/{pid}")
    b = procedure("live-b", "97110", at("09:24"), at("09:47"), patient=f"Patient/{pid}")
    fresh_fhir.put_all(*context(patient=pid), a, b)
    client = FhirClient(fresh_fhir.base)

    mark, results = cycle(client, Watermark())
    assert len(results) == 1 and results[0].write.created
    assert charge_lines(fresh_fhir, pid) == [("97110", 1, "billable"), ("97112", 2, "billable")]
    (claim,) = fresh_fhir.search(f"Claim?patient=Patient/{pid}")
    assert [i["quantity"]["value"] for i in claim["item"]] == [1, 2]

    # nothing changed: a second poll finds nothing; re-syncing the day writes nothing
    mark, results = cycle(client, mark)
    assert results == []
    from adapter.intake.events import ChangeEvent

    again = handle_events(client, client, RULEBOOK, [ChangeEvent("Procedure", "live-a")],
                          Options(evaluated_at=NOW))  # fmt: skip
    assert not again[0].write.changed and again[0].write.unchanged

    # the clinician corrects 97110's end time: 23 -> 38 minutes; 62 min total -> 4 units
    edited = copy.deepcopy(b)
    edited["performedPeriod"]["end"] = at("10:02")
    fresh_fhir.put_all(edited)
    mark, results = cycle(client, mark)
    assert results[0].write.updated
    assert charge_lines(fresh_fhir, pid) == [("97110", 2, "billable"), ("97112", 2, "billable")]
    (claim,) = fresh_fhir.search(f"Claim?patient=Patient/{pid}")
    assert sorted(i["quantity"]["value"] for i in claim["item"]) == [2, 2]

    # 97110 entered in error: its line is voided, 97112 alone remains (24 min -> 2 units)
    voided = {**edited, "status": "entered-in-error"}
    fresh_fhir.put_all(voided)
    mark, results = cycle(client, mark)
    assert results[0].write.voided
    assert charge_lines(fresh_fhir, pid) == [
        ("97110", 2, "entered-in-error"), ("97112", 2, "billable")
    ]  # fmt: skip
    items = fresh_fhir.search(f"ChargeItem?subject=Patient/{pid}&_count=100")
    assert len(items) == 2  # updated in place, never duplicated


def test_a_claim_past_draft_is_not_rewritten(fresh_fhir: FhirServer) -> None:
    pid = "live-p2"
    a = procedure("live2-a", "97112", at("09:00"), at("09:30"), patient=f"Patient/{pid}")
    fresh_fhir.put_all(*context(patient=pid), a)
    client = FhirClient(fresh_fhir.base)
    mark, _ = cycle(client, Watermark())
    (claim,) = fresh_fhir.search(f"Claim?patient=Patient/{pid}")
    claim["status"] = "active"  # the billing office submitted it
    fresh_fhir.put_all(claim)
    fresh_fhir.put_all({**a, "performedPeriod": {"start": at("09:00"), "end": at("09:45")}})
    mark, results = cycle(client, mark)
    assert results[0].write.claim_locked
    (claim_after,) = fresh_fhir.search(f"Claim?patient=Patient/{pid}")
    assert claim_after["status"] == "active" and claim_after["item"][0]["quantity"]["value"] == 2
    comms = fresh_fhir.search(f"Communication?subject=Patient/{pid}")
    texts = [p["contentString"] for c in comms for p in c["payload"]]
    assert any("Submit a corrected claim" in t and "97112 x3" in t for t in texts)
    assert charge_lines(fresh_fhir, pid) == [("97112", 3, "billable")]


def test_a_site_time_zone_keeps_an_evening_session_on_one_day(fresh_fhir: FhirServer) -> None:
    """UTC instants from the EMR, a Los Angeles site: 3:45-4:32 pm is one patient-day live too
    (the gather window and the spool use the site's dates)."""
    from zoneinfo import ZoneInfo

    from adapter.intake.events import ChangeEvent

    pid = "live-tz"
    resources = context(patient=pid)
    for r in resources:
        if r["resourceType"] == "Encounter":
            r["id"] = "e-tz"
            r["period"] = {"start": "2026-03-02T23:40:00Z", "end": "2026-03-03T00:40:00Z"}
    who, enc = f"Patient/{pid}", "Encounter/e-tz"
    a = procedure("tz-a", "97110", "2026-03-02T23:45:00Z", "2026-03-03T00:08:00Z",
                  patient=who, encounter=enc)  # fmt: skip
    b = procedure("tz-b", "97112", "2026-03-03T00:08:00Z", "2026-03-03T00:32:00Z",
                  patient=who, encounter=enc)  # fmt: skip
    fresh_fhir.put_all(*resources, a, b)
    client = FhirClient(fresh_fhir.base)
    events = [ChangeEvent("Procedure", "tz-a"), ChangeEvent("Procedure", "tz-b")]
    options = Options(evaluated_at=NOW, zone=ZoneInfo("America/Los_Angeles"))
    results = handle_events(client, client, RULEBOOK, events, options)
    assert [(str(r.day.service_date), r.decision and sum(ln.units for ln in r.decision.lines))
            for r in results] == [("2026-03-02", 3)]  # fmt: skip
    assert charge_lines(fresh_fhir, pid) == [("97110", 1, "billable"), ("97112", 2, "billable")]


def test_gathering_finds_an_undated_procedure_of_the_days_encounter(
    fresh_fhir: FhirServer,
) -> None:
    """Replay places a completed procedure with no time on its encounter's day (and holds it
    for the missing time); live finds it through the encounter, which a date search cannot."""
    from adapter.domain import FindingCode
    from adapter.intake.events import ChangeEvent

    pid = "live-undated"
    a = procedure("ud-a", "97112", at("09:00"), at("09:24"), patient=f"Patient/{pid}")
    b = procedure("ud-b", "97110", None, None, patient=f"Patient/{pid}")
    fresh_fhir.put_all(*context(patient=pid), a, b)
    client = FhirClient(fresh_fhir.base)
    (result,) = handle_events(client, client, RULEBOOK, [ChangeEvent("Procedure", "ud-a")],
                              Options(evaluated_at=NOW))  # fmt: skip
    assert set(result.inputs) == {"Procedure/ud-a", "Procedure/ud-b"}
    assert result.decision is not None
    held = [f for f in result.decision.findings if any("ud-b" in i for i in f.intervention_ids)]
    assert held and held[0].code is FindingCode.TIME_MISSING


def test_a_day_still_finding_references_after_the_round_cap_fails_loudly(
    fresh_fhir: FhirServer,
) -> None:
    from adapter.errors import InputError
    from adapter.intake.gather import gather_day

    pid = "live-rounds"
    a = procedure("rd-a", "97112", at("09:00"), at("09:24"), patient=f"Patient/{pid}")
    fresh_fhir.put_all(*context(patient=pid), a)
    client = FhirClient(fresh_fhir.base)
    with pytest.raises(InputError, match="still unresolved after 0 rounds"):
        gather_day(client, PatientDay.of(f"Patient/{pid}", "2026-03-02"), max_rounds=0)
    spool, _ = gather_day(client, PatientDay.of(f"Patient/{pid}", "2026-03-02"))
    try:
        assert [p["id"] for p in spool.procedures_of(f"Patient/{pid}", "2026-03-02")] == ["rd-a"]
    finally:
        spool.close()


def test_a_day_whose_only_procedure_has_no_time_is_billed_like_replay(
    fresh_fhir: FhirServer,
) -> None:
    """An evaluation (untimed) documented without a time: replay places it on its encounter's
    day and bills it; live must find the day (from the encounter) and the procedure (through
    the patient's encounters around the date), not drop it silently."""
    from adapter.intake.events import ChangeEvent
    from adapter.replay import evaluate_bundle
    from tests.fhir.make import bundle

    pid = "live-eval"
    resources = context(patient=pid)
    for r in resources:
        if r["resourceType"] == "Encounter":
            r["id"] = "e-eval"
    ev = procedure(
        "ev-a", "97161", None, None, patient=f"Patient/{pid}", encounter="Encounter/e-eval"
    )
    fresh_fhir.put_all(*resources, ev)
    client = FhirClient(fresh_fhir.base)
    options = Options(evaluated_at=NOW)
    (result,) = handle_events(client, client, RULEBOOK, [ChangeEvent("Procedure", "ev-a")], options)
    _, (offline,), _ = evaluate_bundle(bundle(*resources, ev), RULEBOOK, options)
    assert result.day.service_date.isoformat() == offline.service_date.isoformat() == "2026-03-02"
    assert result.decision is not None
    assert (
        [(ln.code, ln.units) for ln in result.decision.lines]
        == [(ln.code, ln.units) for ln in offline.lines]
        == [("97161", 1)]
    )
    # the Encounter changing alone also finds the day
    (again,) = handle_events(
        client, client, RULEBOOK, [ChangeEvent("Encounter", "e-eval")], options
    )
    assert again.day.service_date.isoformat() == "2026-03-02" and not again.write.changed


def test_a_review_message_says_so_once_its_findings_are_fixed(fresh_fhir: FhirServer) -> None:
    """The clinician's Communication listed what to fix; once the note is fixed it says nothing
    is left to fix (updated in place, once), instead of asking for fixes already made."""
    from adapter.intake.events import ChangeEvent

    pid = "live-msg"
    who = f"Patient/{pid}"
    a = procedure("msg-a", "97112", at("09:00"), at("09:24"), patient=who, note="did exercises")
    fresh_fhir.put_all(*context(patient=pid), a)
    client = FhirClient(fresh_fhir.base)
    options = Options(evaluated_at=NOW)

    def sync() -> Any:
        return handle_events(client, client, RULEBOOK, [ChangeEvent("Procedure", "msg-a")], options)

    sync()
    # the clinician's message (the billing office's kx-spend-unknown one has no recipient here)
    (message,) = [
        c for c in fresh_fhir.search(f"Communication?subject={who}") if c.get("recipient")
    ]
    assert {c["code"] for r in message["reasonCode"] for c in r["coding"]} >= {"note-vague"}
    fixed = {**a, "note": [{"text": procedure("x", None, None, None)["note"][0]["text"]}]}
    fresh_fhir.put_all(fixed)
    (result,) = sync()
    (after,) = [c for c in fresh_fhir.search(f"Communication?subject={who}")
                if c["id"] == message["id"]]  # fmt: skip
    assert (
        "reasonCode" not in after and "nothing left to fix" in after["payload"][0]["contentString"]
    )
    assert after["category"][0]["coding"][0]["code"] == "notification"
    assert f"Communication|{message['identifier'][0]['value']}" in result.write.updated
    (again,) = sync()
    assert not again.write.changed  # said once


def test_a_day_entered_in_error_then_completed_again_gets_its_claim_back(
    fresh_fhir: FhirServer,
) -> None:
    """Every procedure of a day set entered-in-error voids its lines and the draft Claim; set
    completed again, the lines and the Claim come back as a draft, and no correction request is
    written (was: the Claim stayed entered-in-error for good, taken for a submitted claim, and
    only a 'submit a corrected claim' Communication remained)."""
    from adapter.intake.events import ChangeEvent

    pid = "restore-p1"
    a = procedure("restore-a", "97112", at("09:00"), at("09:24"), patient=f"Patient/{pid}")
    b = procedure("restore-b", "97110", at("09:24"), at("09:47"), patient=f"Patient/{pid}")
    fresh_fhir.put_all(*context(patient=pid), a, b)
    client = FhirClient(fresh_fhir.base)
    options = Options(evaluated_at=NOW)

    def sync() -> None:
        handle_events(client, client, RULEBOOK, [ChangeEvent("Procedure", "restore-a")], options)

    def claim_status() -> str:
        (claim,) = fresh_fhir.search(f"Claim?patient=Patient/{pid}")
        return str(claim["status"])

    sync()
    assert claim_status() == "draft"
    fresh_fhir.put_all({**a, "status": "entered-in-error"}, {**b, "status": "entered-in-error"})
    sync()
    assert {s for *_, s in charge_lines(fresh_fhir, pid)} == {"entered-in-error"}
    assert claim_status() == "entered-in-error"
    fresh_fhir.put_all(a, b)
    sync()
    assert charge_lines(fresh_fhir, pid) == [("97110", 1, "billable"), ("97112", 2, "billable")]
    assert claim_status() == "draft"
    reasons = [
        c["coding"][0]["code"]
        for m in fresh_fhir.search(f"Communication?subject=Patient/{pid}&_count=100")
        for c in m.get("reasonCode", [])
    ]
    assert "claim-correction-needed" not in reasons
