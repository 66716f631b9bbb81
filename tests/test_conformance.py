"""Every resource the adapter emits passes an independent validator: the official FHIR R4 JSON
schema and the R4 FHIRPath invariants (``tests/conformance.py``, definitions from a registry
package), and the shipped profiles (``tests/profiles.py``). First the validator itself is shown
to catch what it must; then the fixture library's output, every resource in it, is checked."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from adapter.mappings import load_rulebook
from adapter.pipeline import Options
from adapter.replay import replay
from tests.conformance import conformance_errors
from tests.profiles import profile_errors
from tests.test_fixtures import FIXTURES, NOW

Resource = dict[str, Any]
GOOD_ITEM: Resource = {
    "resourceType": "ChargeItem",
    "status": "billable",
    "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "97112"}]},
    "subject": {"reference": "Patient/p1"},
    "occurrencePeriod": {"start": "2026-03-02T09:00:00-05:00", "end": "2026-03-02T09:38:00-05:00"},
    "extension": [{"url": "https://example.org/x", "valueString": "GP"}],
}


def test_a_good_resource_passes() -> None:
    assert conformance_errors(GOOD_ITEM) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"subject": {"reference": "#ptc"}}, "ref-1"),  # a contained resource that is not there
        (
            {
                "extension": [
                    {
                        "url": "u",
                        "valueString": "a",
                        "extension": [{"url": "v", "valueString": "b"}],
                    }
                ]
            },
            "ext-1",
        ),
        (
            {"occurrencePeriod": {"start": "2026-03-02T10:00:00Z", "end": "2026-03-02T09:00:00Z"}},
            "per-1",
        ),
        ({"occurrencePeriod": {"start": "2026-03-02T09:00-05:00"}}, "schema"),  # no seconds
        ({"status": "bogus"}, "schema"),
        ({"subject": {}}, "ele-1"),
        ({"note": [{"text": ""}]}, "ele-1"),
        ({"unknownElement": 1}, "schema"),
    ],
)
def test_the_validator_catches_what_it_must(change: Resource, expected: str) -> None:
    bad = {**copy.deepcopy(GOOD_ITEM), **change}
    errors = conformance_errors(bad)
    assert any(f": {expected}" in e for e in errors), errors


def validate_outputs(out: Path) -> dict[str, list[str]]:
    """Every output bundle under ``out`` through the validators: file -> errors."""
    failures: dict[str, list[str]] = {}
    for f in sorted(out.rglob("*.json")):
        doc = json.loads(f.read_text())
        if errors := conformance_errors(doc) + profile_errors(doc):
            failures[str(f.relative_to(out))] = errors[:10]
    return failures


def test_every_resource_the_fixture_library_emits_conforms(tmp_path: Path) -> None:
    """The README's first command's output, every resource of it."""
    summary = replay([FIXTURES], tmp_path, load_rulebook(), Options(evaluated_at=NOW))
    assert summary.patient_days > 0
    assert validate_outputs(tmp_path) == {}
    kinds = {
        e["resource"]["resourceType"]
        for f in tmp_path.rglob("*.json")
        for e in json.loads(f.read_text())["entry"]
    }
    assert kinds >= {"ChargeItem", "Claim", "Communication", "Provenance"}
