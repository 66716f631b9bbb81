"""The write-back plan (``adapter.fhir.diff``) over plain dicts, without a FHIR server.

``desired`` entries come from evaluating fixture bundles; what the server holds is simulated by
``Server``, which applies transaction entries the way a FHIR R4 server does (ids, versionIds,
conditional creates, If-Match, urn:uuid references resolved to ``Type/id``)."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.domain import PatientDay
from adapter.errors import FatalServerError
from adapter.fhir import codes
from adapter.fhir.build import day_tag
from adapter.fhir.diff import (
    KINDS,
    VOIDED_DRAFT,
    ForeignAnswer,
    WriteResult,
    existing_from,
    existing_searches,
    plan,
)
from adapter.mappings import load_rulebook
from adapter.pipeline import Options
from adapter.replay import evaluate_bundle

from .make import GOOD, at, bundle, context, procedure

Resource = dict[str, Any]

RULEBOOK = load_rulebook()
NOW = datetime(2026, 11, 23, tzinfo=UTC)
DAY = PatientDay.of("Patient/p1", "2026-03-02")
KEY = DAY.key  # "p1:2026-03-02"
BILLING = "Organization/billing-office"
OPTIONS = Options(evaluated_at=NOW)

A = procedure("a", "97112", at("09:00"), at("09:24"))
B = procedure("b", "97110", at("09:24"), at("09:47"))
C = procedure("c", "97116", at("10:00"), at("10:20"), "PractitionerRole/r-pta", note="vague")


class Conflict(Exception):
    """What a server answers (412) to a PUT whose If-Match is not the current version."""


class Server:
    """What the target server holds: resources by ``Type/id``, written by transactions."""

    def __init__(self) -> None:
        self.resources: dict[str, Resource] = {}
        self._next = 0

    def apply(self, entries: Sequence[Resource]) -> None:
        """Apply one transaction: conditional creates first get their ids (or the id of the
        match), then every ``urn:uuid`` reference is resolved, then all is stored at once."""
        urls: dict[str, str] = {}
        staged: list[tuple[str, Resource, Resource | None]] = []
        for entry in entries:
            request, resource = entry["request"], copy.deepcopy(entry["resource"])
            kind = resource["resourceType"]
            if request["method"] == "POST":
                assert request["url"] == kind and "ifNoneExist" in request
                match = self.search(kind, request["ifNoneExist"])
                if match:
                    urls[entry["fullUrl"]] = f"{kind}/{match[0]['id']}"
                    continue
                self._next += 1
                key = f"{kind}/{kind.lower()}-{self._next}"
                urls[entry["fullUrl"]] = key
                staged.append((key, resource, None))
            else:
                assert request["method"] == "PUT"
                key = request["url"]
                current = self.resources[key]
                assert resource["id"] == key.split("/")[1]
                if "ifMatch" in request and request["ifMatch"] != f'W/"{version(current)}"':
                    raise Conflict(f"{key}: {request['ifMatch']} is not {version(current)}")
                staged.append((key, resource, current))
        for key, resource, current in staged:
            stored = resolve(resource, urls)
            stored["id"] = key.split("/")[1]
            stored["meta"] = {
                **stored.get("meta", {}),
                "versionId": str(int(version(current)) + 1) if current else "1",
                "lastUpdated": "2026-11-23T12:00:00Z",
            }
            self.resources[key] = stored

    def search(self, kind: str, query: str) -> list[Resource]:
        """``identifier=system|value`` or ``_tag=system|code`` on one resource type."""
        name, _, token = query.partition("=")
        system, _, value = token.partition("|")
        field = {"identifier": "identifier", "_tag": "tag"}[name]
        found = []
        for r in self.resources.values():
            values = r.get("identifier", []) if field == "identifier" else r["meta"].get("tag", [])
            key = "value" if field == "identifier" else "code"
            if r["resourceType"] == kind and any(
                v.get("system") == system and v.get(key) == value for v in values
            ):
                found.append(copy.deepcopy(r))
        return found

    def existing(self, day: PatientDay = DAY) -> dict[str, list[Resource]]:
        """Answers to ``existing_searches`` (a batch), read back with ``existing_from``."""
        answers = [self.search(kind, f"_tag={dict(params)['_tag']}") for kind, params in
                   existing_searches(day)]  # fmt: skip
        return existing_from(answers, day)

    def edit(self, key: str, **changes: Any) -> None:
        """Someone else (the billing office) changes a stored resource: a new version."""
        current = self.resources[key]
        meta = {**current["meta"], "versionId": str(int(version(current)) + 1)}
        self.resources[key] = {**current, **changes, "meta": meta}

    def one(self, kind: str, value: str) -> Resource:
        """The one stored resource with the adapter's identifier ``value``."""
        (found,) = [
            r
            for r in self.resources.values()
            if r["resourceType"] == kind and value in ident_values(r)
        ]
        return found

    def key(self, kind: str, value: str) -> str:
        return f"{kind}/{self.one(kind, value)['id']}"

    def of_kind(self, kind: str) -> list[Resource]:
        return [r for r in self.resources.values() if r["resourceType"] == kind]


def version(resource: Resource | None) -> str:
    assert resource is not None
    return str(resource["meta"]["versionId"])


def resolve(value: Any, urls: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            k: urls.get(v, v) if k == "reference" and isinstance(v, str) else resolve(v, urls)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [resolve(v, urls) for v in value]
    return value


def ident_values(resource: Resource) -> list[str]:
    return [str(i["value"]) for i in resource.get("identifier", [])]


def identity(resource: Resource) -> str:
    """How ``WriteResult`` names a resource: ``Type|identifier value`` (Provenance: the type)."""
    kind = resource["resourceType"]
    return kind if kind == "Provenance" else f"{kind}|{resource['identifier'][0]['value']}"


def charge(code: str, who: str = "T") -> str:
    """The business identifier value of the day's ChargeItem for a PT ``code``."""
    return f"{KEY}:{code}:PT:{who}"


def content(resource: Resource) -> Resource:
    return {k: v for k, v in resource.items() if k not in ("id", "meta", "text")}


def desired(*procedures: Resource) -> list[Resource]:
    """The transaction entries the day should have, built from a fixture bundle."""
    out, _, _ = evaluate_bundle(bundle(*context(), *procedures), RULEBOOK, OPTIONS)
    entries: list[Resource] = out["entry"]
    return entries


def make_plan(
    entries: Sequence[Resource], server: Server, recipient: str | None = None
) -> tuple[list[Resource], WriteResult]:
    return plan(entries, server.existing(), day=DAY, correction_recipient=recipient)


def written(entries: Sequence[Resource]) -> Server:
    """A server holding what the adapter wrote for ``entries`` on a first sync."""
    server = Server()
    server.apply(make_plan(entries, server)[0])
    return server


def requests(entries: Sequence[Resource]) -> list[tuple[str, str]]:
    return [(e["request"]["method"], e["request"]["url"]) for e in entries]


def with_value(entries: Sequence[Resource], value: str) -> Resource:
    """The entry whose resource has the adapter's identifier ``value``."""
    (found,) = [e for e in entries if value in ident_values(e["resource"])]
    return found


def entry_for(entries: Sequence[Resource], url: str) -> Resource:
    (found,) = [e for e in entries if e["request"]["url"] == url]
    return found


def untimed(p: Resource) -> Resource:
    """The procedure documented without a time: held, so it bills nothing."""
    return {k: v for k, v in p.items() if k != "performedPeriod"}


def longer(p: Resource, end: str) -> Resource:
    return {**p, "performedPeriod": {**p["performedPeriod"], "end": end}}


def texts(resource: Resource) -> list[str]:
    return [p["contentString"] for p in resource["payload"]]


# -- 1. nothing written before ------------------------------------------------------------------
@pytest.mark.parametrize(
    "existing", [{}, existing_from([], DAY), existing_from([[]] * len(KINDS), DAY)]
)
def test_nothing_written_before_creates_everything_provenance_last(
    existing: dict[str, list[Resource]],
) -> None:
    day = desired(A, B, C)
    entries, result = plan(day, existing, day=DAY, correction_recipient=BILLING)
    assert entries == day  # the builder's conditional creates, unchanged
    assert all(
        e["request"]["method"] == "POST" and e["request"]["ifNoneExist"].startswith("identifier=")
        for e in entries[:-1]
    )
    provenance = entries[-1]
    assert provenance["resource"]["resourceType"] == "Provenance"
    assert provenance["request"] == {
        "method": "POST",
        "url": "Provenance",
        "ifNoneExist": f"_tag={codes.CS_PATIENT_DAY}|{KEY}",
    }
    assert provenance["resource"]["target"] == [{"reference": e["fullUrl"]} for e in entries[:-1]]
    assert result.created == [
        f"ChargeItem|{charge('97110')}",
        f"ChargeItem|{charge('97112')}",
        f"ChargeItem|{charge('97116', 'A')}",
        f"Claim|{KEY}",
        f"Communication|{KEY}:pta",
        f"Communication|{KEY}:billing",
    ]
    assert (result.updated, result.unchanged, result.voided) == ([], [], [])
    assert result.changed and not result.claim_locked


def test_a_day_with_nothing_to_write_plans_nothing() -> None:
    entries, result = plan([], {}, day=DAY, correction_recipient=None)
    assert entries == [] and result == WriteResult() and not result.changed


# -- 2. the same desired state again ------------------------------------------------------------
def test_the_same_desired_state_again_writes_nothing() -> None:
    first = desired(A, B, C)
    server = written(first)
    entries, result = make_plan(desired(A, B, C), server)  # evaluated afresh: same bytes
    assert entries == []  # not even a Provenance
    assert result.unchanged == [identity(e["resource"]) for e in first[:-1]]
    assert (result.created, result.updated, result.voided) == ([], [], [])
    assert not result.changed and not result.claim_locked


# -- 3. one ChargeItem's content changed --------------------------------------------------------
def test_one_changed_charge_item_is_put_in_place_with_if_match() -> None:
    server = written(desired(A, B))
    target = server.key("ChargeItem", charge("97110"))
    server.edit(target)  # a later version on the server: If-Match must name the current one
    day = desired(A, B)
    changed = with_value(day, charge("97110"))
    changed["resource"]["quantity"] = {"value": 3}
    provenance = server.of_kind("Provenance")[0]

    entries, result = make_plan(day, server)
    assert requests(entries) == [("PUT", target), ("PUT", f"Provenance/{provenance['id']}")]
    put = entries[0]
    assert put["request"]["ifMatch"] == 'W/"2"'
    assert put["resource"] == {**changed["resource"], "id": target.split("/")[1]}
    assert "fullUrl" not in put  # other entries refer to it by Type/id
    assert entries[1]["request"]["ifMatch"] == f'W/"{version(provenance)}"'
    assert entries[1]["resource"]["target"] == [{"reference": target}]
    assert "urn:uuid:" not in json.dumps(entries)
    assert result.updated == [f"ChargeItem|{charge('97110')}"]
    assert result.unchanged == [f"ChargeItem|{charge('97112')}", f"Claim|{KEY}",
                                f"Communication|{KEY}:billing"]  # fmt: skip
    assert result.changed and result.created == [] and result.voided == []

    server.apply(entries)
    assert server.one("ChargeItem", charge("97110"))["quantity"] == {"value": 3}
    assert version(server.resources[target]) == "3"
    assert len(server.of_kind("ChargeItem")) == 2  # updated in place, never duplicated
    assert make_plan(day, server)[0] == []


def test_existing_resources_are_referred_to_by_id_and_new_ones_by_urn() -> None:
    """A new line: its ChargeItem is created; the draft Claim is rewritten, referring to the
    ChargeItems that exist by ``Type/id`` and to the new one by its ``urn:uuid``."""
    server = written(desired(A, B))
    d = procedure("d", "97530", at("11:00"), at("11:30"))
    day = desired(A, B, d)
    new = with_value(day, charge("97530"))
    old = {code: server.key("ChargeItem", charge(code)) for code in ("97110", "97112")}
    claim = server.key("Claim", KEY)

    billing = server.key("Communication", f"{KEY}:billing")
    entries, result = make_plan(day, server)
    # the total minutes changed, so every line's explanation (note) changed too, and the
    # billing office's message is now also about Procedure/d
    assert requests(entries) == [
        ("PUT", old["97110"]),
        ("PUT", old["97112"]),
        ("POST", "ChargeItem"),
        ("PUT", claim),
        ("PUT", billing),
        ("PUT", f"Provenance/{server.of_kind('Provenance')[0]['id']}"),
    ]
    assert entries[2] == new
    links = [
        i["extension"][0]["valueReference"]["reference"]
        for i in entry_for(entries, claim)["resource"]["item"]
    ]
    assert links == [old["97110"], old["97112"], new["fullUrl"]]
    assert entries[-1]["resource"]["target"] == [
        {"reference": r} for r in (old["97110"], old["97112"], new["fullUrl"], claim, billing)
    ]
    assert result.created == [f"ChargeItem|{charge('97530')}"]
    assert result.updated == [f"ChargeItem|{charge('97110')}", f"ChargeItem|{charge('97112')}",
                              f"Claim|{KEY}", f"Communication|{KEY}:billing"]  # fmt: skip

    server.apply(entries)
    stored = server.one("Claim", KEY)
    links = [i["extension"][0]["valueReference"]["reference"] for i in stored["item"]]
    assert links == [*old.values(), server.key("ChargeItem", charge("97530"))]
    assert make_plan(day, server)[0] == []


def test_the_provenance_is_created_when_the_server_has_none() -> None:
    server = written(desired(A, B))
    (provenance,) = server.of_kind("Provenance")
    del server.resources[f"Provenance/{provenance['id']}"]
    assert make_plan(desired(A, B), server)[0] == []  # written only when something else is

    day = desired(A, B)
    changed = with_value(day, charge("97112"))
    changed["resource"]["quantity"] = {"value": 1}
    entries, _ = make_plan(day, server)
    assert requests(entries) == [
        ("PUT", server.key("ChargeItem", charge("97112"))),
        ("POST", "Provenance"),
    ]
    assert entries[-1]["request"] == day[-1]["request"]
    assert entries[-1]["fullUrl"] == day[-1]["fullUrl"]
    assert entries[-1]["resource"]["target"] == [
        {"reference": server.key("ChargeItem", charge("97112"))}
    ]


def test_if_match_guards_against_a_change_since_the_read() -> None:
    server = written(desired(A, B))
    read = server.existing()
    key = server.key("ChargeItem", charge("97110"))
    server.edit(key, status="billed")  # someone else writes between the read and the write
    day = desired(A, B)
    with_value(day, charge("97110"))["resource"]["quantity"] = {"value": 3}
    entries, _ = plan(day, read, day=DAY, correction_recipient=None)
    assert entry_for(entries, key)["request"]["ifMatch"] == 'W/"1"'
    with pytest.raises(Conflict):
        server.apply(entries)
    assert server.resources[key]["status"] == "billed"  # nothing written


def test_a_resource_without_a_version_is_put_without_if_match() -> None:
    server = written(desired(A, B))
    key = server.key("ChargeItem", charge("97110"))
    del server.resources[key]["meta"]["versionId"]
    day = desired(A, B)
    with_value(day, charge("97110"))["resource"]["status"] = "not-billable"
    put = entry_for(make_plan(day, server)[0], key)
    assert put["request"] == {"method": "PUT", "url": key}


# -- 4. a ChargeItem no longer desired ----------------------------------------------------------
def test_a_charge_item_no_longer_billable_is_voided() -> None:
    server = written(desired(A, B))
    key = server.key("ChargeItem", charge("97110"))
    before = copy.deepcopy(server.resources[key])

    day = desired(A, {**B, "status": "entered-in-error"})
    entries, result = make_plan(day, server)
    void = entry_for(entries, key)
    assert void["resource"] == {**before, "status": "entered-in-error"}
    assert void["request"] == {"method": "PUT", "url": key, "ifMatch": 'W/"1"'}
    assert result.voided == [f"ChargeItem|{charge('97110')}"]
    assert result.changed
    assert {"reference": key} in entries[-1]["resource"]["target"]

    server.apply(entries)
    assert server.resources[key]["status"] == "entered-in-error"
    assert len(server.of_kind("ChargeItem")) == 2
    again, result = make_plan(day, server)
    assert again == [] and result.voided == []  # voided once


@pytest.mark.parametrize("status", ["entered-in-error", "cancelled"])
def test_a_charge_item_already_void_is_left_alone(status: str) -> None:
    server = written(desired(A, B))
    key = server.key("ChargeItem", charge("97110"))
    server.edit(key, status=status)
    entries, result = make_plan(desired(A, {**B, "status": "entered-in-error"}), server)
    assert entries  # the rest of the day changed (97112's note, the Claim)
    assert key not in [e["request"]["url"] for e in entries]
    assert {"reference": key} not in entries[-1]["resource"]["target"]
    assert result.voided == []


# -- 5. Claims ----------------------------------------------------------------------------------
def test_a_draft_claim_with_no_lines_left_is_voided() -> None:
    server = written(desired(A, B))
    claim = server.key("Claim", KEY)
    before = copy.deepcopy(server.resources[claim])
    day = desired(untimed(A), untimed(B))  # held for the missing times: nothing bills
    assert [e["resource"]["resourceType"] for e in day] == ["Communication", "Provenance"]

    entries, result = make_plan(day, server)
    void = entry_for(entries, claim)
    marked = [*before.get("extension", []), VOIDED_DRAFT]  # the adapter's own void of a draft
    assert void["resource"] == {**before, "status": "entered-in-error", "extension": marked}
    assert void["request"]["ifMatch"] == 'W/"1"'
    assert result.voided == [f"ChargeItem|{charge('97110')}", f"ChargeItem|{charge('97112')}",
                             f"Claim|{KEY}"]  # fmt: skip
    assert not result.claim_locked
    assert {"reference": claim} in entries[-1]["resource"]["target"]

    server.apply(entries)
    assert {r["status"] for r in server.of_kind("ChargeItem")} == {"entered-in-error"}
    assert server.resources[claim]["status"] == "entered-in-error"
    assert make_plan(day, server)[0] == []


def submitted(server: Server) -> str:
    """The billing office submits the day's Claim: it is past draft."""
    key = server.key("Claim", KEY)
    server.edit(key, status="active")
    return key


def corrections(entries: Sequence[Resource]) -> list[Resource]:
    return [
        e
        for e in entries
        if e["resource"]["resourceType"] == "Communication"
        and any(":claim-correction:" in v for v in ident_values(e["resource"]))
    ]


def test_a_claim_past_draft_is_never_rewritten_a_correction_is_requested() -> None:
    server = written(desired(A, B))
    claim = submitted(server)
    before = copy.deepcopy(server.resources[claim])
    day = desired(A, longer(B, at("10:02")))  # 97110 23 -> 38 min: 62 min, 4 units

    entries, result = make_plan(day, server, recipient=BILLING)
    assert claim not in [e["request"]["url"] for e in entries]
    (correction,) = corrections(entries)
    (value,) = ident_values(correction["resource"])
    assert re.fullmatch(rf"{re.escape(KEY)}:claim-correction:[0-9a-f]+", value)
    assert correction["request"] == {
        "method": "POST",
        "url": "Communication",
        "ifNoneExist": f"identifier={codes.ID_COMMUNICATION}|{value}",
    }
    body = correction["resource"]
    assert body["identifier"] == [{"system": codes.ID_COMMUNICATION, "value": value}]
    assert body["about"] == [{"reference": claim}]
    assert body["subject"] == {"reference": "Patient/p1"}
    assert body["recipient"] == [{"reference": BILLING}]
    assert body["meta"]["tag"] == [{"system": codes.CS_PATIENT_DAY, "code": KEY}]
    (text,) = texts(body)
    assert f"{claim} is already active and is not rewritten" in text
    assert "the day now bills 97110 x2 GP, 97112 x2 GP" in text
    assert "Submit a corrected claim" in text
    assert result.claim_locked and result.changed
    assert result.created == ["Communication|claim-correction"]
    assert f"Claim|{KEY}" not in result.updated + result.voided + result.unchanged
    assert {"reference": correction["fullUrl"]} in entries[-1]["resource"]["target"]

    # deterministic: the same input twice asks for the same correction (one message)
    assert make_plan(desired(A, longer(B, at("10:02"))), server, recipient=BILLING)[0] == entries
    # a different billing asks for a different one
    (other,) = corrections(make_plan(desired(A), server, recipient=BILLING)[0])
    assert ident_values(other["resource"]) != [value]
    assert "the day now bills 97112 x2 GP." in texts(other["resource"])[0]

    server.apply(entries)
    assert server.resources[claim] == before  # never rewritten
    assert server.one("Communication", value)["about"] == [{"reference": claim}]
    assert server.one("ChargeItem", charge("97110"))["quantity"] == {"value": 2}


def test_a_correction_without_a_recipient_is_unaddressed() -> None:
    server = written(desired(A, B))
    submitted(server)
    (correction,) = corrections(make_plan(desired(A), server, recipient=None)[0])
    assert "recipient" not in correction["resource"]


def test_a_claim_past_draft_with_no_lines_left_gets_a_no_billable_lines_correction() -> None:
    server = written(desired(A, B))
    claim = submitted(server)
    entries, result = make_plan(desired(untimed(A), untimed(B)), server, recipient=BILLING)
    assert claim not in [e["request"]["url"] for e in entries]
    (correction,) = corrections(entries)
    assert correction["resource"]["about"] == [{"reference": claim}]
    (text,) = texts(correction["resource"])
    assert "the day now bills no billable lines" in text and f"{claim} is already active" in text
    assert correction["request"]["ifNoneExist"].startswith(
        f"identifier={codes.ID_COMMUNICATION}|{KEY}:claim-correction:"
    )
    assert result.claim_locked
    assert result.voided == [f"ChargeItem|{charge('97110')}", f"ChargeItem|{charge('97112')}"]


# -- 6. review Communications -------------------------------------------------------------------
def test_a_review_message_whose_findings_are_fixed_says_so_once() -> None:
    server = written(desired(A, B, C))
    key = server.key("Communication", f"{KEY}:pta")
    before = server.resources[key]
    assert before["recipient"] == [{"reference": "Practitioner/pta"}] and "reasonCode" in before
    day = desired(A, B, {**C, "note": [{"text": GOOD}]})
    assert f"{KEY}:pta" not in [v for e in day for v in ident_values(e["resource"])]

    entries, result = make_plan(day, server)
    put = entry_for(entries, key)
    assert put["request"] == {"method": "PUT", "url": key, "ifMatch": 'W/"1"'}
    body = put["resource"]
    assert "reasonCode" not in body
    assert body["category"] == [
        {"coding": [{"system": codes.COMMUNICATION_CATEGORY, "code": "notification"}]}
    ]
    assert (body["status"], body["priority"]) == ("completed", "routine")
    (text,) = texts(body)
    assert "2026-03-02" in text and "nothing left to fix" in text
    for kept in ("identifier", "subject", "recipient", "about"):
        assert body[kept] == before[kept]
    assert f"Communication|{KEY}:pta" in result.updated
    assert f"Communication|{KEY}:pta" not in result.voided
    assert {"reference": key} in entries[-1]["resource"]["target"]

    server.apply(entries)
    again, result = make_plan(day, server)
    assert again == [] and not result.changed  # said once


def test_a_claim_correction_message_is_never_rewritten() -> None:
    server = written(desired(A, B))
    submitted(server)
    server.apply(make_plan(desired(A), server)[0])
    (correction,) = [
        r for r in server.of_kind("Communication") if ":claim-correction:" in ident_values(r)[0]
    ]
    review = server.one("Communication", f"{KEY}:billing")
    # neither is desired any more: the review message is resolved, the correction stays as sent
    entries, result = plan(
        [],
        {"Communication": [correction, review]},
        day=DAY,
        correction_recipient=None,
    )
    assert requests(entries) == [("PUT", f"Communication/{review['id']}")]
    assert result.updated == [f"Communication|{KEY}:billing"]
    entries, result = plan([], {"Communication": [correction]}, day=DAY, correction_recipient=None)
    assert entries == [] and result == WriteResult()


# -- 7. reading what was written ----------------------------------------------------------------
def test_existing_searches_find_the_four_types_by_the_days_tag() -> None:
    tag = f"{codes.CS_PATIENT_DAY}|{KEY}"
    assert existing_searches(DAY) == [
        (kind, [("_tag", tag), ("_count", "200")])
        for kind in ("ChargeItem", "Claim", "Communication", "Provenance")
    ]
    other = existing_searches(PatientDay.of("Patient/p2", "2026-03-03"))
    assert other[0][1][0] == ("_tag", f"{codes.CS_PATIENT_DAY}|p2:2026-03-03")


def _tagged(kind: str, rid: str, day: PatientDay = DAY, **more: Any) -> Resource:
    patient = {"ChargeItem": "subject", "Claim": "patient", "Communication": "subject"}
    return {
        "resourceType": kind,
        "id": rid,
        "meta": {"tag": [day_tag(day)]},
        **({patient[kind]: {"reference": day.patient}} if kind in patient else {}),
        **more,
    }


def test_existing_from_groups_answers_by_type_and_ignores_others() -> None:
    item, claim = _tagged("ChargeItem", "1"), _tagged("Claim", "2")
    note, prov = _tagged("Communication", "3"), _tagged("Provenance", "4")
    outcome = {"resourceType": "OperationOutcome", "issue": []}
    patient = {"resourceType": "Patient", "id": "p1"}
    grouped = existing_from([[item, patient], [claim], [outcome, note, {"id": "x"}], [prov]], DAY)
    assert grouped == {
        "ChargeItem": [item],
        "Claim": [claim],
        "Communication": [note],
        "Provenance": [prov],
    }
    assert existing_from([], DAY) == {kind: [] for kind in KINDS}


OTHER_DAY = PatientDay.of("Patient/p2", DAY.service_date.isoformat())


@pytest.mark.parametrize(
    "foreign",
    [
        # a target that ignores _tag answers with everybody's
        _tagged("ChargeItem", "9", OTHER_DAY),
        _tagged("Claim", "9", OTHER_DAY),
        # untagged, or tagged with the code in another case (a case-insensitive token match)
        {k: v for k, v in _tagged("ChargeItem", "9").items() if k != "meta"},
        _tagged("Provenance", "9") | {"meta": {"tag": [day_tag(DAY) | {"code": DAY.key.upper()}]}},
        _tagged("Communication", "9") | {"meta": {"tag": [{"code": DAY.key}]}},
        # the day's tag on another patient's resource
        _tagged("ChargeItem", "9", subject={"reference": "Patient/p2"}),
        _tagged("Claim", "9") | {"patient": {"display": "no reference"}},
    ],
)
def test_existing_from_refuses_what_is_not_the_days(foreign: Resource) -> None:
    """A resource not tagged for the day, or of another patient, in the answers: the day is
    refused (ForeignAnswer, a FatalServerError: a dead letter), never planned, since whatever is
    not wanted would be voided."""
    with pytest.raises(ForeignAnswer, match="not that day's"):
        existing_from([[_tagged("ChargeItem", "1"), foreign]], DAY)
    assert issubclass(ForeignAnswer, FatalServerError)


# -- 8. properties ------------------------------------------------------------------------------
SLOTS = {
    "a": ("97112", "PractitionerRole/r-pt", "09:00"),
    "b": ("97110", "PractitionerRole/r-pt", "09:30"),
    "c": ("97116", "PractitionerRole/r-pta", "10:00"),
    "d": ("97530", "PractitionerRole/r-pt", "10:30"),
}
STATES = ["absent", "short", "long", "untimed", "not-done"]


@st.composite
def days(draw: st.DrawFn) -> list[Resource]:
    """A version of the day's documentation: each procedure absent, timed (short or long),
    documented without a time or not done, with a good or a vague note."""
    out = []
    for pid, (code, actor, start) in SLOTS.items():
        state = draw(st.sampled_from(STATES))
        if state == "absent":
            continue
        minutes = 12 if state == "short" else 27
        end = f"{start[:3]}{int(start[3:]) + minutes:02d}"
        note = draw(st.sampled_from([GOOD, "vague"]))
        p = procedure(pid, code, at(start), at(end), actor, note=note)
        if state == "untimed":
            p = untimed(p)
        elif state == "not-done":
            p["status"] = "not-done"
        out.append(p)
    return out


def assert_server_holds(server: Server, day: Sequence[Resource]) -> None:
    """The server holds every desired resource (references resolved), once; what the day no
    longer has is void (ChargeItem, draft Claim) or says nothing is left to fix."""
    urls: dict[str, str] = {}
    for e in day:
        r = e["resource"]
        if r["resourceType"] != "Provenance":
            urls[e["fullUrl"]] = server.key(r["resourceType"], r["identifier"][0]["value"])
    wanted = set()
    for e in day:
        r = e["resource"]
        if r["resourceType"] == "Provenance":
            continue
        stored = server.one(r["resourceType"], r["identifier"][0]["value"])
        assert content(stored) == content(resolve(r, urls))
        wanted.add(identity(r))
    identities = [identity(r) for r in server.resources.values()]
    assert len(identities) == len(set(identities))
    assert len(server.of_kind("Provenance")) == (1 if server.resources else 0)
    for r in server.resources.values():
        if identity(r) in wanted or r["resourceType"] == "Provenance":
            continue
        if r["resourceType"] == "Communication":
            assert "nothing left to fix" in texts(r)[0] and "reasonCode" not in r
        else:
            assert r["status"] == "entered-in-error"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(days(), days())
def test_applying_a_plan_then_planning_again_writes_nothing(
    first: list[Resource], second: list[Resource]
) -> None:
    """From nothing, then from any earlier version of the day: one plan brings the server to
    the desired state, and planning the same state again writes nothing (idempotence)."""
    server = Server()
    for procedures in (first, second):
        day = desired(*procedures)
        entries, result = make_plan(day, server)
        assert result.changed == bool(entries)
        server.apply(entries)
        assert_server_holds(server, day)
        again, result = make_plan(day, server)
        assert again == [] and not result.changed
        assert result.unchanged == [identity(e["resource"]) for e in day[:-1]]


# -- claims the adapter voided itself, and claims moved along by the billing system -------------
def test_a_draft_claim_the_adapter_voided_is_replaced_when_lines_return() -> None:
    """Every procedure of a day entered in error, then completed again: the ChargeItems come
    back and so does the Claim, as a new draft (was: the voided draft was taken for a submitted
    claim, stayed entered-in-error for good, and only a correction request was written)."""
    server = written(desired(A, B))
    claim = server.key("Claim", KEY)
    server.apply(make_plan(desired(untimed(A), untimed(B)), server)[0])  # nothing bills
    assert server.resources[claim]["status"] == "entered-in-error"
    entries, result = make_plan(desired(A, B), server)
    assert not result.claim_locked and corrections(entries) == []
    restored = entry_for(entries, claim)
    assert restored["request"]["method"] == "PUT" and restored["resource"]["status"] == "draft"
    assert VOIDED_DRAFT not in restored["resource"].get("extension", [])
    server.apply(entries)
    assert server.resources[claim]["status"] == "draft"
    assert {r["status"] for r in server.of_kind("ChargeItem")} == {"billable"}
    assert make_plan(desired(A, B), server)[0] == []


def test_a_claim_voided_by_someone_else_stays_locked() -> None:
    server = written(desired(A, B))
    claim = server.key("Claim", KEY)
    server.edit(claim, status="entered-in-error")  # not the adapter's own void of a draft
    entries, result = make_plan(desired(A, longer(B, at("10:02"))), server)
    assert result.claim_locked and len(corrections(entries)) == 1
    assert claim not in [e["request"]["url"] for e in entries]


def test_a_submitted_claim_whose_lines_did_not_change_asks_for_nothing() -> None:
    """The billing system set the Claim active; the same documentation again writes nothing
    (was: a 'submit a corrected claim' request on every sync, the status being compared)."""
    server = written(desired(A, B))
    submitted(server)
    entries, result = make_plan(desired(A, B), server)
    assert entries == [] and not result.changed and not result.claim_locked
