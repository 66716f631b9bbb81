"""Payers' authorizations as the adapter reads them (README "Authorizations"): ClaimResponse in
the R4 core (addItem) and Da Vinci PAS (item extensions) shapes, and the site's CSV file; and
the store's units column added to an older database."""

from __future__ import annotations

import sqlite3
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from adapter.domain import Authorization, Discipline, Rulebook
from adapter.errors import ConfigError
from adapter.fhir.authorizations import authorizations_of
from adapter.ledger import history_of, read_authorizations
from adapter.mappings import load_rulebook
from adapter.rules.authorization import usage
from adapter.store import open_store

PAS = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition"
CPT = "http://www.ama-assn.org/go/cpt"
X12 = "https://codesystem.x12.org/005010/1365"


@pytest.fixture(scope="module")
def rulebook() -> Rulebook:
    return load_rulebook()


def response(**kw: Any) -> dict[str, Any]:
    cr: dict[str, Any] = {
        "resourceType": "ClaimResponse", "id": "cr1", "status": "active",
        "use": "preauthorization", "outcome": "complete", "preAuthRef": "PA-1",
        "preAuthPeriod": {"start": "2026-03-01", "end": "2026-04-30"},
        "patient": {"reference": "Patient/p1"},
    }  # fmt: skip
    cr.update(kw)
    return cr


def pas_item(
    seq: int, system: str, code: str, qty: object, unit: str, **ext: Any
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "itemSequence": seq,
        "extension": [{
            "url": f"{PAS}/extension-itemAuthorizedDetail",
            "extension": [
                {"url": "productOrServiceCode",
                 "valueCodeableConcept": {"coding": [{"system": system, "code": code}]}},
                {"url": "quantity", "valueQuantity": {"value": qty, "code": unit}},
            ],
        }],
    }  # fmt: skip
    if "review" in ext:
        code = {"system": "https://codesystem.x12.org/005010/306", "code": ext["review"]}
        item["extension"].append({"url": f"{PAS}/extension-reviewAction", "extension": [
            {"url": "reviewActionCode", "valueCodeableConcept": {"coding": [code]}}]})  # fmt: skip
    if "period" in ext:
        item["extension"].append({"url": f"{PAS}/extension-itemPreAuthPeriod",
                                  "valuePeriod": ext["period"]})  # fmt: skip
    return item


def test_the_pas_shape(rulebook: Rulebook) -> None:
    cr = response(item=[
        pas_item(1, X12, "PT", 12, "VS"),
        pas_item(2, CPT, "97110", 24, "UN", period={"start": "2026-03-15", "end": "2026-04-15"}),
        pas_item(3, CPT, "97140", 8, "UN", review="A3"),  # not certified: authorizes nothing
        pas_item(4, "http://example.org/other", "X", 3, "VS"),  # a service not billed here
    ])  # fmt: skip
    assert authorizations_of([cr], rulebook, None) == (
        Authorization(number="PA-1", ref="ClaimResponse/cr1 item 1", discipline=Discipline.PT,
                      start=date(2026, 3, 1), end=date(2026, 4, 30), visits=12),
        Authorization(number="PA-1", ref="ClaimResponse/cr1 item 2", code="97110",
                      start=date(2026, 3, 15), end=date(2026, 4, 15), units=24),
    )  # fmt: skip


def test_the_core_shape_and_what_authorizes_nothing(rulebook: Rulebook) -> None:
    core = response(addItem=[
        {"productOrService": {"coding": [{"system": "http://snomed.info/sct", "code": "84478008"}]},
         "quantity": {"value": 10, "unit": "visits"}},
        {"productOrService": {"coding": [{"system": CPT, "code": "97530"}]},
         "quantity": {"value": 2.5}},  # not a whole number: not read (never "no limit")
        {"productOrService": {"coding": [{"system": CPT, "code": "97110"}]},
         "quantity": {"value": 60, "code": "min"}},  # minutes are no units: not read
        {"productOrService": {"coding": [{"system": CPT, "code": "97112"}]},
         "quantity": {"value": 0, "code": "UN"}},  # none authorized
        {"productOrService": {"coding": [{"system": CPT, "code": "97140"}]}},  # no count set
    ])  # fmt: skip
    got = authorizations_of([core], rulebook, None)
    assert [(g.discipline, g.code, g.visits, g.units) for g in got] == [
        (Discipline.OT, None, 10, None), (None, "97112", None, 0),
        (None, "97140", None, None)]  # fmt: skip
    # a response with no items authorizes everything, without a count (its number still counts)
    assert authorizations_of([response()], rulebook, None) == (
        Authorization(number="PA-1", ref="ClaimResponse/cr1", start=date(2026, 3, 1),
                      end=date(2026, 4, 30)),
    )  # fmt: skip
    for bad in (
        response(use="claim"), response(status="cancelled"), response(outcome="error"),
        response(outcome="queued"), response(preAuthRef=" "), {"resourceType": "ClaimResponse"},
        response(preAuthPeriod={"start": "2026-03-01", "end": "2026-04"}),  # an end unread
    ):  # fmt: skip
        assert authorizations_of([bad], rulebook, None) == ()


def test_the_site_file(tmp_path: Path, rulebook: Rulebook) -> None:
    path = tmp_path / "auth.csv"
    path.write_text(
        "patient,number,discipline,code,start,end,visits,units,payer\n"
        "p1,A-1,PT,,2026-03-01,2026-04-30,12,,commercial\n"
        "\n"
        "Patient/p1,A-2,,97110,2026-03-01,2026-04-30,,24,\n"
    )
    got = read_authorizations(path, rulebook.payers)
    assert got == {"Patient/p1": (
        Authorization(number="A-1", ref="auth.csv:2", discipline=Discipline.PT,
                      start=date(2026, 3, 1), end=date(2026, 4, 30), visits=12,
                      payer="commercial"),
        Authorization(number="A-2", ref="auth.csv:4", code="97110", start=date(2026, 3, 1),
                      end=date(2026, 4, 30), units=24),
    )}  # fmt: skip


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("p1,A-1,PT,,2026-03-01,2026-04-30,12,", "line 2: 8 columns, not 9"),
        ("p 1,A-1,PT,,2026-03-01,2026-04-30,12,,", "is not a Patient id"),
        ("p1,,PT,,2026-03-01,2026-04-30,12,,", "is not an authorization number"),
        ("p1,A-1,PTA,,2026-03-01,2026-04-30,12,,", "discipline 'PTA' is not PT, OT or SLP"),
        ("p1,A-1,PT,9711,2026-03-01,2026-04-30,12,,", "'9711' is not a CPT/HCPCS code"),
        ("p1,A-1,PT,,2026-03-01,2026-04,12,,", "end '2026-04' is not a date"),
        ("p1,A-1,PT,,2026-05-01,2026-04-30,12,,", "end 2026-04-30 is before start"),
        ("p1,A-1,PT,,2026-03-01,2026-04-30,0,,", "visits '0' is not a whole number above 0"),
        ("p1,A-1,PT,,2026-03-01,2026-04-30,,1.5,", "units '1.5' is not a whole number"),
        ("p1,A-1,PT,,2026-03-01,2026-04-30,12,,aetna", "'aetna' is not a payer profile"),
    ],
)
def test_a_bad_site_file_names_the_line(
    tmp_path: Path, rulebook: Rulebook, row: str, reason: str
) -> None:
    path = tmp_path / "auth.csv"
    path.write_text(f"patient,number,discipline,code,start,end,visits,units,payer\n{row}\n")
    with pytest.raises(ConfigError, match=reason.replace("(", r"\(")) as err:
        read_authorizations(path, rulebook.payers)
    assert str(path) in str(err.value)


def test_a_row_listed_twice_and_a_bad_header(tmp_path: Path) -> None:
    path = tmp_path / "auth.csv"
    row = "p1,A-1,PT,,2026-03-01,2026-04-30,12,,"
    path.write_text(f"patient,number,discipline,code,start,end,visits,units,payer\n{row}\n{row}\n")
    with pytest.raises(ConfigError, match="line 3: A-1 for PT is listed twice"):
        read_authorizations(path)
    path.write_text("patient,number,start,end\n")
    with pytest.raises(ConfigError, match="line 1: header should be patient,number,discipline"):
        read_authorizations(path)


def test_an_older_store_gets_the_units_column(tmp_path: Path) -> None:
    """A database written before the authorization counters keeps its rows and gains the
    column (empty for its days)."""
    path = tmp_path / "adapter.db"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE kx_ledger (day TEXT PRIMARY KEY, patient TEXT NOT NULL, year INTEGER NOT "
        "NULL, dos TEXT NOT NULL, amounts TEXT NOT NULL, treated TEXT NOT NULL DEFAULT '[]', "
        "evaluated TEXT NOT NULL DEFAULT '[]')"
    )
    db.execute("INSERT INTO kx_ledger VALUES ('p1:2026-03-02', 'p1', 2026, '2026-03-02', '{}', "
               "'[\"PT\"]', '[]')")  # fmt: skip
    db.commit()
    db.close()
    store = open_store(f"sqlite:///{path}")
    try:
        assert store.day_record("p1:2026-03-02") == ({}, ["PT"], [], None)  # not known
        store.ledger_put("p1:2026-03-04", {}, "h", {}, worker="w", changed=True, kx={},
                         treated=["PT"], units=[("PT", "97110", 2, ("A-1",))])  # fmt: skip
        rows = store.treatment_history("p1:2026-03-05")
        assert rows == [
            (date(2026, 3, 2), ["PT"], [], None),
            (date(2026, 3, 4), ["PT"], [], [["PT", "97110", 2, ["A-1"]]]),
        ]
        # (review) the day kept before the units still counts as a visit, of any code
        units = history_of(rows).units
        assert [(u.date, u.code, u.units, u.authorizations) for u in units] == [
            (date(2026, 3, 2), "*", 0, ()), (date(2026, 3, 4), "97110", 2, ("A-1",))]  # fmt: skip
        grant = Authorization(number="A-1", ref="x", code="97110", visits=3)
        assert usage(grant, [], units, date(2026, 3, 5), date(2026, 1, 1)).visit == 3
    finally:
        store.close()


def test_a_denied_item_and_an_item_as_requested(rulebook: Rulebook) -> None:
    """(review) PAS often leaves the detail out: an item not certified (A3) authorizes nothing,
    and is never read as "everything"; an item certified as requested authorizes its request
    Claim's item (found through the lookup); another coverage's response is not the day's."""
    a3 = {"coding": [{"code": "A3"}]}
    review = {"url": f"{PAS}/extension-reviewAction", "extension": [
        {"url": "reviewActionCode", "valueCodeableConcept": a3}]}  # fmt: skip
    denied = response(item=[{"itemSequence": 1, "extension": [review]}])
    assert authorizations_of([denied], rulebook, None) == ()
    asked = {"resourceType": "Claim", "id": "req1", "item": [
        {"sequence": 1, "productOrService": {"coding": [{"system": CPT, "code": "97110"}]},
         "quantity": {"value": 12}}]}  # fmt: skip
    as_asked = response(request={"reference": "Claim/req1"}, item=[{"itemSequence": 1}])
    got = authorizations_of([as_asked], rulebook, None,
                            lookup={"Claim/req1": asked}.get)  # fmt: skip
    assert [(g.code, g.units) for g in got] == [("97110", 12)]
    assert authorizations_of([as_asked], rulebook, None) == ()  # the request is not here
    mine = {"resourceType": "Coverage", "id": "cov1", "payor": [{"reference": "Organization/a"}]}
    other_cov = response(insurance=[{"coverage": {"reference": "Coverage/cov2"}}])
    other_insurer = response(insurer={"reference": "Organization/b"})
    same = response(insurer={"reference": "Organization/a"},
                    insurance=[{"coverage": {"reference": "Coverage/cov1"}}])  # fmt: skip
    assert authorizations_of([other_cov, other_insurer], rulebook, None, coverage=mine) == ()
    assert len(authorizations_of([same], rulebook, None, coverage=mine)) == 1
