"""A Procedure deleted in the EMR (not marked entered-in-error) stops being billed: polling finds
the delete in the type-level ``_history``, the ledger names the day it was billed on, and the
recomputed day voids its line. Against the real FHIR server; sekmet never notifies deletes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from adapter.fhir.client import FhirClient
from adapter.intake.live import ChangeEvent
from adapter.intake.polling import Watermark, poll
from adapter.intake.webhook import Notification
from adapter.mappings import load_rulebook
from adapter.pipeline import Options
from adapter.service import Service
from adapter.store import open_store
from tests.fault_proxy import FaultProxy
from tests.fhir_server import FhirServer
from tests.live.seed import seed_days, server_state

RULEBOOK = load_rulebook()


def test_a_deleted_procedure_is_voided_at_the_next_poll(
    fresh_fhir: FhirServer, tmp_path: Path
) -> None:
    (notified,) = seed_days(fresh_fhir, "gone", 1)  # 97112 24 min + 97110 23 min
    deleted = notified[:-1] + "b"  # the 97110
    client = FhirClient(fresh_fhir.base)
    store = open_store(tmp_path / "d.db")
    service = Service(client, client, RULEBOOK, Options(), store)
    service.enqueue(Notification(events=(ChangeEvent("Procedure", notified, source="test"),)))
    assert service.drain(timeout=60)
    lines, items, claims = server_state(fresh_fhir, "gone")
    assert lines == {"Patient/gone-0": [("97110", 1, "billable"), ("97112", 2, "billable")]}

    service.catch_up()  # moves the watermark past the seeding
    assert service.drain(timeout=60)
    status, _ = fresh_fhir.request("DELETE", f"Procedure/{deleted}")
    assert status in (200, 204)
    assert service.catch_up() == 1  # the delete, and nothing else
    assert service.drain(timeout=60)

    lines, items, claims = server_state(fresh_fhir, "gone")
    # 24 minutes of 97112 alone: 2 units; the 97110 line is voided, not left billable
    assert lines == {"Patient/gone-0": [("97110", 1, "entered-in-error"), ("97112", 2, "billable")]}
    assert (items, claims) == (2, 1)
    assert set(store.counts()) == {"done"}  # nothing failed, nothing left
    # polling again finds nothing new (the delete is behind the watermark)
    assert service.catch_up() == 0
    store.close()


def test_poll_lists_a_delete_once_as_a_reference_only_event(fresh_fhir: FhirServer) -> None:
    (pid,) = seed_days(fresh_fhir, "gone2", 1)
    client = FhirClient(fresh_fhir.base)
    _, mark = poll(client, Watermark(since="2020-01-01T00:00:00Z"))
    fresh_fhir.request("DELETE", f"Procedure/{pid}")
    events, mark = poll(client, mark)
    assert [(e.kind, e.id, e.resource, e.source) for e in events] == [
        ("Procedure", pid, None, "poll")
    ]
    assert events[0].version  # from the history entry's ETag
    assert poll(client, mark)[0] == []


def test_a_server_without_type_history_still_polls(
    fresh_fhir: FhirServer, caplog: pytest.LogCaptureFixture
) -> None:
    (pid,) = seed_days(fresh_fhir, "gone3", 1)
    proxy = FaultProxy(fresh_fhir.base)
    try:
        client = FhirClient(proxy.base)
        # Procedure search (1 page), then Procedure/_history refused, then Encounter as usual
        proxy.plan.extend(["pass", "404"])
        with caplog.at_level(logging.WARNING):
            events, _ = poll(client, Watermark(since="2020-01-01T00:00:00Z"))
        assert pid in {e.id for e in events}
        assert any("_history answered 404" in r.getMessage() for r in caplog.records)
        _, path, action = proxy.seen[1]
        assert "Procedure/_history" in path and action == "404"
    finally:
        proxy.close()
