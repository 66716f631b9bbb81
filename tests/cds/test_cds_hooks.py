"""The CDS Hooks service (issue 17), called the way an EHR calls it: a CDS client that signs
its JWT with a key it makes (ES384), posting hook requests to the real ASGI application. The
cards say what the replay of the same day finds (one rule set, one answer); bad tokens are
refused; feedback is counted; the documents validate against the CDS Hooks 2.0 models."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from adapter.cds.models import Card, Discovery, HookResponse
from adapter.cds.service import REVIEW, CdsServices
from adapter.cds.tokens import CdsClient
from adapter.domain import Severity
from adapter.intake.webhook import Receiver
from adapter.mappings import load_rulebook
from adapter.pipeline import Options
from adapter.replay import decisions
from adapter.store import open_store
from adapter.web.server import WebhookServer
from tests.conformance import schema_errors

FIXTURES = Path(__file__).parents[2] / "fixtures"
BASE = "https://adapter.example.org"
ISS = "https://ehr.example.org"
RULEBOOK = load_rulebook()
STAMP = "2026-08-01T12:00:00Z"


class Client:
    """A CDS client: its own key pair; a fresh jti per token."""

    def __init__(self, iss: str = ISS) -> None:
        self.iss = iss
        self.key = ec.generate_private_key(ec.SECP384R1())

    @property
    def public_pem(self) -> str:
        return (
            self.key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def token(
        self, service: str = REVIEW, headers: dict[str, Any] | None = None, **claims: Any
    ) -> str:
        now = int(time.time())
        body = {"iss": self.iss, "sub": "ehr-client", "aud": f"{BASE}/cds-services/{service}",
                "exp": now + 300, "iat": now, "jti": str(uuid.uuid4()), **claims}  # fmt: skip
        return jwt.encode(
            body, self.key, algorithm="ES384", headers={"kid": "k1", **(headers or {})}
        )


class Http:
    """Requests to the adapter's web server on loopback."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str) -> requests.Response:
        return requests.get(self.base + path, timeout=30)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return requests.post(self.base + path, timeout=30, **kw)


@pytest.fixture
def ehr(tmp_path: Path) -> Iterator[tuple[Http, Client, CdsServices]]:
    client = Client()
    store = open_store(tmp_path / "cds.db")
    cds = CdsServices(RULEBOOK, Options(), store,
                      {ISS: CdsClient(iss=ISS, public_key=client.public_pem, sub="ehr-client")},
                      BASE)  # fmt: skip
    server = WebhookServer(Receiver(lambda n: None, secret="s"), port=0, cds=cds)
    server.start()
    try:
        yield Http(server.port), client, cds
    finally:
        server.stop()
        store.close()


def _request(case: str) -> tuple[dict[str, Any], str, str]:
    """An encounter-discharge request for the fixture's first day, its prefetch the fixture's
    resources (as the EMR's searches would return them)."""
    bundle = json.loads((FIXTURES / case / "input.json").read_text())
    resources = [e["resource"] for e in bundle["entry"]]
    patient = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    encounter = next(r["id"] for r in resources if r["resourceType"] == "Encounter")
    body = {
        "hook": "encounter-discharge", "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/x", "patientId": patient, "encounterId": encounter},
        "prefetch": {"patient": next(r for r in resources if r["resourceType"] == "Patient"),
                     "procedures": {"resourceType": "Bundle", "type": "searchset",
                                    "entry": [{"resource": r} for r in resources]}},
    }  # fmt: skip
    return body, patient, encounter


def test_discovery(ehr: tuple[Http, Client, CdsServices]) -> None:
    http, _, _ = ehr
    answer = http.get("/cds-services")
    assert answer.status_code == 200
    doc = Discovery.model_validate(answer.json())
    review = next(s for s in doc.services if s.id == REVIEW)
    assert review.hook == "encounter-discharge" and "procedures" in (review.prefetch or {})


@pytest.mark.parametrize(
    "case", ["knee-eval-97161-97140-xu", "ms-7-7-7", "knee-progress-report-clock"]
)
def test_the_cards_say_what_replay_finds(ehr: tuple[Http, Client, CdsServices], case: str) -> None:
    http, client, _ = ehr
    body, patient, _ = _request(case)
    answer = http.post(f"/cds-services/{REVIEW}", json=body,
                       headers={"Authorization": f"Bearer {client.token()}"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    cards = HookResponse.model_validate(answer.json()).cards
    decided = [d for _, d in decisions([FIXTURES / case], RULEBOOK, Options())
               if d.patient_id.endswith(patient)]  # fmt: skip
    expected = {
        (f.code.value, "critical" if f.severity is Severity.ERROR else "warning")
        for d in decided
        for f in d.findings
        if f.severity is not Severity.INFO
    }
    got = {(c.source.topic.code, c.indicator) for c in cards if c.source.topic}
    assert got == expected
    lines = [c for c in cards if c.summary.startswith(("Expected charges", "No line"))]
    assert len(lines) == len(decided)
    for d, card in zip(decided, lines, strict=True):
        for ln in d.lines:
            assert f"{ln.code} x{ln.units}" in (card.detail or "")
    assert all(len(c.summary) <= 140 for c in cards)
    assert all(c.overrideReasons for c in cards if c.indicator == "warning")


def test_bad_tokens_are_refused(ehr: tuple[Http, Client, CdsServices]) -> None:
    http, client, _ = ehr
    body, _, _ = _request("knee-balance-47min")
    url = f"/cds-services/{REVIEW}"

    def status(token: str | None) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return http.post(url, json=body, headers=headers).status_code

    assert status(None) == 401
    assert status(client.token(aud=f"{BASE}/cds-services/other")) == 401
    assert status(client.token(exp=int(time.time()) - 120, iat=int(time.time()) - 400)) == 401
    assert status(client.token(exp=int(time.time()) + 3600)) == 401  # lives over 5 minutes
    assert status(Client(iss="https://other.example").token()) == 401  # unknown issuer
    assert status(Client().token()) == 401  # a key the issuer does not hold
    assert status(client.token(sub="someone-else")) == 401
    forged = jwt.encode({"iss": ISS, "aud": f"{BASE}/cds-services/{REVIEW}", "sub": "ehr-client",
                         "exp": int(time.time()) + 60, "iat": int(time.time()), "jti": "x"},
                        "a-shared-secret-of-thirty-two-bytes!", algorithm="HS256")  # fmt: skip
    assert status(forged) == 401
    once = client.token()
    assert status(once) == 200
    assert status(once) == 401  # jti reused
    assert http.post("/cds-services/nope", json=body).status_code == 404
    ok = client.token()
    bad = http.post(url, data=b"{not json", headers={"Authorization": f"Bearer {ok}"})
    assert bad.status_code == 400


def test_missing_prefetch_and_feedback(ehr: tuple[Http, Client, CdsServices]) -> None:
    http, client, cds = ehr
    body, _, _ = _request("knee-balance-47min")
    body["prefetch"] = None
    answer = http.post(f"/cds-services/{REVIEW}", json=body,
                       headers={"Authorization": f"Bearer {client.token()}"})  # fmt: skip
    (card,) = HookResponse.model_validate(answer.json()).cards
    assert card.indicator == "info" and "prefetch" in card.summary
    feedback = {"feedback": [
        {"card": str(uuid.uuid4()), "outcome": "accepted", "outcomeTimestamp": STAMP},
        {"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": STAMP,
         "overrideReason": {"reason": {"code": "clinician-reviewed"}, "userComment": "ok"}},
    ]}  # fmt: skip
    url = f"/cds-services/{REVIEW}/feedback"
    assert http.post(url, json=feedback).status_code == 401
    token = client.token(aud=f"{BASE}/cds-services/{REVIEW}")
    assert (
        http.post(url, json=feedback, headers={"Authorization": f"Bearer {token}"}).status_code
        == 200
    )
    assert cds.feedback_counts(REVIEW) == {"accepted": 1, "overridden:clinician-reviewed": 1}
    again = {"Authorization": f"Bearer {client.token()}"}
    assert http.post(url, json=feedback, headers=again).status_code == 200  # kept once
    assert cds.feedback_counts(REVIEW) == {"accepted": 1, "overridden:clinician-reviewed": 1}


def test_a_client_known_by_its_jwks(tmp_path: Path) -> None:
    """The issuer's keys from its JWKS URL (served here on loopback): its token passes, one
    signed by a key not in the set does not."""
    import http.server
    import threading

    from jwt.algorithms import ECAlgorithm

    from adapter.cds.tokens import TokenError, verify

    client = Client()
    jwk = json.loads(ECAlgorithm.to_jwk(client.key.public_key()))
    jwks = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "ES384"}]}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(jwks)

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/jwks.json"
        clients = {ISS: CdsClient(iss=ISS, jwks_url=url)}
        seen: set[str] = set()

        def remember(key: str, until: float) -> bool:
            new = key not in seen
            seen.add(key)
            return new

        aud = f"{BASE}/cds-services/{REVIEW}"
        claims = verify(f"Bearer {client.token()}", clients=clients, audience=aud,
                        remember=remember)  # fmt: skip
        assert claims["iss"] == ISS
        # a jku header is followed only when it is the issuer's own allow-listed JWKS URL
        ok = client.token(headers={"jku": url})
        assert verify(f"Bearer {ok}", clients=clients, audience=aud, remember=remember)
        elsewhere = client.token(headers={"jku": "https://attacker.example.net/jwks.json"})
        with pytest.raises(TokenError, match="jku"):
            verify(f"Bearer {elsewhere}", clients=clients, audience=aud, remember=remember)
        with pytest.raises(TokenError):
            verify(f"Bearer {Client().token()}", clients=clients, audience=aud, remember=remember)
    finally:
        server.shutdown()
        server.server_close()


def test_the_appointment_check_states_the_clocks(ehr: tuple[Http, Client, CdsServices]) -> None:
    """appointment-book: a PT visit booked after the four authorized visits were used says the
    authorization is exceeded; one after it ended, that none covers the day; each with the
    clocks' state (the authorization's count) as detail."""
    from adapter.cds.service import CHECK

    http, client, _ = ehr
    bundle = json.loads((FIXTURES / "back-commercial-authorization-visits" / "input.json")
                        .read_text())  # fmt: skip
    resources = [e["resource"] for e in bundle["entry"]]
    patient = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    pt = {"coding": [{"system": "http://snomed.info/sct", "code": "91251008"}]}
    appointments = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Appointment", "id": "a1", "status": "proposed",
                      "start": "2026-06-23T10:00:00-05:00", "serviceType": [pt]}},
        {"resource": {"resourceType": "Appointment", "id": "a2", "status": "proposed",
                      "start": "2026-07-07T10:00:00-05:00"}}]}  # fmt: skip
    body = {"hook": "appointment-book", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/x", "patientId": patient,
                        "appointments": appointments},
            "prefetch": {"everything": {"resourceType": "Bundle", "type": "searchset",
                         "entry": [{"resource": r} for r in resources]}}}  # fmt: skip
    auth = {"Authorization": f"Bearer {client.token(service=CHECK)}"}
    answer = http.post(f"/cds-services/{CHECK}", json=body, headers=auth)
    assert answer.status_code == 200, answer.text
    cards = HookResponse.model_validate(answer.json()).cards
    topics = [c.source.topic.code for c in cards if c.source.topic]
    # the visits grant is used up; the 97110 units grant ends in 7 days; after 06-30: none
    assert topics == ["authorization-exceeded", "authorization-running-out",
                      "authorization-missing"]  # fmt: skip
    exceeded = next(c for c in cards if c.source.topic and c.source.topic.code ==
                    "authorization-exceeded")  # fmt: skip
    assert exceeded.source.label == "Therapy charge adapter: clocks:authorization"
    assert "Rule (clocks:authorization, LOW): domain.md §7" in (exceeded.detail or "")
    state = [c for c in cards if c.summary.startswith("Therapy visit 2026-06-23 (PT)")]
    assert state and "Authorization PA-2026-0601" in (state[0].detail or "")
    assert "visit 6 of 4" in (state[0].detail or "")


def _card_of(cards: list[Card], code: str) -> Card:
    return next(c for c in cards if c.source.topic and c.source.topic.code == code)


def _review(http: Http, client: Client, case: str) -> list[Card]:
    body, _, _ = _request(case)
    answer = http.post(f"/cds-services/{REVIEW}", json=body,
                       headers={"Authorization": f"Bearer {client.token()}"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    return HookResponse.model_validate(answer.json()).cards


def test_mechanical_fixes_are_suggested(ehr: tuple[Http, Client, CdsServices]) -> None:
    """A one-on-one code in a group session: the Procedure recoded to 97150; a code from the
    procedure's text: the Procedure carrying that CPT code; a progress report due: a Task.
    Each resource is valid FHIR R4 (the JSON schema); the suggestion's Procedure keeps its id
    and everything else but the code."""
    http, client, _ = ehr
    group = _card_of(_review(http, client, "ms-group-billed-one-on-one"), "group-billed-one-on-one")
    assert group.indicator == "critical" and group.selectionBehavior == "at-most-one"
    (fix,) = group.suggestions or []
    (action,) = fix.actions or []
    proc = action.resource or {}
    original = next(e["resource"] for e in json.loads(
        (FIXTURES / "ms-group-billed-one-on-one" / "input.json").read_text())["entry"]
        if e["resource"].get("id") == proc.get("id"))  # fmt: skip
    assert action.type == "update" and proc["resourceType"] == "Procedure"
    assert proc["code"]["coding"][0]["code"] == "97150"
    assert {k: v for k, v in proc.items() if k != "code"} == {
        k: v for k, v in original.items() if k != "code"}  # fmt: skip
    assert schema_errors(proc) == []

    text = _card_of(_review(http, client, "vestibular-text-matched-codes"), "code-from-text")
    codes = {a.resource["code"]["coding"][0]["code"] for s in text.suggestions or []
             for a in s.actions or [] if a.resource}  # fmt: skip
    assert codes and codes <= {"97112", "97116"}

    due = _review(http, client, "knee-progress-report-clock")
    tasks = [a.resource for c in due for s in c.suggestions or [] for a in s.actions or []
             if a.type == "create" and a.resource]  # fmt: skip
    assert tasks and all(t["resourceType"] == "Task" and schema_errors(t) == [] for t in tasks)
    assert all(t["for"]["reference"].startswith("Patient/") for t in tasks)
    # nothing mechanical about missing minutes: no suggestion
    short = _review(http, client, "vestibular-under-8-minutes")
    assert not any(c.suggestions for c in short)


@pytest.mark.parametrize(
    ("case", "code", "ref"),
    [
        ("stroke-97112-units-threshold", "units-over-threshold", "limits:unit_threshold:97112>4"),
        ("back-pain-note-missing-and-vague", "note-vague", "documentation:notes"),
        ("ms-group-billed-one-on-one", "group-billed-one-on-one", "codes:97110"),
        ("knee-progress-report-clock", "progress-report-due", "clocks:progress-report"),
        ("back-eval-no-end-97140-not-distinct", "ncci-not-distinct", "ncci:97162/97140"),
    ],
)
def test_a_card_names_its_mappings_entry(
    ehr: tuple[Http, Client, CdsServices], case: str, code: str, ref: str
) -> None:
    http, client, _ = ehr
    card = _card_of(_review(http, client, case), code)
    assert card.source.label == f"Therapy charge adapter: {ref}"
    assert f"Rule ({ref}," in (card.detail or "")


def test_used_token_ids_are_pruned(tmp_path: Path) -> None:
    """A token id is kept until its token expired (an hour's margin), then dropped; while
    kept, a second use is refused."""
    now = [1_000_000.0]
    store = open_store(tmp_path / "jti.db", clock=lambda: now[0])
    try:
        assert store.jti_first_use("a", now[0] + 300)
        assert not store.jti_first_use("a", now[0] + 300)
        now[0] += 300 + 3601
        assert store.jti_first_use("b", now[0] + 300)
        assert store.jti_count() == 1
    finally:
        store.close()


def test_cards_link_to_the_day_in_the_workbench(ehr: tuple[Http, Client, CdsServices]) -> None:
    http, client, cds = ehr
    cds.review_url = f"{BASE}/review"
    cards = _review(http, client, "ms-7-7-7")
    _, patient, _ = _request("ms-7-7-7")
    assert cards and all(c.links for c in cards)
    urls = {link.url for c in cards for link in c.links or []}
    assert len(urls) == 1 and urls.pop().startswith(f"{BASE}/review/days/{patient}:")
