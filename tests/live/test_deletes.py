"""A Procedure deleted in the EMR (not marked entered-in-error) stops being billed: polling finds
the delete in the type-level ``_history``, the ledger names the day it was billed on, and the
recomputed day voids its line. Against the real FHIR server; sekmet never notifies deletes."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapter.emr.client import FhirClient, RetryPolicy
from adapter.intake.events import ChangeEvent, Notification
from adapter.intake.inbox import WATERMARK
from adapter.intake.polling import Mark, Watermark, _deleted_id, poll, stamp
from adapter.mappings import load_rulebook
from adapter.pipeline import Options
from adapter.service import Service
from adapter.store import open_store
from tests.fault_proxy import FaultProxy
from tests.fhir_server import FhirServer
from tests.live.seed import day_of, seed_days, server_state

RULEBOOK = load_rulebook()


def test_a_deleted_procedure_is_voided_at_the_next_poll(
    fresh_fhir: FhirServer, tmp_path: Path
) -> None:
    (notified,) = seed_days(fresh_fhir, "gone", 1)  # 97112 24 min + 97110 23 min
    deleted = notified[:-1] + "b"  # the 97110
    client = FhirClient(fresh_fhir.base)
    store = open_store(tmp_path / "d.db")
    service = Service(client, client, RULEBOOK, Options(), store)
    service.inbox.enqueue(Notification(events=(ChangeEvent("Procedure", notified, source="test"),)))
    assert service.drain(timeout=60)
    lines, items, claims = server_state(fresh_fhir, "gone")
    assert lines == {"Patient/gone-0": [("97110", 1, "billable"), ("97112", 2, "billable")]}

    service.inbox.catch_up()  # moves the watermark past the seeding
    assert service.drain(timeout=60)
    status, _ = fresh_fhir.request("DELETE", f"Procedure/{deleted}")
    assert status in (200, 204)
    assert service.inbox.catch_up() == 1  # the delete, and nothing else
    assert service.drain(timeout=60)

    lines, items, claims = server_state(fresh_fhir, "gone")
    # 24 minutes of 97112 alone: 2 units; the 97110 line is voided, not left billable
    assert lines == {"Patient/gone-0": [("97110", 1, "entered-in-error"), ("97112", 2, "billable")]}
    assert (items, claims) == (2, 1)
    assert set(store.counts()) == {"done"}  # nothing failed, nothing left
    # polling again finds nothing new (the delete is behind the watermark)
    assert service.inbox.catch_up() == 0
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


def test_a_change_between_two_reads_of_one_poll_is_not_skipped(fresh_fhir: FhirServer) -> None:
    """Each read keeps its own watermark: a Procedure deleted after the poll read Procedure
    history, followed by an Encounter update the same poll then reads, is found next time."""
    (pid,) = seed_days(fresh_fhir, "race", 1)

    class RacingEmr(FhirClient):
        """The real client; the EMR changes right after the Procedure history was read."""

        raced = False

        def history(self, kind: str, params: Any) -> Iterator[dict[str, Any]]:
            yield from super().history(kind, params)
            if kind == "Procedure" and not self.raced:
                self.raced = True
                fresh_fhir.request("DELETE", f"Procedure/{pid}")
                time.sleep(0.01)
                encounter = self.read("Encounter", "race-0-enc")
                self.update({**encounter, "status": "finished"})

    client = RacingEmr(fresh_fhir.base)
    _, mark = poll(client, Watermark(since="2020-01-01T00:00:00Z"))
    assert client.raced
    events, _ = poll(client, mark)
    assert ("Procedure", pid, True) in {(e.kind, e.id, e.deleted) for e in events}


def test_a_failing_history_read_keeps_the_rest_of_the_poll(fresh_fhir: FhirServer) -> None:
    (pid,) = seed_days(fresh_fhir, "gone4", 1)
    proxy = FaultProxy(fresh_fhir.base)
    try:
        client = FhirClient(proxy.base, retry=RetryPolicy(attempts=2, sleep=lambda _: None))
        start = Watermark(since="2020-01-01T00:00:00Z")
        proxy.plan.extend(["pass", "503", "503"])  # Procedure search, then history fails twice
        events, mark = poll(client, start)
        assert pid in {e.id for e in events}  # the search's changes are kept
        assert mark.of("Procedure/_history") == start.of("Procedure/_history")  # asked again
        assert mark.of("Procedure").since != start.since
        fresh_fhir.request("DELETE", f"Procedure/{pid}")
        events, _ = poll(client, mark)
        assert [(e.id, e.deleted) for e in events if e.deleted] == [(pid, True)]
    finally:
        proxy.close()


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"request": {"method": "DELETE", "url": "Procedure/p1"}}, "p1"),
        ({"request": {"method": "DELETE", "url": "Procedure/p1/_history/3"}}, "p1"),
        (
            {"fullUrl": "https://emr.example/fhir/Procedure/p1", "request": {"method": "DELETE"}},
            "p1",
        ),
        (
            {
                "request": {"method": "DELETE", "url": "Procedure?identifier=x|1"},
                "response": {"status": "204", "location": "Procedure/p1/_history/2"},
            },
            "p1",
        ),
        ({"request": {"method": "DELETE", "url": "Procedure?identifier=x|1"}}, None),
        ({"request": {"method": "DELETE", "url": "Encounter/e1"}}, None),
    ],
)
def test_the_id_of_a_delete_entry(entry: dict[str, Any], expected: str | None) -> None:
    request = entry.get("request") or {}
    response = entry.get("response") or {}
    assert _deleted_id("Procedure", entry, request, response) == expected


def test_watermarks_carry_milliseconds() -> None:
    """Servers comparing instants as text put '...:33Z' after '...:33.653Z'."""
    assert stamp(datetime(2026, 3, 2, 9, 0, 33, tzinfo=UTC)) == "2026-03-02T09:00:33.000Z"
    stored = Watermark(
        since="2026-03-02T09:00:33Z", reads={"Procedure": Mark("2026-03-03T10:00:00.5Z")}
    )
    mark = Watermark.from_json(stored.as_json())  # as an older version stored it: normalised
    assert (mark.of("Procedure").since, mark.of("Encounter").since) == (
        "2026-03-03T10:00:00.500Z",
        "2026-03-02T09:00:33.000Z",
    )


def test_a_delete_is_voided_by_a_service_whose_store_never_saw_the_day(
    fresh_fhir: FhirServer, tmp_path: Path
) -> None:
    """The day comes from the ChargeItems' day tags on the server when the ledger has none
    (a new state directory, a replica with its own store)."""
    (notified,) = seed_days(fresh_fhir, "gone5", 1)
    deleted = notified[:-1] + "b"
    client = FhirClient(fresh_fhir.base)
    first = open_store(tmp_path / "first.db")
    Service(client, client, RULEBOOK, Options(), first).inbox.enqueue(
        Notification(events=(ChangeEvent("Procedure", notified, source="test"),))
    )
    assert Service(client, client, RULEBOOK, Options(), first).drain(timeout=60)
    first.close()

    store = open_store(tmp_path / "second.db")
    service = Service(client, client, RULEBOOK, Options(), store)
    time.sleep(0.05)  # the second store's watermark starts after the seeding (same clock)
    now = stamp(datetime.now(UTC))
    store.set_value(WATERMARK, json.dumps(Watermark(since=now).as_json()))
    fresh_fhir.request("DELETE", f"Procedure/{deleted}")
    assert service.inbox.catch_up() == 1
    assert service.drain(timeout=60)
    assert store.days_with(f"Procedure/{notified}") == ["gone5-0:" + day_of(0)]
    lines, _, _ = server_state(fresh_fhir, "gone5")
    assert lines == {"Patient/gone5-0": [("97110", 1, "entered-in-error"),
                                          ("97112", 2, "billable")]}  # fmt: skip
    store.close()


def test_the_history_mark_moves_with_updates_too(fresh_fhir: FhirServer) -> None:
    """Without deletes, each poll must not page through all history since the first one."""
    (pid,) = seed_days(fresh_fhir, "hist", 1)
    client = FhirClient(fresh_fhir.base)
    _, first = poll(client, Watermark(since="2020-01-01T00:00:00Z"))
    assert first.of("Procedure/_history").since != "2020-01-01T00:00:00.000Z"
    procedure = client.read("Procedure", pid)
    client.update({**procedure, "status": "completed"})
    events, second = poll(client, first)
    assert [e.id for e in events] == [pid]  # the update, from the search read
    assert second.of("Procedure/_history").since > first.of("Procedure/_history").since  # type: ignore[operator]
    assert poll(client, second)[0] == []


def test_a_history_longer_than_the_page_cap_moves_on_and_says_so(
    fresh_fhir: FhirServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Newest first, cut at the cap: the deletes read are kept, the mark moves on (or every poll
    would stop at the same page), and the lost window is logged as an error."""
    (pid,) = seed_days(fresh_fhir, "cap", 1)
    client = FhirClient(fresh_fhir.base)
    _, mark = poll(client, Watermark(since="2020-01-01T00:00:00Z"))
    others = [r for r in fresh_fhir.search("Procedure?_count=100") if r["id"] != pid][:3]
    for r in others:  # history entries older than the delete
        client.update({**r, "status": "completed"})
    fresh_fhir.request("DELETE", f"Procedure/{pid}")
    client.max_pages = 2
    with caplog.at_level(logging.ERROR):
        events, after = poll(client, mark, count=1)
    assert (pid, True) in {(e.id, e.deleted) for e in events}  # the newest page has it
    assert after.truncated == ["Procedure"]
    assert after.of("Procedure/_history").since != mark.of("Procedure/_history").since
    assert any("longer than the page cap" in r.getMessage() for r in caplog.records)


def test_a_malformed_day_tag_does_not_hide_the_other_billed_days(fresh_fhir: FhirServer) -> None:
    """The billed days of a procedure come from its ChargeItems' day tags; a tag that is not a
    patient-day key (someone else's) is skipped, the good one still counts (found in review:
    one bad tag made every lookup fail, so a deleted procedure's lines were never voided)."""
    from adapter.domain import PatientDay
    from adapter.emr.writeback import billed_days
    from adapter.fhir import codes

    client = FhirClient(fresh_fhir.base)
    for tag in ("tagged-0:2024-03-05", "tagged-0:bad-date", "no-colon"):
        client.create(
            {
                "resourceType": "ChargeItem",
                "meta": {"tag": [{"system": codes.CS_PATIENT_DAY, "code": tag}]},
                "status": "billable",
                "code": {"coding": [{"system": codes.CPT, "code": "97110"}]},
                "subject": {"reference": "Patient/tagged-0"},
                "service": [{"reference": "Procedure/tagged-x"}],
            }
        )
    for strict in (True, False):
        found = billed_days(client, "Procedure/tagged-x", strict=strict)
        assert found == {PatientDay.of("Patient/tagged-0", "2024-03-05")}
