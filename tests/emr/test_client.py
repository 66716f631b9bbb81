"""The FHIR client against the real FHIR server: searches, retries, errors, capability checks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adapter.emr.client import FhirClient, RetryPolicy, check_capabilities
from adapter.errors import FatalServerError, TemporaryServerError
from tests.fault_proxy import FaultProxy
from tests.fhir.make import context
from tests.fhir_server import FhirServer


@pytest.fixture
def proxy(fhir: FhirServer) -> Iterator[FaultProxy]:
    p = FaultProxy(fhir.base)
    yield p
    p.close()


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def seed(fhir: FhirServer, patient: str) -> None:
    entries = [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in context(patient=patient)
    ]
    status, body = fhir.request("POST", "", {"resourceType": "Bundle", "type": "transaction",
                                             "entry": entries})  # fmt: skip
    assert status == 200, body


def test_search_follows_pages_and_includes(fhir: FhirServer) -> None:
    seed(fhir, "client-p1")
    client = FhirClient(fhir.base)
    roles = list(
        client.search(
            "PractitionerRole", {"_count": "1", "_include": "PractitionerRole:practitioner"}
        )
    )
    kinds = {r["resourceType"] for r in roles}
    assert kinds == {"PractitionerRole", "Practitioner"}
    assert len([r for r in roles if r["resourceType"] == "PractitionerRole"]) >= 3


def test_503_then_200_is_retried(fhir: FhirServer, proxy: FaultProxy) -> None:
    seed(fhir, "client-p2")
    sleeps = Sleeps()
    client = FhirClient(proxy.base, retry=RetryPolicy(attempts=5, initial_delay=0.25, sleep=sleeps))
    proxy.plan.extend(["503", "502"])
    patient = client.read("Patient", "client-p2")
    assert patient["id"] == "client-p2"
    assert client.retries == 2 and sleeps.calls == [0.25, 0.5]
    print(f"retried 2 injected failures, waits {sleeps.calls}")


def test_429_retry_after_is_honoured_and_capped(fhir: FhirServer, proxy: FaultProxy) -> None:
    seed(fhir, "client-p3")
    sleeps = Sleeps()
    policy = RetryPolicy(attempts=4, retry_after_cap=5.0, sleep=sleeps)
    client = FhirClient(proxy.base, retry=policy)
    proxy.plan.extend(["429:3", "429:600"])
    assert client.read("Patient", "client-p3")["id"] == "client-p3"
    assert sleeps.calls == [3.0, 5.0]


def test_timeouts_are_temporary_and_retried(fhir: FhirServer, proxy: FaultProxy) -> None:
    seed(fhir, "client-p4")
    client = FhirClient(proxy.base, timeout=(2.0, 0.5), retry=RetryPolicy(sleep=Sleeps()))
    proxy.plan.append("sleep:1.5")
    assert client.read("Patient", "client-p4")["id"] == "client-p4"
    assert client.retries == 1


def test_temporary_failures_give_up_after_the_attempts(proxy: FaultProxy) -> None:
    client = FhirClient(proxy.base, retry=RetryPolicy(attempts=3, sleep=Sleeps()))
    proxy.plan.extend(["503"] * 5)
    with pytest.raises(TemporaryServerError) as err:
        client.read("Patient", "whatever")
    assert err.value.status == 503 and err.value.outcome is not None


def test_fatal_errors_carry_the_operation_outcome(fhir: FhirServer) -> None:
    client = FhirClient(fhir.base, retry=RetryPolicy(sleep=Sleeps()))
    with pytest.raises(FatalServerError) as err:
        client.read("Patient", "does-not-exist")
    assert err.value.status == 404
    assert err.value.outcome and err.value.outcome["resourceType"] == "OperationOutcome"
    assert client.retries == 0


def test_connection_refused_is_temporary() -> None:
    from tests.fhir_server import free_port

    client = FhirClient(
        f"http://127.0.0.1:{free_port()}/fhir", retry=RetryPolicy(attempts=2, sleep=Sleeps())
    )
    with pytest.raises(TemporaryServerError, match="connection failed"):
        client.capabilities()


def test_capability_check_against_the_real_server(fhir: FhirServer) -> None:
    statement = FhirClient(fhir.base).capabilities()
    checks = check_capabilities(statement, subscriptions=True)
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    trimmed = {**statement, "rest": [{**statement["rest"][0], "interaction": [],
                                      "resource": [r for r in statement["rest"][0]["resource"]
                                                   if r["type"] != "ChargeItem"]}]}  # fmt: skip
    missing = {c.what for c in check_capabilities(trimmed) if not c.ok}
    assert missing == {"ChargeItem write", "transactions"}
    # no batch declared: said, not failed (searches then go one by one)
    said = {c.what: c.detail for c in check_capabilities(trimmed) if c.detail}
    assert "one by one" in said["batch searches"]
    assert not {c.what: c.detail for c in checks if c.detail}  # the real server declares all


def test_search_batch_answers_each_search_in_order_and_follows_pages(fhir: FhirServer) -> None:
    seed(fhir, "client-b1")
    client = FhirClient(fhir.base)
    roles, one_role_per_page, patients, nothing = client.search_batch(
        [
            ("PractitionerRole", [("_count", "200")]),
            ("PractitionerRole", {"_count": "1"}),
            ("Patient", [("_id", "client-b1,no-such-patient")]),
            ("Patient", [("_id", "no-such-patient")]),
        ]
    )
    assert len(roles) >= 3 and {r["resourceType"] for r in roles} == {"PractitionerRole"}
    # the second search's later pages were followed: the same roles as the unpaged search
    assert sorted(r["id"] for r in one_role_per_page) == sorted(r["id"] for r in roles)
    assert [p["id"] for p in patients] == ["client-b1"]
    assert nothing == []
    assert client.search_batch([]) == []


def test_search_batch_raises_on_a_failed_entry(fhir: FhirServer) -> None:
    client = FhirClient(fhir.base, retry=RetryPolicy(sleep=Sleeps()))
    with pytest.raises(FatalServerError) as err:
        client.search_batch([("Patient", {"_count": "1"}), ("NoSuchType", {"x": "1"})])
    assert err.value.status is not None and 400 <= err.value.status < 500
    assert "NoSuchType" in str(err.value)


def test_environment_settings_are_honoured_once_or_per_request(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No proxy, no netrc: the CA bundle from the environment is read once and requests stops
    re-reading the environment; a proxy (or netrc) leaves requests' per-request handling on."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("NETRC", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                "all_proxy"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/env/ca.pem")
    monkeypatch.setenv("NO_PROXY", "localhost,.cluster.local")  # no proxy to bypass: no proxy
    monkeypatch.setenv("no_proxy", "localhost,.cluster.local")
    plain = FhirClient("https://emr.example")
    assert (plain.session.trust_env, plain.session.verify) == (False, "/env/ca.pem")
    explicit = FhirClient("https://emr.example", verify="/mine.pem")
    assert explicit.session.verify == "/mine.pem"
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    proxied = FhirClient("https://emr.example")
    assert proxied.session.trust_env is True and proxied.session.verify is True
    monkeypatch.delenv("HTTPS_PROXY")
    (tmp_path / ".netrc").write_text("machine emr.example login a password b\n")
    assert FhirClient("https://emr.example").session.trust_env is True


def test_search_batch_falls_back_to_one_by_one_where_batches_are_refused(
    fhir: FhirServer, proxy: FaultProxy
) -> None:
    seed(fhir, "client-b2")
    client = FhirClient(proxy.base, retry=RetryPolicy(sleep=Sleeps()))
    searches: list[tuple[str, list[tuple[str, str]]]] = [
        ("Patient", [("_id", "client-b2")]),
        ("PractitionerRole", [("_count", "200")]),
    ]
    proxy.plan.append("405")  # the batch POST: this server does not take batches
    patients, roles = client.search_batch(searches)
    assert [p["id"] for p in patients] == ["client-b2"] and len(roles) >= 3
    assert client.batch_supported is False
    assert [m for m, _, _ in proxy.seen] == ["POST", "GET", "GET"]
    # later calls search one by one at once, with the same answers
    assert client.search_batch(searches) == [patients, roles]
    assert [m for m, _, _ in proxy.seen][3:] == ["GET", "GET"]
    # after a while a batch is tried again (a gateway's passing refusal is not for good)
    client.batch_retry_after = 0.0
    assert client.search_batch(searches) == [patients, roles]
    assert [m for m, _, _ in proxy.seen][5:] == ["POST"] and client.batch_supported
    # a refusal whose searches fail one by one too is the searches' own error, raised
    proxy.plan.extend(["403", "403"])
    with pytest.raises(FatalServerError) as err:
        client.search_batch(searches)
    assert err.value.status == 403 and client.batch_supported


def test_server_messages_stay_out_of_errors_and_logs(
    fhir: FhirServer, proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """An OperationOutcome's free text (which can quote patient data or a header) is not in the
    error message nor the retry log: its issue code is; the whole outcome stays on the error
    (found in attack review: diagnostics went verbatim into the JSON log and the store)."""
    client = FhirClient(proxy.base, retry=RetryPolicy(attempts=2, sleep=Sleeps()))
    proxy.plan.extend(["503", "503"])
    with caplog.at_level("WARNING"), pytest.raises(TemporaryServerError) as err:
        client.read("Patient", "whatever")
    assert "injected" not in str(err.value) and "transient" in str(err.value)
    assert err.value.outcome is not None  # the injected outcome, diagnostics and all
    assert err.value.outcome["issue"][0]["diagnostics"] == "injected"
    assert caplog.records and not any("injected" in r.getMessage() for r in caplog.records)
