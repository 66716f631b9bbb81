"""``under_base``: the one gate every URL the EMR hands back (a next link, a Location) passes
before the client sends its credentials there."""

from __future__ import annotations

import pytest

from adapter.emr.client import under_base
from adapter.fhir.refs import is_id, split_key

BASE = "http://127.0.0.1:9/fhir"


@pytest.mark.parametrize(
    "url",
    [
        BASE,
        f"{BASE}/",
        f"{BASE}/Procedure?_getpages=abc&_offset=20",
        f"{BASE}/Procedure/p1/_history/2",
    ],
)
def test_urls_under_the_base_are_followed(url: str) -> None:
    assert under_base(url, BASE)


@pytest.mark.parametrize(
    "url",
    [
        # found in attack review: Tomcat and Jetty read '..;' as '..'
        f"{BASE}/..;/actuator/env",
        f"{BASE}/Procedure/..;/..;/admin",
        # still encoded after one decoding
        f"{BASE}/%252e%252e/admin",
        # control characters urlsplit would silently drop
        f"{BASE}/x\r\nX: y",
        f"{BASE}/Procedure/a\n",
        f"{BASE}/Pro\tcedure",
        f"{BASE}/../admin",
        f"{BASE}/%2e%2e/admin",
        "http://127.0.0.1:9/fhirx/Procedure",
        "http://evil.example/fhir/Procedure",
        "https://127.0.0.1:9/fhir/Procedure",
        f"{BASE}\\..\\admin",
    ],
)
def test_urls_outside_the_base_are_refused(url: str) -> None:
    assert not under_base(url, BASE)


@pytest.mark.parametrize("rid", ["abc\n", ".", "..", "...", "a b", "", "x" * 65, "a/b", "é"])
def test_ids_against_fhirs_rule_or_path_segments_are_refused(rid: str) -> None:
    """Found in attack review: Python's '$' matched before a final newline, and '.'/'..' fit
    the letters of the rule, so such ids built URLs that were not a read of one resource."""
    assert not is_id(rid)
    assert split_key(f"Procedure/{rid}") is None


def test_patient_days_refuse_the_same_ids() -> None:
    from adapter.domain import PatientDay

    for bad in ("Patient/abc\n", "Patient/..", "Patient/."):
        with pytest.raises(ValueError):
            PatientDay.of(bad, "2026-03-02")
    assert PatientDay.of("Patient/a.b-1", "2026-03-02").patient == "Patient/a.b-1"
