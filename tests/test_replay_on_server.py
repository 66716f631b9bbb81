"""Replay output posted to a real FHIR R4 server: accepted by its strict validation, and posting
the same transaction twice changes nothing (no new resource, no new version)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from adapter.mappings import load_rulebook
from adapter.pipeline import Options
from adapter.replay import replay
from tests.fhir_server import FhirServer

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CASES = ["knee-balance-47min", "tbi-pta-pt-split-transaction", "back-pain-note-missing-and-vague"]


def as_transaction(bundle: dict[str, Any]) -> dict[str, Any]:
    entries = []
    for e in bundle["entry"]:
        r = e["resource"]
        entries.append(
            {"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r,
             "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        )  # fmt: skip
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def load_input(case: str) -> dict[str, Any]:
    doc = json.loads((FIXTURES / case / "input.json").read_text())
    if doc["type"] != "transaction":
        doc = as_transaction(doc)
    return doc


def test_replayed_bundles_post_twice_without_change(fresh_fhir: FhirServer, tmp_path: Path) -> None:
    rulebook = load_rulebook()
    for case in CASES:
        status, outcome = fresh_fhir.request("POST", "", load_input(case))
        assert status == 200, outcome
    replay([FIXTURES / c for c in CASES], tmp_path, rulebook, Options())
    outputs = sorted(tmp_path.rglob("*.transaction.json"))
    assert len(outputs) == len(CASES)
    first: list[str] = []
    for path in outputs:
        status, resp = fresh_fhir.request("POST", "", json.loads(path.read_text()))
        assert status == 200, resp
        first += [e["response"]["location"] for e in resp["entry"]]
    assert all(loc.endswith("/_history/1") for loc in first)
    for path in outputs:
        status, resp = fresh_fhir.request("POST", "", json.loads(path.read_text()))
        assert status == 200, resp
        again = [e["response"]["location"] for e in resp["entry"]]
        assert set(again) <= set(first)  # the same resources, same versions
    items = fresh_fhir.search("ChargeItem?_count=200")
    claims = fresh_fhir.search("Claim?_count=200")
    written = sum(
        1
        for p in outputs
        for e in json.loads(p.read_text())["entry"]
        if e["resource"]["resourceType"] == "ChargeItem"
    )
    assert len(items) == written and len(claims) == 3
    knee = [i for i in items if "knee-balance-47min" in i["identifier"][0]["value"]]
    assert sorted((i["code"]["coding"][0]["code"], i["quantity"]["value"]) for i in knee) == [
        ("97110", 1), ("97112", 2)
    ]  # fmt: skip


def test_every_fixture_replay_posted_twice_duplicates_nothing(
    fresh_fhir: FhirServer, tmp_path: Path
) -> None:
    """Every case's output, posted twice: the second post creates nothing and changes no
    version (found in review: identifiers with '+' were matched as a space in ifNoneExist, so
    each re-post of ms-mixed-disciplines-extra-aide created two more Communications)."""
    cases = sorted(p.parent.name for p in FIXTURES.glob("*/expected.toml"))
    for case in cases:
        for source in sorted((FIXTURES / case).glob("*.json")):
            status, outcome = fresh_fhir.request("POST", "", as_transaction_any(source))
            assert status == 200, (case, outcome)
    replay([FIXTURES / c for c in cases], tmp_path, load_rulebook(), Options())
    _post_twice(fresh_fhir, sorted(tmp_path.rglob("*.transaction.json")))


def test_every_real_world_replay_posted_twice_duplicates_nothing(
    fresh_fhir: FhirServer, tmp_path: Path
) -> None:
    """The real-world corpus's output (contained and identifier-only references written as
    logical references, absolute and conditional ones resolved), posted twice: nothing new."""
    corpus = Path(__file__).resolve().parent / "realworld"
    cases = sorted(p.parent for p in corpus.glob("*/expected.toml"))
    replay(cases, tmp_path, load_rulebook(), Options())
    outputs = sorted(tmp_path.rglob("*.transaction.json"))
    assert len(outputs) >= len(cases)
    _post_twice(fresh_fhir, outputs)


def _post_twice(fresh_fhir: FhirServer, outputs: list[Path]) -> None:
    first: set[str] = set()
    for path in outputs:
        status, resp = fresh_fhir.request("POST", "", json.loads(path.read_text()))
        assert status == 200, (path, resp)
        first |= {e["response"]["location"] for e in resp["entry"]}
    counts = {k: len(fresh_fhir.search(f"{k}?_count=1000")) for k in KINDS}
    for path in outputs:
        status, resp = fresh_fhir.request("POST", "", json.loads(path.read_text()))
        assert status == 200, (path, resp)
        again = {e["response"]["location"] for e in resp["entry"]}
        assert again <= first, (path.parent.name, sorted(again - first)[:3])
    assert {k: len(fresh_fhir.search(f"{k}?_count=1000")) for k in KINDS} == counts


KINDS = ("ChargeItem", "Claim", "Communication", "Provenance")


def as_transaction_any(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    return doc if doc.get("type") == "transaction" else as_transaction(doc)


def test_identifiers_with_reserved_and_non_ascii_characters_match_on_re_post(
    fresh_fhir: FhirServer,
) -> None:
    """A conditional create keyed on an identifier holding + & # % space , | \\ $ and non-ASCII,
    posted twice: one resource (the query is escaped and percent-encoded as FHIR wants)."""
    from adapter.fhir.refs import token_query

    system = "https://therapy-charge-adapter.org/fhir/identifier/communication"
    values = ["p1:2026-03-02:a+b", "x & y # z % w", "comma,bar|back\\slash$", "école-ñ-日本"]
    for _ in range(2):
        entries = [
            {
                "fullUrl": f"urn:uuid:00000000-0000-4000-8000-00000000000{n}",
                "resource": {
                    "resourceType": "Communication",
                    "identifier": [{"system": system, "value": v}],
                    "status": "completed",
                },
                "request": {
                    "method": "POST",
                    "url": "Communication",
                    "ifNoneExist": token_query("identifier", system, v),
                },
            }
            for n, v in enumerate(values)
        ]
        status, resp = fresh_fhir.request(
            "POST", "", {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        )
        assert status == 200, resp
    found = fresh_fhir.search("Communication?_count=100")
    assert sorted(c["identifier"][0]["value"] for c in found) == sorted(values)
