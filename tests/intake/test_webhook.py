"""The webhook receiver on bad and good input (no server needed: ``Receiver.handle`` directly,
plus one real HTTP round trip)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from adapter.intake.events import Notification
from adapter.intake.webhook import Receiver
from adapter.web.server import WebhookServer
from tests.fhir.make import at, procedure

SECRET = "hook-secret"
OK = {"X-Adapter-Secret": SECRET, "Content-Type": "application/fhir+json"}


@pytest.fixture
def got() -> list[Notification]:
    return []


@pytest.fixture
def rx(got: list[Notification]) -> Receiver:
    return Receiver(got.append, secret=SECRET, max_body=10_000)


def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def status(params: Any) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": params}


def backport(
    kind: str,
    number: int | None,
    focus: str | None,
    *,
    sub: str = "Subscription/s1",
    resources: list[dict[str, Any]] | None = None,
    since: int | None = None,
) -> bytes:
    params: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": sub}},
        {"name": "type", "valueCode": kind},
    ]
    if since is not None:
        params.append({"name": "events-since-subscription-start", "valueString": str(since)})
    if number is not None:
        parts: list[dict[str, Any]] = [{"name": "event-number", "valueString": str(number)}]
        if focus:
            parts.append({"name": "focus", "valueReference": {"reference": focus}})
        params.append({"name": "notification-event", "part": parts})
    entries = [{"resource": status(params)}] + [{"resource": r} for r in resources or []]
    return body({"resourceType": "Bundle", "type": "history", "entry": entries})


PROC = procedure("p1", "97112", at("09:00"), at("09:30"))


@pytest.mark.parametrize(
    ("method", "path", "headers", "payload", "code"),
    [
        ("POST", "/elsewhere", OK, body(PROC), 404),
        ("GET", "/notify", OK, b"", 405),
        ("POST", "/notify", {"Content-Type": "application/fhir+json"}, body(PROC), 401),
        ("POST", "/notify", {**OK, "X-Adapter-Secret": "nope"}, body(PROC), 401),
        ("POST", "/notify", OK, b"x" * 10_001, 413),
        ("POST", "/notify", {**OK, "Content-Type": "text/xml"}, b"<Procedure/>", 415),
        ("POST", "/notify", OK, b"{not json", 400),
        ("POST", "/notify", OK, body([1, 2]), 400),
        ("POST", "/notify", OK, body({"resourceType": "Observation", "id": "o"}), 422),
        ("PUT", "/notify/Procedure/other", OK, body(PROC), 400),
        ("POST", "/notify", OK, body({"resourceType": "Bundle", "type": "collection"}), 400),
        ("POST", "/notify", OK, backport("bogus", 1, "Procedure/p1"), 400),
    ],
)  # fmt: skip
def test_bad_deliveries_are_refused_with_an_outcome_and_never_queued(
    rx: Receiver, got: list[Notification], method: str, path: str, headers: dict[str, str],
    payload: bytes, code: int,
) -> None:  # fmt: skip
    reply = rx.handle(method, path, headers, payload)
    assert reply.status == code
    assert reply.body and reply.body["resourceType"] == "OperationOutcome"
    assert got == []


def test_rest_hook_full_resource_put_and_post(rx: Receiver, got: list[Notification]) -> None:
    assert rx.handle("PUT", "/notify/Procedure/p1", OK, body(PROC)).status == 200
    assert rx.handle("POST", "/notify", OK, body(PROC)).status == 200
    assert [n.events[0].key for n in got] == ["Procedure/p1", "Procedure/p1"]
    assert got[0].events[0].resource == PROC


def test_rest_hook_ping_asks_for_a_catch_up(rx: Receiver, got: list[Notification]) -> None:
    assert rx.handle("POST", "/notify", {"X-Adapter-Secret": SECRET}, b"").status == 204
    assert got == [Notification(catch_up=True, kind="ping")]


def test_own_writes_are_ignored(rx: Receiver, got: list[Notification]) -> None:
    tag = {"system": "https://therapy-charge-adapter.org/fhir/CodeSystem/patient-day", "code": "x"}
    own = {**PROC, "meta": {"tag": [tag]}}
    assert rx.handle("POST", "/notify", OK, body(own)).status == 200
    assert got == []


def test_backport_full_id_only_empty_and_gaps(rx: Receiver, got: list[Notification]) -> None:
    assert (
        rx.handle("POST", "/notify", OK, backport("handshake", None, None, since=0)).status == 200
    )
    assert got == []
    rx.handle(
        "POST", "/notify", OK, backport("event-notification", 1, "Procedure/p1", resources=[PROC])
    )
    assert got[-1].events[0].resource == PROC and not got[-1].catch_up
    rx.handle("POST", "/notify", OK, backport("event-notification", 2, "Procedure/p2"))
    assert got[-1].events[0].key == "Procedure/p2" and got[-1].events[0].resource is None
    rx.handle("POST", "/notify", OK, backport("event-notification", 3, None))  # empty content
    assert got[-1].events == () and got[-1].catch_up
    rx.handle("POST", "/notify", OK, backport("event-notification", 6, "Procedure/p6"))  # 4, 5 lost
    assert got[-1].catch_up and got[-1].events[0].key == "Procedure/p6"
    before = len(got)
    rx.handle("POST", "/notify", OK, backport("heartbeat", None, None, since=6))
    assert len(got) == before  # heartbeat in step: nothing to do
    rx.handle("POST", "/notify", OK, backport("heartbeat", None, None, since=9))
    assert got[-1].catch_up and got[-1].kind == "heartbeat"


def test_over_http(got: list[Notification]) -> None:
    server = WebhookServer(Receiver(got.append, secret=SECRET), "127.0.0.1", 0)
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/notify/Procedure/p1"
        req = urllib.request.Request(url, data=body(PROC), headers=OK, method="PUT")
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200
        bad = urllib.request.Request(url, data=body(PROC), method="PUT",
                                     headers={"Content-Type": "application/fhir+json"})  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(bad, timeout=5)
        assert err.value.code == 401
        assert json.loads(err.value.read())["resourceType"] == "OperationOutcome"
    finally:
        server.stop()
    assert len(got) == 1


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)
SHAPES = st.one_of(
    JSON.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.builds(
        lambda v: body(
            {"resourceType": "Procedure", "id": "p1", **(v if isinstance(v, dict) else {})}
        ),
        JSON,
    ),
    st.builds(lambda v: body({"resourceType": "Bundle", "type": "history", "entry": v}), JSON),
    st.builds(
        lambda v: backport(
            "event-notification", 1, "Procedure/p1", resources=[v] if isinstance(v, dict) else []
        ),
        JSON,
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(["POST", "PUT", "GET"]),
    path=st.sampled_from(["/notify", "/notify/Procedure/p1", "/notify/Encounter/e", "/x"]),
    ctype=st.sampled_from(["application/fhir+json", "application/json", "text/plain", ""]),
    payload=SHAPES,
)
def test_random_deliveries_are_handled_or_refused_never_crash(
    method: str, path: str, ctype: str, payload: bytes
) -> None:
    got: list[Notification] = []
    rx = Receiver(got.append, secret=SECRET)
    reply = rx.handle(method, path, {"X-Adapter-Secret": SECRET, "Content-Type": ctype}, payload)
    assert reply.status in {200, 204, 400, 404, 405, 413, 415, 422}
    if reply.status >= 400:
        assert got == [] and reply.body and reply.body["resourceType"] == "OperationOutcome"
    else:
        assert len(got) <= 1


def test_a_repeated_secret_header_is_refused(rx: Receiver, got: list[Notification]) -> None:
    """Two secret headers (the right one and another): refused, whichever comes last."""
    for pair in ((SECRET, "wrong"), ("wrong", SECRET), (SECRET, SECRET)):
        headers = [("X-Adapter-Secret", pair[0]), ("x-adapter-secret", pair[1])]
        assert rx.handle("POST", "/notify", headers, b"").status == 401
    assert got == []
    assert rx.handle("POST", "/notify", [("X-Adapter-Secret", SECRET)], b"").status == 204


def test_nesting_beyond_the_limit_is_a_bad_request(got: list[Notification]) -> None:
    """Deeply nested JSON can never succeed: 400, not a retryable 5xx (was RecursionError)."""
    rx = Receiver(got.append, secret=SECRET)
    for depth in (100, 10_000):
        deep = b'{"resourceType":"Procedure","id":"x","a":' + b"[" * depth + b"]" * depth + b"}"
        assert rx.handle("POST", "/notify", OK, deep).status == 400


def test_event_numbers_out_of_range_are_refused_and_a_restart_is_noticed(
    rx: Receiver, got: list[Notification]
) -> None:
    """An event number of 10^30 was accepted and hid every later real gap (found in review)."""
    assert (
        rx.handle(
            "POST", "/notify", OK, backport("event-notification", 10**30, "Procedure/a")
        ).status
        == 400
    )
    assert (
        rx.handle("POST", "/notify", OK, backport("event-notification", -1, "Procedure/a")).status
        == 400
    )
    assert (
        rx.handle("POST", "/notify", OK, backport("event-notification", 5, "Procedure/a")).status
        == 200
    )
    assert (
        rx.handle("POST", "/notify", OK, backport("event-notification", 6, "Procedure/b")).status
        == 200
    )
    # a huge but in-range number (a bogus sender, or a restarted count later): a later small
    # number is a restart, caught up on, and gaps after it are seen again
    assert (
        rx.handle(
            "POST", "/notify", OK, backport("event-notification", 10**15, "Procedure/c")
        ).status
        == 200
    )
    got.clear()
    rx.handle("POST", "/notify", OK, backport("event-notification", 1, "Procedure/d"))
    assert got[-1].catch_up  # restart: catch up once
    rx.handle("POST", "/notify", OK, backport("event-notification", 2, "Procedure/e"))
    assert not got[-1].catch_up
    rx.handle("POST", "/notify", OK, backport("event-notification", 4, "Procedure/f"))
    assert got[-1].catch_up  # the gap at 3 is seen again


def test_a_focus_listed_many_times_is_queued_once(rx: Receiver, got: list[Notification]) -> None:
    """Found in attack review: 1,000 copies of one id-only focus in a notification cost 1,000
    searches and reads on the EMR. Each change is queued once (per version)."""
    doc = json.loads(backport("event-notification", 1, "Procedure/p2"))
    event = doc["entry"][0]["resource"]["parameter"][-1]
    doc["entry"][0]["resource"]["parameter"] += [event] * 60  # within the test limit
    assert rx.handle("POST", "/notify", OK, body(doc)).status == 200
    assert [e.key for e in got[-1].events] == ["Procedure/p2"]
