"""The CDS Hooks review when the EHR sends no prefetch (issue 17): the service reads the
encounter's procedures and context from the FHIR server the request names, with the request's
own fhirAuthorization, only when that server is on the allow-list, within the latency budget.
Against the real FHIR server (and the fault proxy for a slow one)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from adapter.cds.service import REVIEW, CdsServices
from adapter.cds.tokens import CdsClient
from adapter.domain import Severity
from adapter.mappings import load_rulebook
from adapter.pipeline import Options
from adapter.replay import decisions
from adapter.store import open_store
from tests.cds.test_cds_hooks import BASE, ISS, Client
from tests.fault_proxy import FaultProxy
from tests.fhir_server import FhirServer

RULEBOOK = load_rulebook()
FIXTURES = Path(__file__).parents[2] / "fixtures"
CASE = "knee-eval-97161-97140-xu"


def _setup(fhir: FhirServer, tmp_path: Path, allowed: set[str], budget: float = 5.0) -> tuple[
        CdsServices, Client, dict[str, Any]]:  # fmt: skip
    bundle = json.loads((FIXTURES / CASE / "input.json").read_text())
    resources = [e["resource"] for e in bundle["entry"]]
    fhir.put_all(*resources)
    client = Client()
    cds = CdsServices(RULEBOOK, Options(), open_store(tmp_path / "c.db"),
                      {ISS: CdsClient(iss=ISS, public_key=client.public_pem)}, BASE,
                      fhir_servers=frozenset(allowed), budget=budget)  # fmt: skip
    patient = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    encounter = next(r["id"] for r in resources if r["resourceType"] == "Encounter")
    request = {"hook": "encounter-discharge", "hookInstance": str(uuid.uuid4()),
               "context": {"userId": "Practitioner/x", "patientId": patient,
                           "encounterId": encounter},
               "fhirAuthorization": {"access_token": "the-clients-token", "token_type": "Bearer",
                                     "expires_in": 300, "scope": "patient/*.read",
                                     "subject": "cds-service"}}  # fmt: skip
    return cds, client, request


def _cards(cds: CdsServices, client: Client, request: dict[str, Any]) -> list[dict[str, Any]]:
    answer = cds.call(REVIEW, json.dumps(request).encode(), f"Bearer {client.token()}")
    assert answer.status == 200, answer.body
    return list(answer.body["cards"])


def test_reads_from_the_allowed_ehr_give_the_replays_cards(
    fresh_fhir: FhirServer, tmp_path: Path
) -> None:
    cds, client, request = _setup(fresh_fhir, tmp_path, {fresh_fhir.base})
    request["fhirServer"] = fresh_fhir.base
    cards = _cards(cds, client, request)
    expected = {(f.code.value, "critical" if f.severity is Severity.ERROR else "warning")
                for _, d in decisions([FIXTURES / CASE], RULEBOOK, Options())
                for f in d.findings if f.severity is not Severity.INFO}  # fmt: skip
    assert {(c["source"]["topic"]["code"], c["indicator"]) for c in cards
            if "topic" in c["source"]} == expected  # fmt: skip
    assert any(c["summary"].startswith("Expected charges: 97140 x1") for c in cards)
    cds.store.close()


def test_a_server_off_the_allow_list_is_never_read_and_a_slow_one_is_not_waited_for(
    fresh_fhir: FhirServer, tmp_path: Path
) -> None:
    proxy = FaultProxy(fresh_fhir.base)
    try:
        cds, client, request = _setup(fresh_fhir, tmp_path, {proxy.base}, budget=0.4)
        request["fhirServer"] = "http://127.0.0.1:9/fhir"  # not allowed: no request at all
        (card,) = _cards(cds, client, request)
        assert "prefetch" in card["summary"] and proxy.seen == []
        request["fhirServer"] = proxy.base
        proxy.plan.append("sleep:1")  # the first read answers late
        started = time.monotonic()
        (card,) = _cards(cds, client, request)
        assert time.monotonic() - started < 1.5
        assert card["indicator"] == "warning" and "did not answer in time" in card["summary"]
        seen = list(proxy.seen)
        assert seen and all(path.startswith("/") for _, path, _ in seen)
        time.sleep(2.5)  # the read left behind ends (the server stays up for it)
        cds.store.close()
    finally:
        proxy.close()


def test_the_appointment_check_reads_the_patients_context(
    fresh_fhir: FhirServer, tmp_path: Path
) -> None:
    """appointment-book with no prefetch: the patient's coverage, plans, documents and
    authorizations are read from the allowed EHR with the request's token; the authorization
    on the server (ClaimResponse) is the one the card states."""
    from adapter.cds.service import CHECK

    case = "back-commercial-authorization-visits"
    resources = [e["resource"] for e in
                 json.loads((FIXTURES / case / "input.json").read_text())["entry"]]  # fmt: skip
    fresh_fhir.put_all(*resources)
    client = Client()
    cds = CdsServices(RULEBOOK, Options(), open_store(tmp_path / "c.db"),
                      {ISS: CdsClient(iss=ISS, public_key=client.public_pem)}, BASE,
                      fhir_servers=frozenset({fresh_fhir.base}), budget=5.0)  # fmt: skip
    patient = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    appointments = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Appointment", "id": "a1", "status": "proposed",
                      "start": "2026-06-23T10:00:00-05:00"}}]}  # fmt: skip
    request = {"hook": "appointment-book", "hookInstance": str(uuid.uuid4()),
               "fhirServer": fresh_fhir.base,
               "context": {"userId": "Practitioner/x", "patientId": patient,
                           "appointments": appointments},
               "fhirAuthorization": {"access_token": "the-clients-token", "token_type": "Bearer",
                                     "expires_in": 300, "scope": "patient/*.read",
                                     "subject": "cds-service"}}  # fmt: skip
    answer = cds.call(CHECK, json.dumps(request).encode(),
                      f"Bearer {client.token(service=CHECK)}")  # fmt: skip
    assert answer.status == 200, answer.body
    state = [c for c in answer.body["cards"] if c["summary"].startswith("Therapy visit 2026-06-23")]
    assert state and "Authorization PA-2026-0601" in state[0]["detail"]
    cds.store.close()
