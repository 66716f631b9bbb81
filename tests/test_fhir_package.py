"""The shipped FHIR package (``mappings/fhir-package/``): a StructureDefinition for every
extension the adapter writes or reads, a profile for each resource type it writes, its code
systems, an ImplementationGuide index. The package itself is valid R4, agrees with the code,
only tightens the base R4 definitions, and every resource the adapter emits conforms to it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from adapter.domain.terms import FindingCode, UnitMethod
from adapter.fhir import codes
from adapter.mappings import load_rulebook
from adapter.pipeline import Options
from adapter.replay import replay
from tests.conformance import _elements, conformance_errors
from tests.profiles import PACKAGE, UNDERSTOOD, package, profile_errors
from tests.test_fixtures import FIXTURES, NOW

Resource = dict[str, Any]
WRITTEN = ("ChargeItem", "Claim", "Communication", "Provenance")


def files() -> list[Path]:
    return sorted(PACKAGE.glob("*-*.json"))


@pytest.mark.parametrize("path", files(), ids=lambda p: p.name)
def test_every_package_resource_is_valid_r4(path: Path) -> None:
    resource = json.loads(path.read_text())
    assert path.name == f"{resource['resourceType']}-{resource['id']}.json"
    assert conformance_errors(resource) == []


def test_the_index_lists_every_resource_and_the_manifest_agrees() -> None:
    ig = package()[f"{codes.BASE}/ImplementationGuide/therapy-charge-adapter"]
    listed = {r["reference"]["reference"] for r in ig["definition"]["resource"]}
    present = {
        f"{r['resourceType']}/{r['id']}"
        for r in package().values()
        if r["resourceType"] != "ImplementationGuide"
    }
    assert listed == present
    manifest = json.loads((PACKAGE / "package.json").read_text())
    assert manifest["name"] == ig["packageId"] and manifest["canonical"] == codes.BASE
    assert manifest["fhirVersions"] == ig["fhirVersion"] == ["4.0.1"]
    assert all(r["version"] == manifest["version"] for r in package().values())
    assert all(url.startswith(codes.BASE + "/") for url in package())


def test_every_extension_the_adapter_uses_is_defined_where_it_is_used() -> None:
    used = {v: k for k, v in vars(codes).items() if k.startswith("EXT_")}
    defined = {
        url: sd
        for url, sd in package().items()
        if sd["resourceType"] == "StructureDefinition" and sd["type"] == "Extension"
    }
    assert set(used) == set(defined)
    where = {
        codes.EXT_MODIFIER: {"ChargeItem"},
        codes.EXT_RULEBOOK: {"ChargeItem", "Claim"},
        codes.EXT_CHARGE_ITEM: {"Claim.item"},
        codes.EXT_DOCUMENTED_MINUTES: {"Procedure"},
        codes.EXT_YTD_PT_SLP: {"Coverage"},
    }
    for url, contexts in where.items():
        assert {c["expression"] for c in defined[url]["context"]} == contexts


def test_the_code_systems_hold_every_code_the_adapter_writes() -> None:
    findings = package()[codes.CS_FINDING]
    assert {c["code"] for c in findings["concept"]} == {
        *(f.value for f in FindingCode), "claim-correction-needed"
    }  # fmt: skip
    assert findings["count"] == len(findings["concept"])
    methods = package()[f"{codes.BASE}/CodeSystem/unit-method"]
    assert {c["code"] for c in methods["concept"]} == {m.value for m in UnitMethod}


def base_element(kind: str, path: str) -> Resource:
    """The R4 definition of ``path``, following data types (``ChargeItem.meta.tag`` is
    ``Meta.tag``)."""
    elements = _elements(kind)
    if path in elements:
        return elements[path]
    head, tail = path.rsplit(".", 1)
    parent = base_element(kind, head)
    (kind_of,) = {t["code"] for t in parent["type"]}
    return _elements(kind_of)[f"{kind_of}.{tail}"]


def test_profiles_only_tighten_the_r4_base() -> None:
    """Each differential element names a real element of its base, keeps within the base's
    cardinality, and uses only what tests/profiles.py checks (so nothing is silently ignored)."""
    for sd in package().values():
        if sd["resourceType"] != "StructureDefinition":
            continue
        assert sd["derivation"] == "constraint" and sd["fhirVersion"] == "4.0.1"
        for el in sd["differential"]["element"]:
            assert set(el) <= UNDERSTOOD, (sd["id"], set(el) - UNDERSTOOD)
            b = base_element(sd["type"], el["path"])  # a KeyError: no such element
            assert el.get("min", b["min"]) >= b["min"], (sd["id"], el["path"])
            if b["max"] != "*":
                assert el.get("max", b["max"]) != "*", (sd["id"], el["path"])
                assert int(el.get("max", b["max"])) <= int(b["max"]), (sd["id"], el["path"])
            allowed = {t["code"] for t in b.get("type", [])}
            for t in el.get("type", []):
                assert t["code"] in allowed, (sd["id"], el["path"], t["code"])


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Resource]:
    """One resource of each written type from the fixture library's replay."""
    out = tmp_path_factory.mktemp("out")
    replay([FIXTURES], out, load_rulebook(), Options(evaluated_at=NOW))
    found: dict[str, Resource] = {}
    for f in sorted(out.rglob("*.json")):
        for e in json.loads(f.read_text())["entry"]:
            r = e["resource"]
            if r["resourceType"] == "ChargeItem" and len(r["extension"]) < 5:
                continue  # one with a modifier and a rule reference
            found.setdefault(r["resourceType"], r)
    return found


def test_one_of_each_conforms(output: dict[str, Resource]) -> None:
    assert set(output) == set(WRITTEN)
    for resource in output.values():
        assert profile_errors(resource) == [], resource["resourceType"]


def _drop_ext(r: Resource, name: str) -> None:
    r["extension"] = [e for e in r["extension"] if not e["url"].endswith(name)]


def _set_ext(r: Resource, name: str, **value: Any) -> None:
    (ext,) = [e for e in r["extension"] if e["url"].endswith(name)][:1]
    for k in [k for k in ext if k.startswith("value")]:
        del ext[k]
    ext.update(value)


MUTATIONS = {
    "no rulebook version": ("ChargeItem", lambda r: _drop_ext(r, "/rulebook-version"),
                            "rulebookVersion: 0 of 1..1"),
    "modifier as a string": ("ChargeItem", lambda r: _set_ext(r, "/charge-modifier",
                             valueString="GP"), "valueCoding is required"),
    "unknown method": ("ChargeItem", lambda r: _set_ext(r, "/unit-method", valueCode="guess"),
                       "binding"),
    "zero units": ("ChargeItem", lambda r: r["quantity"].update(value=0), "minValueDecimal"),
    "stray extension": ("ChargeItem", lambda r: r["extension"].append(
        {"url": "https://example.org/x", "valueString": "a"}), "closed"),
    "no careTeam role": ("Claim", lambda r: r["careTeam"][0].pop("role"), "careTeam.role"),
    "institutional": ("Claim", lambda r: r["type"]["coding"][0].update(code="institutional"),
                      "pattern"),
    "item without its ChargeItem": ("Claim", lambda r: r["item"][0].pop("extension"),
                                    "chargeItem: 0 of 1..1"),
    "unknown finding": ("Communication", lambda r: r["reasonCode"][0]["coding"][0].update(
        code="made-up"), "binding"),
    "no agent identifier": ("Provenance", lambda r: r["agent"][0]["who"].pop("identifier"),
                            "agent.who.identifier"),
}  # fmt: skip


@pytest.mark.parametrize("name", MUTATIONS)
def test_the_checker_catches_a_broken_resource(output: dict[str, Resource], name: str) -> None:
    kind, mutate, expected = MUTATIONS[name]
    bad = copy.deepcopy(output[kind])
    mutate(bad)
    errors = profile_errors(bad)
    assert any(expected in e for e in errors), errors
