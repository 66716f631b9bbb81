"""The inbox's way in: one delivery naming many resources is split into bounded items (found in
review: a 3.3 MB backport bundle naming 20,000 procedures became one item that outlived its
lease and was taken by every worker at once)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from adapter.emr.client import FhirClient
from adapter.intake.events import InboxPayload
from adapter.intake.inbox import Inbox
from adapter.intake.webhook import Receiver
from adapter.observe import Metrics
from adapter.store import open_store

SECRET = "s"


def fan_out(n: int) -> bytes:
    events = [
        {"name": "notification-event",
         "part": [{"name": "event-number", "valueString": str(k + 1)},
                  {"name": "focus", "valueReference": {"reference": f"Procedure/fan-{k}"}}]}
        for k in range(n)
    ]  # fmt: skip
    status = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "subscription", "valueReference": {"reference": "Subscription/fan"}},
            {"name": "type", "valueCode": "event-notification"},
            *events,
        ],
    }
    bundle = {"resourceType": "Bundle", "type": "history", "entry": [{"resource": status}]}
    return json.dumps(bundle).encode()


def test_a_delivery_naming_20000_procedures_becomes_40_bounded_items(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db")
    inbox = Inbox(
        FhirClient("http://127.0.0.1:9/fhir"),  # never asked: enqueueing reads nothing
        store,
        zone=None,
        metrics=Metrics(),
        clock=lambda: datetime.now(UTC),
        max_events=500,
    )
    rx = Receiver(inbox.enqueue, secret=SECRET, max_body=10_000_000)
    body = fan_out(20_000)
    assert len(body) > 3_000_000
    reply = rx.handle("POST", "/notify", {"X-Adapter-Secret": SECRET}, body)
    assert reply.status == 200
    items = store.claim("w", limit=1000)
    assert len(items) == 40
    payloads = [InboxPayload.from_json(i.payload) for i in items]
    assert all(len(p.events) == 500 for p in payloads)
    named = [e.id for p in payloads for e in p.events]
    assert len(named) == len(set(named)) == 20_000  # each procedure once, none lost
    assert sum(p.catch_up for p in payloads) <= 1
    # the same delivery again is stored again only as far as it cannot be told apart
    before = store.counts()
    rx.handle("POST", "/notify", {"X-Adapter-Secret": SECRET}, fan_out(1_000))
    assert sum(store.counts().values()) == sum(before.values()) + 2
    store.close()


def test_a_crafted_version_cannot_take_another_deliverys_dedupe_key() -> None:
    """Found in attack review: keys were 'id@version' joined by ',', so A with versionId
    '1,Procedure/B@2' had the key of the delivery of A@1 and B@2, which was then dropped."""
    from adapter.intake.events import ChangeEvent, Notification

    crafted = Notification(events=(ChangeEvent("Procedure", "A", None, "1,Procedure/B@2", "x"),))
    genuine = Notification(
        events=(ChangeEvent("Procedure", "A", None, "1", "x"),
                ChangeEvent("Procedure", "B", None, "2", "x"))
    )  # fmt: skip
    assert crafted.dedupe() != genuine.dedupe()
    same = Notification(events=tuple(reversed(genuine.events)))
    assert same.dedupe() == genuine.dedupe()  # the same delivery, in another order
