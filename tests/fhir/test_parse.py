"""FHIR input conventions (README "Input conventions"), through the public evaluate_bundle API."""

from __future__ import annotations

from typing import Any

import pytest

from adapter import Rulebook, evaluate_bundle, load_rulebook
from adapter.domain import CodeSource, Decision
from adapter.fhir.coding import resolve_code
from adapter.fhir.dates import service_date_of
from adapter.fhir.refs import parse_datetime, ref_key

from .make import at, bundle, context, procedure, role


@pytest.fixture(scope="module")
def rulebook() -> Rulebook:
    return load_rulebook()


def decide(rulebook: Rulebook, *resources: dict[str, Any], **kw: Any) -> list[Decision]:
    return evaluate_bundle(bundle(*resources), rulebook, **kw)[1]


def lines(d: Decision) -> list[str]:
    return sorted(" ".join([ln.code, f"x{ln.units}", *ln.modifiers]) for ln in d.lines)


def codes(d: Decision) -> set[str]:
    return {f.code.value for f in d.findings}


@pytest.mark.parametrize(
    ("ref", "key"),
    [
        ("Patient/1", "Patient/1"),
        ("https://emr.example/fhir/Patient/1", "Patient/1"),
        ("Patient/1/_history/3", "Patient/1"),
        ("http://x/fhir/R4/Encounter/e-1.2/_history/1", "Encounter/e-1.2"),
        ("urn:uuid:0b99ec41-968f-519f", "urn:uuid:0b99ec41-968f-519f"),
    ],
)  # fmt: skip
def test_ref_key(ref: str, key: str) -> None:
    assert ref_key(ref) == key


def test_datetimes_need_an_offset() -> None:
    assert parse_datetime("2026-03-02T09:00:00-05:00")[0] is not None
    assert parse_datetime("2026-03-02T14:00:00Z")[0] is not None
    value, why = parse_datetime("2026-03-02T09:00:00")
    assert value is None and why and "offset" in why


def test_date_of_service_is_the_local_date_in_the_procedures_own_offset() -> None:
    late = procedure("a", "97110", "2026-03-02T23:30:00-05:00", "2026-03-02T23:50:00-05:00")
    assert service_date_of(late) == "2026-03-02"  # 04:30 UTC on the 3rd


def test_code_resolution_order(rulebook: Rulebook) -> None:
    both = procedure(
        "a", None, None, None,
        coding=[{"system": "http://example.org/fhir/CodeSystem/local-therapy", "code": "NMR"},
                {"system": "http://www.ama-assn.org/go/cpt", "code": "97110"}],
    )  # fmt: skip
    resolved = resolve_code(both, rulebook)
    assert resolved and (resolved.code, resolved.source) == ("97110", CodeSource.CPT)
    local = procedure(
        "b", None, None, None,
        coding=[{"system": "http://example.org/fhir/CodeSystem/local-therapy", "code": "NMR"}],
    )  # fmt: skip
    resolved = resolve_code(local, rulebook)
    assert resolved and (resolved.code, resolved.source) == ("97112", CodeSource.CONCEPT_MAP)
    text = procedure("c", None, None, None, text="Neuromuscular re-education, standing")
    resolved = resolve_code(text, rulebook)
    assert resolved and (resolved.code, resolved.source) == ("97112", CodeSource.TEXT)
    assert (
        resolve_code(procedure("d", None, None, None, text="Ultrasound guided"), rulebook) is None
    )


def test_basic_day_bills_and_every_reference_form_resolves(rulebook: Rulebook) -> None:
    (d,) = decide(
        rulebook,
        *context(),
        procedure("a", "97112", at("09:00"), at("09:24"), "https://emr.example/fhir/PractitionerRole/r-pt"),
        procedure("b", "97110", at("09:24"), at("09:47"), "Practitioner/pt"),
    )  # fmt: skip
    assert d.payer == "medicare"
    assert lines(d) == ["97110 x1 GP", "97112 x2 GP"]
    assert codes(d) == {"kx-spend-unknown"}


def test_transaction_input_with_urn_uuid_references(rulebook: Rulebook) -> None:
    res = [*context(), procedure("a", "97112", at("09:00"), at("09:30"), "urn:uuid:1111")]
    res = [r for r in res if r.get("id") != "r-pt"]
    doc = bundle(*res, kind="transaction")
    doc["entry"].append(
        {
            "fullUrl": "urn:uuid:1111",
            "resource": role("r-pt", "Practitioner/pt", "225100000X"),
            "request": {"method": "PUT", "url": "PractitionerRole/r-pt"},
        }
    )
    (d,) = evaluate_bundle(doc, rulebook)[1]
    assert lines(d) == ["97112 x2 GP"]


def test_not_completed_and_not_therapy_procedures_are_not_billed(rulebook: Rulebook) -> None:
    _out, ds = evaluate_bundle(
        bundle(
            *context(),
            procedure("a", "97112", at("09:00"), at("09:30"), status="entered-in-error"),
            procedure("b", "99213", at("10:00"), at("10:30")),
            procedure("c", "97110", at("11:00"), at("11:30")),
        ),
        rulebook,
    )
    (d,) = ds
    assert lines(d) == ["97110 x2 GP"]
    assert {i for ln in d.lines for i in ln.intervention_ids} == {"Procedure/c"}


def test_unlisted_therapy_code_is_an_error_not_ignored(rulebook: Rulebook) -> None:
    (d,) = decide(rulebook, *context(), procedure("a", "97999", at("09:00"), at("09:30")))
    assert "unknown-code" in codes(d)


def test_time_without_offset_is_an_error_finding(rulebook: Rulebook) -> None:
    (d,) = decide(
        rulebook, *context(), procedure("a", "97112", "2026-03-02T09:00:00", "2026-03-02T09:30:00")
    )
    assert "time-invalid" in codes(d) and d.lines == ()


def test_roles_give_discipline_and_assistant_status(rulebook: Rulebook) -> None:
    (d,) = decide(
        rulebook,
        *context(),
        procedure("a", "97112", at("09:00"), at("09:30"), "PractitionerRole/r-pta"),
        procedure("b", "97530", at("10:00"), at("10:30"), "PractitionerRole/r-ot"),
    )
    assert lines(d) == ["97112 x2 GP CQ", "97530 x2 GO"]


def test_role_without_taxonomy_means_no_discipline(rulebook: Rulebook) -> None:
    (d,) = decide(
        rulebook,
        *context(),
        role("r-x", "Practitioner/x", None),
        procedure("a", "97112", at("09:00"), at("09:30"), "PractitionerRole/r-x"),
    )
    assert "no-discipline" in codes(d) and d.lines == ()


def test_dangling_performer_is_a_problem_and_holds_the_line(rulebook: Rulebook) -> None:
    _out, ds, summary = __import__("adapter.replay", fromlist=["x"]).evaluate_bundle(
        bundle(
            *context(), procedure("a", "97112", at("09:00"), at("09:30"), "PractitionerRole/ghost")
        ),
        rulebook,
    )
    (d,) = ds
    assert "no-discipline" in codes(d)
    assert any("does not resolve" in p.reason for p in summary.problems)


def test_practitioner_with_roles_in_two_disciplines_is_ambiguous(rulebook: Rulebook) -> None:
    (d,) = decide(
        rulebook,
        *context(),
        role("r-pt-ot", "Practitioner/pt", "225X00000X"),
        procedure("a", "97112", at("09:00"), at("09:30"), "Practitioner/pt"),
    )
    assert "no-discipline" in codes(d)


@pytest.mark.parametrize(
    ("sopt", "payer"),
    [("1", "medicare"), ("121", "medicare"), ("2", "medicaid"), ("21", "medicaid"),
     ("31", "tricare"), ("311", "tricare"), ("3111", "tricare"), ("312", "commercial"),
     ("5", "commercial"), ("81", "commercial")],
)  # fmt: skip
def test_coverage_type_selects_the_payer_profile(rulebook: Rulebook, sopt: str, payer: str) -> None:
    (d,) = decide(rulebook, *context(sopt=sopt), procedure("a", "97112", at("09:00"), at("09:30")))
    assert d.payer == payer
    assert "coverage-missing" not in codes(d)


def test_no_coverage_uses_the_default_and_warns(rulebook: Rulebook) -> None:
    (d,) = decide(rulebook, *context(sopt=None), procedure("a", "97112", at("09:00"), at("09:30")))
    assert d.payer == "medicare" and "coverage-missing" in codes(d)
    (d,) = decide(
        rulebook, *context(sopt=None), procedure("a", "97112", at("09:00"), at("09:30")),
        default_payer="commercial",
    )  # fmt: skip
    assert d.payer == "commercial"


def test_inactive_or_expired_coverage_is_not_used(rulebook: Rulebook) -> None:
    (d,) = decide(
        rulebook,
        *context(sopt="5", period={"end": "2026-01-31"}),
        procedure("a", "97112", at("09:00"), at("09:30")),
    )
    assert "coverage-missing" in codes(d)


def test_payer_override(rulebook: Rulebook) -> None:
    (d,) = decide(
        rulebook, *context(sopt="121"), procedure("a", "97112", at("09:00"), at("09:30")),
        payer="commercial",
    )  # fmt: skip
    assert d.payer == "commercial" and "coverage-missing" not in codes(d)


def test_ytd_spend_extension_drives_kx(rulebook: Rulebook) -> None:
    ext = [{"url": "https://therapy-charge-adapter.org/fhir/StructureDefinition/therapy-ytd-allowed-pt-slp",
            "valueMoney": {"value": 2600, "currency": "USD"}}]  # fmt: skip
    (d,) = decide(
        rulebook, *context(extension=ext), procedure("a", "97112", at("09:00"), at("09:30"))
    )
    assert lines(d) == ["97112 x2 GP KX"]


def test_no_care_plan_warns(rulebook: Rulebook) -> None:
    (d,) = decide(
        rulebook, *context(care_plan=False), procedure("a", "97112", at("09:00"), at("09:30"))
    )
    assert "no-plan-of-care" in codes(d)


def test_group_category_marks_a_group_session(rulebook: Rulebook) -> None:
    (d,) = decide(
        rulebook,
        *context(),
        procedure("a", "97110", at("09:00"), at("09:30"), category={"text": "Group therapy"}),
    )
    assert "group-billed-one-on-one" in codes(d)


def test_encounter_diagnosis_counts_and_supervisor_comes_from_participants(
    rulebook: Rulebook,
) -> None:
    p = procedure("a", "97112", at("09:00"), at("09:30"), "PractitionerRole/r-pta")
    del p["reasonCode"]
    (d,) = decide(rulebook, *context(), p)
    assert "no-diagnosis" in codes(d)  # encounter e1 has no diagnosis
    assert "assistant-unsupervised" not in codes(d)  # r-pt is a participant


def test_concurrent_one_on_one_with_another_patient(rulebook: Rulebook) -> None:
    other = procedure(
        "z", "97110", at("09:10"), at("09:40"), "PractitionerRole/r-pt", patient="Patient/p2",
        encounter=None,
    )  # fmt: skip
    ds = decide(
        rulebook, *context(), *context(patient="p2")[-2:], other,
        procedure("a", "97112", at("09:00"), at("09:30")),
    )  # fmt: skip
    assert all("concurrent-patients" in codes(d) for d in ds) and len(ds) == 2


def test_procedure_without_subject_is_reported_not_billed(rulebook: Rulebook) -> None:
    from adapter.replay import evaluate_bundle as full

    p = procedure("a", "97112", at("09:00"), at("09:30"))
    del p["subject"]
    _, ds, summary = full(bundle(*context(), p), rulebook)
    assert ds == [] and any("no subject" in x.reason for x in summary.problems)


def test_higher_version_wins_whatever_the_order(rulebook: Rulebook) -> None:
    v1 = procedure("a", "97112", at("09:00"), at("09:30"), meta={"versionId": "1"})
    v2 = procedure("a", "97112", at("09:00"), at("09:45"), meta={"versionId": "2"})
    for order in ([v1, v2], [v2, v1]):
        doc = bundle(*context())
        doc["entry"] += [{"resource": r} for r in order]
        (d,) = evaluate_bundle(doc, rulebook)[1]
        assert lines(d) == ["97112 x3 GP"]


def test_every_written_reference_is_resolved_not_a_raw_urn(rulebook: Rulebook) -> None:
    res = [*context(), procedure("a", "97112", at("09:00"), at("09:30"))]
    enc = next(r for r in res if r["resourceType"] == "Encounter")
    enc["serviceProvider"] = {"reference": "urn:uuid:org-1"}
    doc = bundle(*res, kind="transaction")
    doc["entry"].append({"fullUrl": "urn:uuid:org-1",
                         "resource": {"resourceType": "Organization", "id": "clinic"}})  # fmt: skip
    out, _ = evaluate_bundle(doc, rulebook)
    (claim,) = [e["resource"] for e in out["entry"] if e["resource"]["resourceType"] == "Claim"]
    assert claim["provider"] == {"reference": "Organization/clinic"}
    assert "urn:uuid:org-1" not in str(out)


def test_an_older_copy_without_timestamps_never_beats_a_newer_version(rulebook: Rulebook) -> None:
    new = procedure("a", "97110", at("09:00"), at("09:20"), status="entered-in-error",
                    meta={"versionId": "2", "lastUpdated": "2026-03-02T15:00:00Z"})  # fmt: skip
    old = procedure("a", "97110", at("09:00"), at("09:50"), meta={"versionId": "1"})
    from adapter.replay import evaluate_bundle as full

    for order in ((new, old), (old, new)):
        _, decisions, summary = full(bundle(*context(), *order), rulebook)
        assert decisions == [] and summary.superseded == 1
    v10 = procedure("b", "97110", at("09:00"), at("09:50"), meta={"versionId": "10"})
    v9 = procedure("b", "97110", at("09:00"), at("09:20"), meta={"versionId": "9"})
    (d,) = decide(rulebook, *context(), v10, v9)  # numeric, not string, comparison
    assert lines(d) == ["97110 x3 GP"]


def _minutes_ext(value: Any) -> list[dict[str, Any]]:
    return [
        {
            "url": "https://therapy-charge-adapter.org/fhir/StructureDefinition/documented-minutes",
            "valueDuration": value,
        }
    ]


def test_documented_minutes_without_times_are_read_from_their_extension(
    rulebook: Rulebook,
) -> None:
    """A timed service documented by minutes alone: minutes-without-times (an error under every
    shipped profile, so held), not time-missing; an untimed evaluation's minutes count too."""
    ucum = {"value": 30, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"}
    p = procedure("a", "97110", None, None, performedDateTime="2026-03-02",
                  extension=_minutes_ext(ucum))  # fmt: skip
    (d,) = decide(rulebook, *context(), p, procedure("b", "97112", at("10:00"), at("10:20")))
    assert lines(d) == ["97112 x1 GP"]
    (f,) = [f for f in d.findings if f.code.value == "minutes-without-times"]
    assert f.intervention_ids == ("Procedure/a",) and "30 min" in f.message
    assert "time-missing" not in codes(d)


@pytest.mark.parametrize(
    "value",
    [
        {"value": 30, "unit": "h", "system": "http://unitsofmeasure.org", "code": "h"},
        {"value": 12.5, "system": "http://unitsofmeasure.org", "code": "min"},
        {"value": -3, "system": "http://unitsofmeasure.org", "code": "min"},
        {"value": "30", "system": "http://unitsofmeasure.org", "code": "min"},
        "30 minutes",
    ],
)
def test_a_malformed_documented_minutes_extension_is_an_input_problem(
    rulebook: Rulebook, value: Any
) -> None:
    p = procedure("a", "97110", None, None, performedDateTime="2026-03-02",
                  extension=_minutes_ext(value))  # fmt: skip
    full = __import__("adapter.replay", fromlist=["x"]).evaluate_bundle
    _, (d,), summary = full(bundle(*context(), p), rulebook)
    assert any("documented-minutes" in x.reason for x in summary.problems)
    assert "time-missing" in codes(d)  # read as no duration at all: held as before


# -- code systems however they are spelled (issue: charges silently lost on spelling) ------------
def _respell(resources: list[dict[str, Any]], old: str, new: str) -> list[dict[str, Any]]:
    import json

    return [json.loads(json.dumps(r).replace(f'"{old}"', f'"{new}"')) for r in resources]


@pytest.mark.parametrize(
    "system",
    ["urn:oid:2.16.840.1.113883.6.12", "https://www.ama-assn.org/go/cpt",
     "HTTP://WWW.AMA-ASSN.ORG/go/cpt/"],
)  # fmt: skip
def test_cpt_spelled_as_an_oid_or_with_https_is_billed(rulebook: Rulebook, system: str) -> None:
    p = procedure("a", None, at("09:00"), at("09:30"), coding=[{"system": system, "code": "97110"}])
    (d,) = decide(rulebook, *context(), p)
    assert lines(d) == ["97110 x2 GP"]


def test_hcpcs_with_the_url_of_the_specs_own_example_is_billed(rulebook: Rulebook) -> None:
    """A G0283 line vanished when HCPCS came as …/Alpha-Numeric-HCPCS.html (the R4 example)."""
    url = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets/Alpha-Numeric-HCPCS.html"
    estim = procedure(
        "e", None, at("09:30"), at("09:45"), coding=[{"system": url, "code": "G0283"}]
    )
    (d,) = decide(rulebook, *context(), procedure("a", "97110", at("09:00"), at("09:30")), estim)
    assert lines(d) == ["97110 x2 GP", "G0283 x1 GP"]


def test_icd10cm_as_an_oid_is_a_diagnosis_and_reaches_the_claim(rulebook: Rulebook) -> None:
    p = procedure("a", "97110", at("09:00"), at("09:30"))
    p["reasonCode"] = [{"coding": [{"system": "urn:oid:2.16.840.1.113883.6.90", "code": "M17.11"}]}]
    out, (d,) = evaluate_bundle(bundle(*context(), p), rulebook)
    assert "no-diagnosis" not in codes(d)
    (claim,) = [e["resource"] for e in out["entry"] if e["resource"]["resourceType"] == "Claim"]
    coding = claim["diagnosis"][0]["diagnosisCodeableConcept"]["coding"][0]
    assert coding == {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M17.11"}


def test_role_and_coverage_codings_by_oid(rulebook: Rulebook) -> None:
    ctx = _respell(context(sopt="2"), "http://nucc.org/provider-taxonomy",
                   "urn:oid:2.16.840.1.113883.6.101")  # fmt: skip
    ctx = _respell(ctx, "https://nahdo.org/sopt", "urn:oid:2.16.840.1.113883.3.221.5")
    (d,) = decide(rulebook, *ctx, procedure("a", "97110", at("09:00"), at("09:30")))
    assert d.payer == "medicaid" and lines(d) == ["97110 x2 GP"]
    assert "no-discipline" not in codes(d) and "coverage-type-unknown" not in codes(d)


def test_times_without_seconds_are_written_as_valid_fhir(rulebook: Rulebook) -> None:
    """EMR exports often write 2026-03-11T09:00-05:00 (no seconds: not a valid FHIR dateTime);
    what the adapter writes has them (was: copied as they came, rejected by validators)."""
    from adapter.fhir.validate import validation_errors

    p = procedure("a", "97110", "2026-03-02T09:00-05:00", "2026-03-02T09:30-05:00")
    out, (d,) = evaluate_bundle(bundle(*context(), p), rulebook)
    assert lines(d) == ["97110 x2 GP"]
    (item,) = [e["resource"] for e in out["entry"] if e["resource"]["resourceType"] == "ChargeItem"]
    assert item["occurrencePeriod"] == {
        "start": "2026-03-02T09:00:00-05:00",
        "end": "2026-03-02T09:30:00-05:00",
    }
    (prov,) = [e["resource"] for e in out["entry"] if e["resource"]["resourceType"] == "Provenance"]
    assert prov["recorded"] == "2026-03-02T09:30:00-05:00"
    assert validation_errors(out) == []


def test_provenance_recorded_is_the_latest_instant_not_the_latest_text(rulebook: Rulebook) -> None:
    """With mixed offsets, 13:00Z is later than 09:30-05:00 (= 14:30Z) as text, not in time."""
    a = procedure("a", "97110", at("09:00"), at("09:30"))  # ends 14:30Z
    b = procedure("b", "97112", "2026-03-02T12:40:00Z", "2026-03-02T13:00:00Z")  # ends 13:00Z
    out, _ = evaluate_bundle(bundle(*context(), a, b), rulebook)
    (prov,) = [e["resource"] for e in out["entry"] if e["resource"]["resourceType"] == "Provenance"]
    assert prov["recorded"] == at("09:30")


def test_each_claim_item_points_at_its_own_procedures_diagnoses_first(rulebook: Rulebook) -> None:
    """An OT 97535 for M79.641 beside a PT 97110 for M17.11: each line's diagnosis pointer (and
    its ChargeItem.reason) names its own procedure's reason first (was: the day's first four
    for every item, so the OT line pointed first at the PT line's M17.11)."""
    pt = procedure("a", "97110", at("09:00"), at("09:30"))  # M17.11 (make.procedure's reason)
    ot = procedure("b", "97535", at("10:00"), at("10:30"), "PractitionerRole/r-ot")
    ot["reasonCode"] = [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm",
                                     "code": "M79.641"}]}]  # fmt: skip
    out, _ = evaluate_bundle(bundle(*context(), pt, ot), rulebook)
    (claim,) = [e["resource"] for e in out["entry"] if e["resource"]["resourceType"] == "Claim"]
    dx = {
        c["sequence"]: c["diagnosisCodeableConcept"]["coding"][0]["code"]
        for c in claim["diagnosis"]
    }
    pointers = {
        i["productOrService"]["coding"][0]["code"]: [dx[s] for s in i["diagnosisSequence"]]
        for i in claim["item"]
    }
    assert pointers == {"97110": ["M17.11"], "97535": ["M79.641"]}
    reasons = {
        e["resource"]["code"]["coding"][0]["code"]: [r["coding"][0]["code"]
                                                    for r in e["resource"]["reason"]]
        for e in out["entry"]
        if e["resource"]["resourceType"] == "ChargeItem"
    }  # fmt: skip
    assert reasons == {"97110": ["M17.11"], "97535": ["M79.641"]}


# -- SNOMED CT only (Synthea's shape): a suggestion, or a finding; never silence ------------------
SCT = "http://snomed.info/sct"


def test_a_snomed_only_therapy_procedure_is_billed_as_a_suggestion(rulebook: Rulebook) -> None:
    exercise = {"system": SCT, "code": "229065009", "display": "Exercise therapy"}
    p = procedure("a", None, at("09:00"), at("09:30"), coding=[exercise])
    (d,) = decide(rulebook, *context(), p)
    assert lines(d) == ["97110 x2 GP"]
    (f,) = [f for f in d.findings if f.code.value == "code-from-text"]
    assert "snomed-therapy-to-cpt" in f.message and "confirm" in f.message
    assert "conceptmap:snomed-therapy-to-cpt:229065009" in d.lines[0].rule_refs


def test_an_unmappable_therapy_procedure_gets_a_finding_not_silence(rulebook: Rulebook) -> None:
    """91251008 Physical therapy procedure by a PT names no billable service: code-unmapped
    (was: counted 'not therapy' with no word)."""
    p = procedure("a", None, at("09:00"), at("09:30"), coding=[{"system": SCT, "code": "91251008"}])
    (d,) = decide(rulebook, *context(), p, procedure("b", "97112", at("10:00"), at("10:20")))
    (f,) = [f for f in d.findings if f.code.value == "code-unmapped"]
    assert f.severity.value == "error" and f.intervention_ids == ("Procedure/a",)
    assert "http://snomed.info/sct|91251008" in f.message
    assert lines(d) == ["97112 x1 GP"]


def test_an_unmapped_code_outside_therapy_is_not_a_finding(rulebook: Rulebook) -> None:
    """A dental procedure by someone without a therapy role, in another encounter: not ours."""
    cleaning = [{"system": SCT, "code": "34043003"}]
    dental = procedure("z", None, at("13:00"), at("13:30"), "Practitioner/dentist",
                       coding=cleaning, encounter="Encounter/e9")  # fmt: skip
    (d,) = decide(rulebook, *context(), dental, procedure("b", "97112", at("10:00"), at("10:20")))
    assert "code-unmapped" not in codes(d) and lines(d) == ["97112 x1 GP"]


def test_a_bare_string_code_is_an_input_problem(rulebook: Rulebook) -> None:
    p = procedure("a", "97110", at("09:00"), at("09:30"))
    p["code"] = "97110"
    full = __import__("adapter.replay", fromlist=["x"]).evaluate_bundle
    _, ds, summary = full(bundle(*context(), p), rulebook)
    assert ds == [] and any("bare string" in x.reason for x in summary.problems)


def test_a_procedure_without_a_status_is_an_input_problem(rulebook: Rulebook) -> None:
    p = procedure("a", "97110", at("09:00"), at("09:30"))
    del p["status"]
    full = __import__("adapter.replay", fromlist=["x"]).evaluate_bundle
    _, ds, summary = full(bundle(*context(), p), rulebook)
    assert ds == [] and any("has no status" in x.reason for x in summary.problems)


def test_certification_by_a_provenance_signature(rulebook: Rulebook) -> None:
    """(issue 15) convention "provenance": the plan is certified by the signatures of the
    Provenances targeting it (by a Practitioner or PractitionerRole), the first the
    certification, the latest a recertification; its author alone does not certify it."""
    from dataclasses import replace

    cert = replace(rulebook.clocks.certification, convention="provenance")
    book = replace(rulebook, clocks=replace(rulebook.clocks, certification=cert))
    ctx = context()
    plan = next(r for r in ctx if r["resourceType"] == "CarePlan")
    plan["period"] = {"start": "2025-10-01"}

    def signed(pid: str, when: str, who: str) -> dict[str, Any]:
        return {"resourceType": "Provenance", "id": pid, "recorded": f"{when}T10:00:00Z",
                "target": [{"reference": f"CarePlan/{plan['id']}"}],
                "agent": [{"who": {"reference": who}}],
                "signature": [{"type": [{"system": "urn:iso-astm:E1762-95:2013",
                                         "code": "1.2.840.10065.1.12.1.1"}],
                               "when": f"{when}T10:00:00Z", "who": {"reference": who},
                               "data": "c2lnbmVk"}]}  # fmt: skip

    proc = procedure("a", "97110", at("09:00"), at("09:30"))
    doctors = [{"resourceType": "Practitioner", "id": i} for i in ("md", "md2")]
    ctx += doctors
    (d,) = decide(book, *ctx, proc)
    assert "plan-uncertified" in codes(d)  # the author is not a signature here
    # certified 2025-10-01 (over 90 days before 2026-03-02), recertified 2026-02-20: nothing due
    first = signed("s1", "2025-10-01", "Practitioner/md")
    again = signed("s2", "2026-02-20", "Practitioner/md2")
    by_org = signed("s3", "2026-03-01", "Organization/clinic")  # no physician's signature
    (d,) = decide(book, *ctx, proc, first, again, by_org)
    assert not {"plan-uncertified", "plan-recertification-due"} & codes(d)
    (d,) = decide(book, *ctx, proc, first, by_org)
    assert "plan-recertification-due" in codes(d)
    # (review) the therapist's own signature, or one by a practitioner the input lacks, is no
    # physician's certification
    by_pt = signed("s4", "2026-02-20", "PractitionerRole/r-pt")
    unknown = signed("s5", "2026-02-20", "Practitioner/nobody")
    (d,) = decide(book, *ctx, proc, first, by_pt, unknown)
    assert "plan-recertification-due" in codes(d)
