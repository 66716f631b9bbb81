"""The resources the adapter writes (README "Output conventions")."""

from __future__ import annotations

import json
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adapter import Rulebook, evaluate_bundle, load_rulebook
from adapter.fhir import codes
from adapter.fhir.validate import validation_errors

from .make import GOOD, NAME, at, bundle, context, procedure


@pytest.fixture(scope="module")
def rulebook() -> Rulebook:
    return load_rulebook()


CHICAGO = ZoneInfo("America/Chicago")


def day_bundle(**kw: Any) -> dict[str, Any]:
    return bundle(
        *context(),
        procedure("a", "97530", at("09:00"), at("09:30")),
        procedure("b", "97116", at("09:30"), at("09:45"), "PractitionerRole/r-pta"),
        procedure("c", "97112", at("10:00"), at("10:20"), note="vague"),
        **kw,
    )


def by_type(out: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in out["entry"] if e["resource"]["resourceType"] == kind]


def test_every_resource_validates_and_uses_conditional_updates(rulebook: Rulebook) -> None:
    out, _ = evaluate_bundle(day_bundle(), rulebook)
    assert out["type"] == "transaction" and validation_errors(out) == []
    kinds = [e["resource"]["resourceType"] for e in out["entry"]]
    assert kinds == ["ChargeItem"] * 3 + ["Claim", "Communication", "Communication", "Provenance"]
    for e in out["entry"]:
        assert validation_errors(e["resource"]) == [], e["resource"]["resourceType"]
        assert e["fullUrl"].startswith("urn:uuid:")
        kind = e["resource"]["resourceType"]
        if kind == "Provenance":
            tag = e["resource"]["meta"]["tag"][0]
            query = f"_tag={tag['system']}|{tag['code']}"
        else:
            ident = e["resource"]["identifier"][0]
            query = f"identifier={ident['system']}|{ident['value']}"
        assert e["request"] == {"method": "POST", "url": kind, "ifNoneExist": query}


def test_update_mode_uses_conditional_updates(rulebook: Rulebook) -> None:
    from adapter.fhir.build import BuildOptions
    from adapter.pipeline import Options
    from adapter.replay import evaluate_bundle as full

    out, _, _ = full(day_bundle(), rulebook, Options(build=BuildOptions(write_mode="update")))
    for e in out["entry"]:
        assert e["request"]["method"] == "PUT"
        assert e["request"]["url"].startswith(e["resource"]["resourceType"] + "?")


def test_charge_items_carry_units_modifiers_and_their_sources(rulebook: Rulebook) -> None:
    out, (_d,) = evaluate_bundle(day_bundle(), rulebook)
    items = {ci["code"]["coding"][0]["code"]: ci for ci in by_type(out, "ChargeItem")}
    b = items["97116"]
    mods = [x["valueCoding"]["code"] for x in b["extension"] if x["url"] == codes.EXT_MODIFIER]
    assert mods == ["GP", "CQ", "XU"]
    assert b["quantity"]["value"] == 1 and b["status"] == "billable"
    assert b["service"] == [{"reference": "Procedure/b"}]
    assert b["context"] == {"reference": "Encounter/e1"}
    assert b["occurrencePeriod"] == {"start": at("09:30"), "end": at("09:45")}
    refs = [x["valueString"] for x in b["extension"] if x["url"] == codes.EXT_RULE_REF]
    assert "ncci:97530/97116" in refs and "payer:medicare" in refs
    version = [x["valueString"] for x in b["extension"] if x["url"] == codes.EXT_RULEBOOK]
    assert version == [rulebook.version]
    assert "XU" in b["note"][0]["text"]


def test_claim_has_one_item_per_line_in_modifier_order(rulebook: Rulebook) -> None:
    out, (d,) = evaluate_bundle(day_bundle(), rulebook)
    (claim,) = by_type(out, "Claim")
    assert (claim["status"], claim["use"]) == ("draft", "claim")
    assert claim["insurance"][0]["coverage"] == {"reference": "Coverage/cov-p1"}
    assert claim["created"] == "2026-03-02"
    items = [
        (i["productOrService"]["coding"][0]["code"], i["quantity"]["value"],
         [m["coding"][0]["code"] for m in i.get("modifier", [])])
        for i in claim["item"]
    ]  # fmt: skip
    assert items == [(ln.code, ln.units, list(ln.modifiers)) for ln in d.lines]
    assert all(i["servicedDate"] == "2026-03-02" for i in claim["item"])
    assert claim["diagnosis"][0]["diagnosisCodeableConcept"]["coding"][0]["code"] == "M17.11"
    team = [t["provider"]["reference"] for t in claim["careTeam"]
            if t["role"]["coding"][0]["code"] != "referring"]  # the plan's certifier  # fmt: skip
    assert set(team) == {"Practitioner/pt", "Practitioner/pta"}


def test_communication_goes_to_the_performer_with_coded_findings(rulebook: Rulebook) -> None:
    out, _ = evaluate_bundle(day_bundle(), rulebook)
    comms = by_type(out, "Communication")
    (billing,) = [c for c in comms if c["identifier"][0]["value"].endswith(":billing")]
    (comm,) = [c for c in comms if c is not billing]
    assert "recipient" not in billing  # billing-office queue: no billing_recipient configured
    assert {c["coding"][0]["code"] for c in billing["reasonCode"]} == {"kx-spend-unknown"}
    assert comm["recipient"] == [{"reference": "Practitioner/pt"}]
    assert comm["about"] == [{"reference": "Procedure/c"}, {"reference": "Encounter/e1"}]
    assert comm["category"][0]["coding"][0]["code"] == "alert"
    reason = {c["coding"][0]["code"] for c in comm["reasonCode"]}
    assert reason == {"note-vague"}  # kx-spend-unknown is for billing, not the clinician
    assert all(c["coding"][0]["system"] == codes.CS_FINDING for c in comm["reasonCode"])


def test_billing_findings_go_to_a_configured_billing_recipient(rulebook: Rulebook) -> None:
    out, _ = evaluate_bundle(day_bundle(), rulebook, billing_recipient="Organization/billing")
    comms = by_type(out, "Communication")
    billing = [c for c in comms if c["recipient"] == [{"reference": "Organization/billing"}]]
    assert len(billing) == 1
    assert {c["coding"][0]["code"] for c in billing[0]["reasonCode"]} == {"kx-spend-unknown"}


def test_provenance_explains_and_targets_everything_written(rulebook: Rulebook) -> None:
    out, (d,) = evaluate_bundle(day_bundle(), rulebook)
    (prov,) = by_type(out, "Provenance")
    written = [e["fullUrl"] for e in out["entry"] if e["resource"]["resourceType"] != "Provenance"]
    assert [t["reference"] for t in prov["target"]] == written
    assert "CMS total-time" in prov["text"]["div"]
    sources = [e for e in prov["entity"] if e["role"] == "source"]
    assert {e["what"]["reference"] for e in sources} == {
        "Procedure/a", "Procedure/b", "Procedure/c"
    }  # fmt: skip
    # the rulebook the numbers came from, and the adapter itself as a Device agent
    (rules,) = [e for e in prov["entity"] if e["role"] == "derivation"]
    assert rules["what"]["identifier"] == {"system": codes.ID_RULEBOOK,
                                           "value": d.rulebook_version}  # fmt: skip
    (agent,) = prov["agent"]
    assert (
        agent["who"]["type"] == "Device" and agent["who"]["identifier"]["system"] == codes.ID_DEVICE
    )
    assert prov["policy"] == [f"urn:therapy-charge-adapter:rulebook:{d.rulebook_version}"]


def test_output_holds_no_names_birth_dates_or_note_text(rulebook: Rulebook) -> None:
    out, _ = evaluate_bundle(day_bundle(), rulebook)
    text = json.dumps(out)
    assert NAME not in text and "1941-02-03" not in text and GOOD not in text


def test_same_input_same_bytes_and_identifiers_stable(rulebook: Rulebook) -> None:
    first, _ = evaluate_bundle(day_bundle(), rulebook)
    second, _ = evaluate_bundle(day_bundle(), rulebook)
    assert json.dumps(first) == json.dumps(second)
    values = [e["request"]["ifNoneExist"] for e in first["entry"]]
    assert len(values) == len(set(values))


def test_nothing_written_for_a_day_without_findings_or_lines(rulebook: Rulebook) -> None:
    out, ds = evaluate_bundle(
        bundle(*context(), procedure("a", "97112", at("09:00"), at("09:30"), status="not-done")),
        rulebook,
    )
    assert out["entry"] == [] and ds == []


def test_claim_says_who_did_what_where_and_which_diagnosis_leads(rulebook: Rulebook) -> None:
    """careTeam roles (the PTA's line is an assistant's), principal diagnosis first, place of
    service from the site when the encounter does not say, and a site billing provider."""
    from adapter.fhir.build import BuildOptions
    from adapter.pipeline import Options
    from adapter.replay import evaluate_bundle as full

    site = BuildOptions(billing_provider="Organization/clinic", place_of_service="22")
    out, _, _ = full(day_bundle(), rulebook, Options(build=site))
    (claim,) = by_type(out, "Claim")
    roles = {t["provider"]["reference"]: t["role"]["coding"][0]["code"] for t in claim["careTeam"]}
    assert roles["Practitioner/pta"] == "assist"
    assert roles["Practitioner/pt"] == "primary"
    assert claim["provider"] == {"reference": "Organization/clinic"}
    assert {i["locationCodeableConcept"]["coding"][0]["code"] for i in claim["item"]} == {"22"}
    for d in claim.get("diagnosis", []):
        want = "principal" if d["sequence"] == 1 else "clinical"
        assert d["type"][0]["coding"][0] == {"system": codes.DIAGNOSIS_TYPE, "code": want}
    assert claim["created"] >= "2026-03-02"


def test_a_home_visit_is_place_of_service_12(rulebook: Rulebook) -> None:
    resources = day_bundle()
    for e in resources["entry"]:
        if e["resource"]["resourceType"] == "Encounter":
            e["resource"]["class"] = {"code": "HH"}
    out, _ = evaluate_bundle(resources, rulebook)
    (claim,) = by_type(out, "Claim")
    assert {i["locationCodeableConcept"]["coding"][0]["code"] for i in claim["item"]} == {"12"}
    out, _ = evaluate_bundle(day_bundle(), rulebook)  # ambulatory, no site setting: not written
    (claim,) = by_type(out, "Claim")
    assert all("locationCodeableConcept" not in i for i in claim["item"])


def test_claim_created_is_the_shells_clock_in_the_site_zone(rulebook: Rulebook) -> None:
    from datetime import UTC, datetime

    from adapter.pipeline import Options
    from adapter.replay import evaluate_bundle as full

    one, _ = evaluate_bundle(day_bundle(), rulebook, evaluated_at=datetime(2026, 3, 3, tzinfo=UTC))
    two, _ = evaluate_bundle(day_bundle(), rulebook, evaluated_at=datetime(2027, 1, 1, tzinfo=UTC))
    (a,), (b,) = by_type(one, "Claim"), by_type(two, "Claim")
    assert (a.pop("created"), b.pop("created")) == ("2026-03-03", "2027-01-01")
    assert a == b  # nothing else depends on the clock
    # 03:00Z on 4 March is still 3 March in Chicago
    late = datetime(2026, 3, 4, 3, 0, tzinfo=UTC)
    out, _, _ = full(day_bundle(), rulebook, Options(evaluated_at=late, zone=CHICAGO))
    assert by_type(out, "Claim")[0]["created"] == "2026-03-03"
    # no clock (the library's default): the date of the latest input instant, not before service
    out, _ = evaluate_bundle(day_bundle(), rulebook)
    assert by_type(out, "Claim")[0]["created"] == "2026-03-02"


def test_a_site_modifier_extension_url(rulebook: Rulebook) -> None:
    from adapter.fhir.build import BuildOptions
    from adapter.pipeline import Options
    from adapter.replay import evaluate_bundle as full

    url = "https://fhir.example.org/StructureDefinition/charge-modifier"
    out, _, _ = full(day_bundle(), rulebook, Options(build=BuildOptions(modifier_extension=url)))
    urls = {x["url"] for c in by_type(out, "ChargeItem") for x in c.get("extension", [])}
    assert url in urls and codes.EXT_MODIFIER not in urls


def test_the_supervising_therapist_of_an_assistants_line_is_on_the_care_team(
    rulebook: Rulebook,
) -> None:
    """A PTA alone with the PT on the encounter: the PT is the line's supervisor (the 837P's
    supervising provider), the PTA its assistant; the item names both."""
    only_pta = bundle(
        *context(), procedure("b", "97110", at("09:30"), at("10:00"), "PractitionerRole/r-pta")
    )
    out, _ = evaluate_bundle(only_pta, rulebook)
    (claim,) = by_type(out, "Claim")
    roles = {t["provider"]["reference"]: (t["sequence"], t["role"]["coding"][0]["code"])
             for t in claim["careTeam"]
             if t["provider"]["reference"] != "Practitioner/md"}  # fmt: skip
    assert {k: v[1] for k, v in roles.items()} == {
        "Practitioner/pta": "assist", "Practitioner/pt": "supervisor"
    }  # fmt: skip
    (item,) = claim["item"]
    assert item["careTeamSequence"] == [roles["Practitioner/pta"][0], roles["Practitioner/pt"][0]]


def test_the_charge_item_price_is_the_lines_total(rulebook: Rulebook) -> None:
    """(review) R4 ChargeItem.priceOverride is the total price of the charge: units x unit
    price, as the Claim item's net."""
    out, _ = evaluate_bundle(day_bundle(), rulebook)
    (claim,) = by_type(out, "Claim")
    nets = {i["productOrService"]["coding"][0]["code"]: i["net"] for i in claim["item"]}
    for item in by_type(out, "ChargeItem"):
        assert item["priceOverride"] == nets[item["code"]["coding"][0]["code"]]


def test_the_plans_certifying_physician_is_the_referring_provider(rulebook: Rulebook) -> None:
    """(issue 15) the CarePlan's author, the physician who certified the plan of care, is on the
    Claim's care team as the referring provider (837P loop 2310A), on no item."""
    resources = day_bundle()
    npi = {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1999999992"}
    md = {"resourceType": "Practitioner", "id": "md", "identifier": [npi]}
    for e in resources["entry"]:
        if e["resource"]["resourceType"] == "CarePlan":
            e["resource"]["author"] = {"reference": "Practitioner/md"}
    resources["entry"].append(
        {"fullUrl": "http://emr.example/fhir/Practitioner/md", "resource": md}
    )
    out, _ = evaluate_bundle(resources, rulebook)
    (claim,) = by_type(out, "Claim")
    (ref,) = [t for t in claim["careTeam"] if t["role"]["coding"][0]["code"] == "referring"]
    assert ref["provider"] == {"reference": "Practitioner/md"}
    assert ref["role"]["coding"][0]["system"] == codes.CARE_TEAM_ROLE_C4BB
    assert all(ref["sequence"] not in i.get("careTeamSequence", []) for i in claim["item"])
