"""Live intake resolves the references real EMRs store (issue 13, item 4): a performer known
only by identifier (``Reference.identifier``) is found with a ``Practitioner?identifier=``
search on the EMR (a conditional reference the server resolved when it was written), a
contained performer is read from its
procedure, and the day is decided exactly as replay decides the same resources."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from adapter.domain import PatientDay, Rulebook
from adapter.emr.client import FhirClient
from adapter.mappings import load_rulebook
from adapter.pipeline import Options, sync_day
from adapter.replay import evaluate_bundle
from tests import fhir_server
from tests.fhir.make import at, bundle, context, procedure
from tests.fhir_server import FhirServer

Resource = dict[str, Any]
NPI = "http://hl7.org/fhir/sid/us-npi"
NUCC = "http://nucc.org/provider-taxonomy"


@pytest.fixture(scope="module")
def rulebook() -> Rulebook:
    return load_rulebook()


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirServer]:
    srv = fhir_server.start(tmp_path_factory.mktemp("refs-fhir"))
    yield srv
    srv.stop()


def _resources(patient: str) -> list[Resource]:
    ctx = copy.deepcopy(context(patient=patient))
    for r in ctx:
        if r["resourceType"] == "Practitioner" and r["id"] == "pt":
            r["identifier"] = [{"system": NPI, "value": "1234567893"}]
        if r["resourceType"] == "Practitioner" and r["id"] == "ot":
            r["identifier"] = [{"system": NPI, "value": "1000000004"}]
    # the OT is named nowhere else: only a search by identifier finds them
    by_id = procedure("a", "97535", at("10:00"), at("10:30"), patient=f"Patient/{patient}")
    by_id["performer"] = [{"actor": {"identifier": {"system": NPI, "value": "1000000004"},
                                     "type": "Practitioner"}}]  # fmt: skip
    conditional = procedure("b", "97112", at("09:00"), at("09:38"), patient=f"Patient/{patient}",
                            actor=f"Practitioner?identifier={NPI}|1234567893")  # fmt: skip
    contained = procedure("c", "97110", at("11:00"), at("11:16"), patient=f"Patient/{patient}",
                          actor="#ptc")  # fmt: skip
    contained["contained"] = [{
        "resourceType": "Practitioner", "id": "ptc", "name": [{"text": "Casey Contained"}],
        "identifier": [{"system": NPI, "value": "1999999984"}],
        "qualification": [{"code": {"coding": [{"system": NUCC, "code": "225100000X"}]}}],
    }]  # fmt: skip
    return [*ctx, by_id, conditional, contained]


def test_live_resolution_matches_replay(server: FhirServer, rulebook: Rulebook) -> None:
    resources = _resources("refs-p1")
    # the context first: a server resolves a conditional reference when it is written (FHIR's
    # transaction rule), so it must find the practitioner then
    server.put_all(*resources[:-3])
    server.put_all(*resources[-3:])
    options = Options()
    _, (offline,), _ = evaluate_bundle(bundle(*resources), rulebook, options)
    emr = FhirClient(server.base)
    result = sync_day(emr, emr, rulebook, day=PatientDay.of("Patient/refs-p1", "2026-03-02"),
                      options=options)  # fmt: skip
    assert result.decision is not None
    lines = sorted((ln.code, ln.units, ln.modifiers) for ln in result.decision.lines)
    assert lines == sorted((ln.code, ln.units, ln.modifiers) for ln in offline.lines)
    assert {ln.code for ln in result.decision.lines} == {"97112", "97535", "97110"}
    found = emr.search("ChargeItem", [("subject", "Patient/refs-p1"), ("_count", "50")])
    actors = {ci["code"]["coding"][0]["code"]: ci["performer"][0]["actor"] for ci in found}
    assert actors["97112"] == {"reference": "Practitioner/pt"}
    assert actors["97535"] == {"reference": "Practitioner/ot"}
    assert actors["97110"]["identifier"] == {"system": NPI, "value": "1999999984"}


MRN = "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.14"


def test_a_procedure_naming_its_patient_only_by_identifier_is_billed_live(
    server: FhirServer, rulebook: Rulebook
) -> None:
    """A subject known only by identifier (``{"identifier": MRN}``, no ``reference``): the
    change is placed on the one Patient holding that identifier, and the day's gathering finds
    the procedure with ``subject:identifier`` — billed as replay bills it (was: "no Patient
    subject", not placed, nothing billed and only a log line)."""
    from adapter.intake.events import ChangeEvent
    from adapter.intake.gather import days_of

    resources = copy.deepcopy(context(patient="refs-p2"))
    for r in resources:
        if r["resourceType"] == "Patient":
            r["identifier"] = [{"system": MRN, "value": "E+1 0/2"}]  # reserved characters too
    logical = procedure("l", "97110", at("10:30"), at("11:00"), patient="Patient/refs-p2")
    logical["subject"] = {"identifier": {"system": MRN, "value": "E+1 0/2"}, "type": "Patient"}
    literal = procedure("m", "97112", at("09:00"), at("09:25"), patient="Patient/refs-p2")
    server.put_all(*resources, logical, literal)
    emr = FhirClient(server.base)
    assert emr.supports_subject_identifier()
    day = PatientDay.of("Patient/refs-p2", "2026-03-02")
    assert days_of(emr, [ChangeEvent("Procedure", "l")]) == {day}
    _, (offline,), _ = evaluate_bundle(bundle(*resources, logical, literal), rulebook, Options())
    result = sync_day(emr, emr, rulebook, day=day, options=Options())
    assert result.decision is not None
    lines = sorted((ln.code, ln.units, ln.modifiers) for ln in result.decision.lines)
    assert lines == sorted((ln.code, ln.units, ln.modifiers) for ln in offline.lines)
    assert {ln.code for ln in result.decision.lines} == {"97110", "97112"}
    # an identifier no Patient (or several) holds places nothing
    logical["subject"]["identifier"]["value"] = "nobody"
    server.put_all(logical)
    assert days_of(emr, [ChangeEvent("Procedure", "l")]) == set()
