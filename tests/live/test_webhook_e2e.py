"""End to end on the real FHIR server: Subscription -> delivery -> ChargeItems written back.

For each delivery style the server supports (R4 rest-hook with the full resource, R4 rest-hook
ping, R4 backport topic-based full-resource and id-only), the adapter's receiver and worker run
in-process, the Subscription is created with ``subscriptions.ensure``, completed Procedures are
posted, and the test waits for the ChargeItems with the right units and modifiers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapter.emr import subscriptions
from adapter.emr.client import FhirClient
from adapter.intake.webhook import Receiver
from adapter.mappings import load_rulebook
from adapter.pipeline import Options
from adapter.service import Service
from adapter.store import open_store
from adapter.web.server import WebhookServer
from tests import fhir_server
from tests.fhir.make import at, context, procedure
from tests.fhir_server import FhirServer

SECRET = "s3cret-hook"
TOPIC = "http://sekmet.dev/fhir/SubscriptionTopic/therapy-procedure"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FhirServer]:
    s = fhir_server.start(tmp_path, "subscriptions: {retries: 3}\n")
    yield s
    s.stop()


def topic_basic() -> dict[str, Any]:
    from sekmet.subscriptions.backport import topic_basic as make  # the server's topic encoding

    return make("therapy-procedure", "Therapy procedure changed", "A Procedure was created or "
                "updated", "Procedure", "true", [("patient", "subject")])  # fmt: skip


def wait_for(
    fhir: FhirServer, patient: str, expected: list[tuple[str, int, tuple[str, ...]]]
) -> float:
    start = time.monotonic()
    found: list[Any] = []
    while time.monotonic() - start < 30:
        items = fhir.search(f"ChargeItem?subject=Patient/{patient}&status=billable&_count=50")
        found = sorted(
            (
                i["code"]["coding"][0]["code"],
                i["quantity"]["value"],
                tuple(e["valueCoding"]["code"] for e in i.get("extension", [])
                      if e["url"].endswith("charge-modifier")),
            )
            for i in items
        )  # fmt: skip
        if found == sorted(expected):
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"ChargeItems never matched: {found} != {expected}")


@pytest.mark.parametrize(
    ("kind", "content"),
    [("rest-hook", "full-resource"), ("rest-hook", "empty"),
     ("backport", "full-resource"), ("backport", "id-only")],
)  # fmt: skip
def test_subscription_delivery_writes_charges(
    server: FhirServer, tmp_path: Path, kind: str, content: str
) -> None:
    pid = f"hook-{kind}-{content}"
    server.put_all(*context(patient=pid))
    client = FhirClient(server.base)
    store = open_store(tmp_path / "state" / "adapter.db")
    service = Service(client, client, load_rulebook(), Options(), store)
    receiver = Receiver(service.inbox.enqueue, secret=SECRET)
    web = WebhookServer(receiver, "127.0.0.1", 0)
    web.start()
    service.start()
    try:
        if kind == "backport":
            server.put_all(topic_basic())
        wanted = subscriptions.desired(
            f"http://127.0.0.1:{web.port}/notify", kind=kind,  # type: ignore[arg-type]
            criteria=["Procedure?", "Encounter?"], content=content,
            topic=TOPIC if kind == "backport" else None, header=f"X-Adapter-Secret: {SECRET}",
        )  # fmt: skip
        actions = subscriptions.ensure(client, wanted)
        assert {a for a, _ in actions} == {"created"}
        assert {a for a, _ in subscriptions.ensure(client, wanted)} == {"unchanged"}
        time.sleep(0.5)  # backport handshake
        server.put_all(

            procedure(f"{pid}-a", "97530", at("09:00"), at("09:30"), patient=f"Patient/{pid}"),
            procedure(f"{pid}-b", "97116", at("09:30"), at("09:45"), "PractitionerRole/r-pta",
                      patient=f"Patient/{pid}"),
        )  # fmt: skip
        seconds = wait_for(server, pid, [("97530", 2, ("GP",)), ("97116", 1, ("GP", "CQ", "XU"))])
        print(f"{kind}/{content}: ChargeItems readable {seconds:.2f}s after the post")
        assert receiver.rejected == 0 and receiver.received >= 1
        subs = list(subscriptions.ours(client))
        assert all(s["status"] == "active" for s in subs), [s.get("error") for s in subs]
    finally:
        web.stop()
        service.stop()
        store.close()
    assert subscriptions.remove(client) and subscriptions.ours(client) == []
