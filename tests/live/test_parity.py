"""Live/replay parity: every fixture patient-day, synced from the real FHIR server with
``sync_day``, gets the same billing decision as the offline replay of the same case.

One server holds the whole fixture library (one transaction per case). Fixture ids all start with
their case's slug, so cases cannot collide on the server (checked below, not assumed); the
resources are loaded with their own ids, and decisions compare directly, procedure ids included.
Two reference forms a FHIR server does not keep are translated the way an EMR would hold them:
``urn:uuid`` references of the transaction case become the ``Type/id`` of the entry whose
``fullUrl`` they name (what a server does when it processes that transaction), and absolute
references to the fixtures' own base URL point at this server's base (which it stores as
relative references, as HAPI does).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from adapter.domain import Decision, PatientDay, Rulebook
from adapter.emr.client import FhirClient
from adapter.fhir.refs import ref_key
from adapter.intake.sources import Item, expand, read
from adapter.ledger import KxLedger, TreatmentLedger, day_amounts, day_treatments, day_units
from adapter.mappings import load_rulebook
from adapter.pipeline import Options, decision_hash, sync_day
from adapter.replay import decisions
from tests import fhir_server
from tests.test_fixtures import CASES, NOW

Resource = dict[str, Any]

PARAMS = [pytest.param(case, id=case.name) for case in CASES]


def case_resources(case: Path, base: str) -> list[Resource]:
    """The case's resources as an EMR at ``base`` would hold them (see the module docstring)."""
    items = [i for f in expand([case]) for i in read(f) if isinstance(i, Item)]
    for item in items:
        assert isinstance(item.resource.get("id"), str), f"{item.where}: no id, cannot be PUT"
    keys = {f"{i.resource['resourceType']}/{i.resource['id']}" for i in items}
    by_full_url = {
        i.full_url: f"{i.resource['resourceType']}/{i.resource['id']}"
        for i in items
        if i.full_url and i.full_url.startswith("urn:uuid:")
    }

    def reference(value: str) -> str:
        if value in by_full_url:
            return by_full_url[value]
        if value.startswith(("http://", "https://")) and ref_key(value) in keys:
            return f"{base}/{ref_key(value)}"
        return value

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: reference(v) if k == "reference" and isinstance(v, str) else rewrite(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    return [rewrite(i.resource) for i in items]


@pytest.fixture(scope="module")
def rulebook() -> Rulebook:
    return load_rulebook()


@pytest.fixture(scope="module")
def emr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirClient]:
    """One server holding every case (one PUT transaction per case) and a client for it."""
    server = fhir_server.start(tmp_path_factory.mktemp("parity-fhir"))
    client = FhirClient(server.base)
    try:
        owner: dict[str, str] = {}
        for case in CASES:
            resources = case_resources(case, server.base)
            for r in resources:
                key = f"{r['resourceType']}/{r['id']}"
                assert owner.setdefault(key, case.name) == case.name, (
                    f"{key} is in both {owner[key]} and {case.name}: cases would collide"
                )
            server.put_all(*resources)
        yield client
    finally:
        client.session.close()
        server.stop()


def view(decision: Decision | None) -> dict[str, Any] | None:
    """What a decision bills and flags, in a form that compares (and prints) well."""
    if decision is None:
        return None
    return {
        "payer": decision.payer,
        "lines": sorted(
            (ln.code, ln.units, ln.modifiers, tuple(sorted(ln.intervention_ids)))
            for ln in decision.lines
        ),
        "findings": sorted({f.code.value for f in decision.findings}),
    }


@pytest.mark.parametrize("case", PARAMS)
def test_live_sync_decides_every_day_like_replay(
    case: Path, emr: FhirClient, rulebook: Rulebook
) -> None:
    options = Options(evaluated_at=NOW)
    offline = {
        (d.patient_id, d.service_date.isoformat()): d
        for _, d in decisions([case], rulebook, options)
    }
    assert offline, "replay decides no patient-day for this case"
    # each patient's days in date order, each given its earlier days' allowed amounts and
    # treatment days, as the service does from its store's ledger
    ledger, treatments = KxLedger(), TreatmentLedger()
    live = {}
    for patient, dos in sorted(offline):
        on = date.fromisoformat(dos)
        day_options = replace(options, kx_prior=ledger.prior(patient, on),
                              history=treatments.history(patient, on))  # fmt: skip
        result = sync_day(emr, emr, rulebook, day=PatientDay.of(patient, dos), options=day_options)
        if result.decision is not None:
            ledger.record(patient, on, day_amounts(result.decision, rulebook))
            treatments.record(patient, on, *day_treatments(result.decision, rulebook),
                              units=day_units(result.decision))  # fmt: skip
        live[(patient, dos)] = result
    assert {k: view(r.decision) for k, r in live.items()} == {
        k: view(d) for k, d in offline.items()
    }
    # the hash also covers line order, each finding's procedures and the rulebook version
    assert {k: r.decision_hash for k, r in live.items()} == {
        k: decision_hash(d) for k, d in offline.items()
    }
