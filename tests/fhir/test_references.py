"""References real EMRs write (issue 13, item 4): contained resources, conditional references
(``Type?identifier=s|v``) and logical references (``Reference.identifier`` only) resolve in
replay like literal ones; what cannot be pointed at is written as a logical Reference, never as
a dangling ``#id``; an identifier that matches nothing, or several resources, is reported and
never guessed."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from adapter import Rulebook, load_rulebook
from adapter.fhir.validate import validation_errors
from adapter.replay import evaluate_bundle

from .make import at, bundle, context, procedure

Resource = dict[str, Any]
NPI = "http://hl7.org/fhir/sid/us-npi"
MRN = "urn:oid:1.2.36.146.595.217.0.1"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"


@pytest.fixture(scope="module")
def rulebook() -> Rulebook:
    return load_rulebook()


def _ctx() -> list[Resource]:
    """The usual context, the patient and the PT with identifiers (MRN, NPI)."""
    out = copy.deepcopy(context())
    for r in out:
        if r["resourceType"] == "Patient":
            r["identifier"] = [{"system": MRN, "value": "MRN 12+3&4"}]
        if r["resourceType"] == "Practitioner" and r["id"] == "pt":
            r["identifier"] = [{"system": NPI, "value": "1234567893"}]
            r["name"] = [{"family": "Therapist", "given": ["Pat"]}]
    return out


def _day(*procs: Resource, ctx: list[Resource] | None = None) -> Resource:
    return bundle(*(ctx if ctx is not None else _ctx()), *procs)


def _lines(out: Resource) -> list[tuple[str, float, tuple[str, ...]]]:
    lines = []
    for e in out["entry"]:
        r = e["resource"]
        if r["resourceType"] == "ChargeItem" and r["status"] == "billable":
            mods = tuple(x["valueCoding"]["code"] for x in r.get("extension", [])
                         if "valueCoding" in x)  # fmt: skip
            lines.append((r["code"]["coding"][0]["code"], r["quantity"]["value"], mods))
    return sorted(lines)


def _run(rulebook: Rulebook, doc: Resource) -> tuple[Resource, list[str]]:
    out, _, summary = evaluate_bundle(doc, rulebook)
    assert validation_errors(out) == []
    assert '"#' not in json.dumps(out)  # no reference to a contained resource we do not hold
    return out, [f"{p.where}: {p.reason}" for p in summary.problems]


def _literal(rulebook: Rulebook) -> list[tuple[str, float, tuple[str, ...]]]:
    out, problems = _run(rulebook, _day(procedure("a", "97112", at("09:00"), at("09:38"))))
    assert problems == []
    return _lines(out)


def test_a_conditional_performer_reference_resolves(rulebook: Rulebook) -> None:
    proc = procedure("a", "97112", at("09:00"), at("09:38"),
                     actor=f"Practitioner?identifier={NPI}|1234567893")  # fmt: skip
    out, problems = _run(rulebook, _day(proc))
    assert problems == []
    assert _lines(out) == _literal(rulebook) and _lines(out)
    item = next(
        e["resource"] for e in out["entry"] if e["resource"]["resourceType"] == "ChargeItem"
    )
    assert item["performer"] == [{"actor": {"reference": "Practitioner/pt"}}]


def test_an_identifier_only_performer_and_subject_resolve(rulebook: Rulebook) -> None:
    proc = procedure("a", "97112", at("09:00"), at("09:38"))
    proc["performer"] = [{"actor": {"identifier": {"system": NPI, "value": "1234567893"}}}]
    proc["subject"] = {"identifier": {"system": MRN, "value": "MRN 12+3&4"}, "display": "Z"}
    out, problems = _run(rulebook, _day(proc))
    assert problems == []
    assert _lines(out) == _literal(rulebook)
    item = next(
        e["resource"] for e in out["entry"] if e["resource"]["resourceType"] == "ChargeItem"
    )
    assert item["subject"] == {"reference": "Patient/p1"}


def test_a_contained_performer_is_read_and_written_as_a_logical_reference(
    rulebook: Rulebook,
) -> None:
    """Found with an Epic-like export: performer '#ptc' was held ('does not resolve') and the
    Communication got a dangling '#ptc' recipient (against ref-1)."""
    proc = procedure("a", "97112", at("09:00"), at("09:38"), actor="#ptc")
    proc["contained"] = [{
        "resourceType": "Practitioner", "id": "ptc",
        "identifier": [{"system": NPI, "value": "1999999984"}],
        "name": [{"text": "Casey Contained, PT"}],
        "qualification": [{"code": {"coding": [{"system": "http://nucc.org/provider-taxonomy",
                                                "code": "225100000X"}]}}],
    }]  # fmt: skip
    out, problems = _run(rulebook, _day(proc))
    assert problems == []
    assert _lines(out) == _literal(rulebook)
    item = next(
        e["resource"] for e in out["entry"] if e["resource"]["resourceType"] == "ChargeItem"
    )
    assert item["performer"] == [{"actor": {
        "type": "Practitioner", "identifier": {"system": NPI, "value": "1999999984"},
        "display": "Casey Contained, PT"}}]  # fmt: skip


def test_a_contained_condition_is_a_coded_diagnosis(rulebook: Rulebook) -> None:
    proc = procedure("a", "97112", at("09:00"), at("09:38"))
    del proc["reasonCode"]
    proc["reasonReference"] = [{"reference": "#dx"}]
    proc["contained"] = [{"resourceType": "Condition", "id": "dx",
                          "subject": {"reference": "Patient/p1"},
                          "code": {"coding": [{"system": ICD, "code": "G35"}]}}]  # fmt: skip
    out, problems = _run(rulebook, _day(proc))
    assert problems == []
    claim = next(e["resource"] for e in out["entry"] if e["resource"]["resourceType"] == "Claim")
    assert claim["diagnosis"][0]["diagnosisCodeableConcept"]["coding"][0]["code"] == "G35"
    item = next(
        e["resource"] for e in out["entry"] if e["resource"]["resourceType"] == "ChargeItem"
    )
    assert item["reason"][0]["coding"][0]["code"] == "G35"


def test_an_identifier_that_matches_nothing_is_reported(rulebook: Rulebook) -> None:
    proc = procedure("a", "97112", at("09:00"), at("09:38"))
    proc["subject"] = {"identifier": {"system": MRN, "value": "no-such-mrn"}}
    out, problems = _run(rulebook, _day(proc))
    assert _lines(out) == []
    assert any("subject identifier" in p and "matches no resource" in p for p in problems)


def test_an_identifier_held_by_two_resources_is_not_guessed(rulebook: Rulebook) -> None:
    ctx = _ctx()
    twin = {"resourceType": "Patient", "id": "p-twin",
            "identifier": [{"system": MRN, "value": "MRN 12+3&4"}]}  # fmt: skip
    proc = procedure("a", "97112", at("09:00"), at("09:38"))
    proc["subject"] = {"identifier": {"system": MRN, "value": "MRN 12+3&4"}}
    out, problems = _run(rulebook, _day(proc, ctx=[*ctx, twin]))
    assert _lines(out) == []
    assert any("names 2 resources" in p for p in problems)


def test_an_unresolved_identifier_performer_is_held_and_written_logically(
    rulebook: Rulebook,
) -> None:
    proc = procedure("a", "97112", at("09:00"), at("09:38"))
    proc["performer"] = [{"actor": {"identifier": {"system": NPI, "value": "0000000000"}}}]
    out, problems = _run(rulebook, _day(proc))
    assert _lines(out) == []  # no discipline known: not billed as anyone's
    assert any("does not resolve" in p for p in problems)
