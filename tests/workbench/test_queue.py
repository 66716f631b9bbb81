"""The workbench's store and records (issue 18) on the fixture library's days: the queue's
keyset pages cover every day once in order, its filters match what the days say, a day's
version changes only when its decision does; the decisions as the rules take them (revert,
hold); the AuditEvent of a decision is valid R4. On SQLite here, on PostgreSQL when the
server is there (slow)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapter.domain import FindingCode
from adapter.fhir.audit import audit_event
from adapter.mappings import load_rulebook
from adapter.pipeline import Options
from adapter.replay import decisions
from adapter.store import SqlStore, open_store
from adapter.store.review import QueueFilter
from adapter.workbench.state import day_review, record
from tests.conformance import conformance_errors

FIXTURES = Path(__file__).parents[2] / "fixtures"
RULEBOOK = load_rulebook()
CASES = sorted(p for p in FIXTURES.iterdir() if (p / "input.json").exists())
RECORDS = [
    (d.patient_id.split("/")[-1] + ":" + d.service_date.isoformat(),
     *record(d, r.parsed.day, "Organization/clinic-a" if n % 2 else "", RULEBOOK))
    for n, (r, d) in enumerate(decisions(CASES, RULEBOOK, Options()))
]  # fmt: skip


def _fill(store: SqlStore) -> None:
    for key, summary, body in RECORDS:
        store.review_put(key, summary, body, "sync")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    s = open_store(tmp_path / "q.db")
    _fill(s)
    yield s
    s.close()


def _pages(store: SqlStore, f: QueueFilter, sort: str, size: int) -> list[Any]:
    column = {"risk": "at_risk", "age": "first_seen", "date": "dos"}[sort]
    out, after = [], None
    while True:
        page = store.review_queue(f, sort=sort, after=after, limit=size)
        out += page
        if len(page) < size:
            return out
        after = (getattr(page[-1], column), page[-1].day)


@pytest.mark.parametrize("sort", ["risk", "age", "date"])
def test_pages_cover_every_day_once_in_order(store: SqlStore, sort: str) -> None:
    everything = QueueFilter(status="all")
    rows = _pages(store, everything, sort, 7)
    assert sorted(r.day for r in rows) == sorted({k for k, _, _ in RECORDS})
    keys = {"risk": lambda r: (-r.at_risk, r.day), "age": lambda r: (r.first_seen, r.day),
            "date": lambda r: (-int(r.dos.replace("-", "")), r.day)}[sort]  # fmt: skip
    assert rows == sorted(rows, key=keys)
    assert store.review_count(everything) == len(rows)


def test_filters_match_the_days(store: SqlStore) -> None:
    by_key = {k: s for k, s, _ in RECORDS}
    overlap = _pages(store, QueueFilter(status="all", finding="same-code-overlap"), "risk", 50)
    assert overlap and {r.day for r in overlap} == {
        k for k, s in by_key.items() if "same-code-overlap" in s["findings"]}  # fmt: skip
    held = _pages(store, QueueFilter(status="all", kind="held"), "risk", 50)
    assert {r.day for r in held} == {k for k, s in by_key.items() if s["held"]}
    clinic = _pages(store, QueueFilter(status="all", clinic="Organization/clinic-a"), "age", 50)
    assert clinic and all(r.clinic == "Organization/clinic-a" for r in clinic)
    someone = next(c for s in by_key.values() for c in s["clinicians"])
    theirs = _pages(store, QueueFilter(status="all", clinician=someone), "date", 50)
    assert {r.day for r in theirs} == {k for k, s in by_key.items() if someone in s["clinicians"]}
    dated = _pages(store, QueueFilter(status="all", date_from="2026-03-02",
                                      date_to="2026-03-02"), "risk", 50)  # fmt: skip
    assert dated and all(r.dos == "2026-03-02" for r in dated)
    # open: the days that need attention; done: the rest
    opened = store.review_count(QueueFilter(status="open"))
    done = store.review_count(QueueFilter(status="done"))
    assert opened + done == len(by_key) and opened > 0
    choices = store.review_choices()
    assert someone in choices["clinician"] and "same-code-overlap" in choices["finding"]


def test_a_version_only_when_the_decision_changes(store: SqlStore) -> None:
    key, summary, body = RECORDS[0]
    assert store.review_put(key, summary, body, "sync") == 1  # the same again: unchanged
    changed = {**body, "lines": []}
    assert store.review_put(key, summary, changed, "sync") == 2
    versions = store.review_versions(key)
    assert [v for v, _, _, _ in versions] == [2, 1] and versions[0][3]["lines"] == []


def test_decisions_as_the_rules_take_them(store: SqlStore) -> None:
    key = RECORDS[0][0]
    line = {"code": "97110", "discipline": "PT", "modifiers": ["GP"], "units": 1}
    first = store.review_act(key, user="b1", role="biller", action="override", payload=line,
                             reason="r1", version=1)  # fmt: skip
    store.review_act(key, user="m1", role="manager", action="release",
                     payload={"finding": "progress-report-missing", "interventions": ["x"]},
                     reason="on paper", version=1)  # fmt: skip
    store.review_act(key, user="m1", role="manager", action="hold", payload={}, reason="h",
                     version=1)  # fmt: skip
    review, held = day_review(store.review_actions(key))
    assert held and [o.ref for o in review.overrides] == [f"review:{first}"]
    assert review.overrides[0].units == 1 and review.overrides[0].by == "b1"
    assert review.released(FindingCode.PROGRESS_REPORT_MISSING, ("x",)) is not None
    assert review.released(FindingCode.PROGRESS_REPORT_MISSING, ("x", "y")) is None
    store.review_act(key, user="b1", role="biller", action="revert",
                     payload={"action": first}, reason="mistake", version=1)  # fmt: skip
    store.review_act(key, user="m1", role="manager", action="unhold", payload={}, reason="ok",
                     version=1)  # fmt: skip
    review, held = day_review(store.review_actions(key))
    assert not held and review.overrides == ()
    assert [a.action for a in store.review_actions(key)] == [
        "override", "release", "hold", "revert", "unhold"]  # fmt: skip


def test_the_audit_event_is_valid_r4() -> None:
    event = audit_event(salt="abc123", action_id=7, at=1_780_000_000.5, user="biller1",
                        role="biller", action="override", reason="2 units per the note",
                        patient="Patient/p1", day="p1:2026-03-02",
                        detail='override {"units": 2} on version 1')  # fmt: skip
    assert conformance_errors(event) == []
    assert event["id"] == "wb-abc123-7"


def test_the_queue_on_postgres(pg_dsn: str) -> None:
    s = open_store(pg_dsn)
    try:
        _fill(s)
        rows = _pages(s, QueueFilter(status="all"), "risk", 9)
        assert len(rows) == len({k for k, _, _ in RECORDS})
        assert rows == sorted(rows, key=lambda r: (-r.at_risk, r.day))
        held = _pages(s, QueueFilter(status="all", kind="held", finding="time-missing"), "age", 5)
        assert held and all("time-missing" in r.findings and r.held for r in held)
        assert s.review_report("SELECT COUNT(*) FROM review_lines")[0][0] > 0
    finally:
        s.close()


def test_a_held_days_queued_message_waits(tmp_path: Path) -> None:
    """(review finding) a message queued before the hold is not sent while the day is held:
    put back without counting a try; after the release it goes (here: to a closed port, a
    counted try)."""
    from adapter.delivery import Hl7Target
    from adapter.emr.client import FhirClient
    from adapter.service import Service

    store = open_store(tmp_path / "h.db")
    nowhere = FhirClient("http://127.0.0.1:9/fhir")
    target = Hl7Target(name="dft", host="127.0.0.1", port=9, timeout=0.5)
    service = Service(nowhere, nowhere, RULEBOOK, Options(), store, targets=[target])
    day = "p1:2026-03-02"
    item = store.outbox_queue("dft", day, 1, {"lines": []})
    assert item is not None
    store.review_act(day, user="m1", role="manager", action="hold", payload={}, reason="x",
                     version=1)  # fmt: skip
    assert service.held(day) and service.deliver_once(target)
    row = store.outbox_get(item)
    assert row is not None and row.status == "pending" and row.attempts == 0
    assert row.last_error == "held by the billing office"
    store.close()


def test_an_unreadable_decision_is_left_out(store: SqlStore) -> None:
    """(review finding) a payload no form makes (a discipline that does not exist) no longer
    breaks every sync of the day: it is left out."""
    key = RECORDS[0][0]
    store.review_act(key, user="b1", role="biller", action="override",
                     payload={"code": "97110", "discipline": "XX", "modifiers": ["GP"],
                              "units": 1}, reason="r", version=1)  # fmt: skip
    review, held = day_review(store.review_actions(key))
    assert review.overrides == () and not held


def test_the_kx_report_counts_the_days_over_the_threshold(store: SqlStore) -> None:
    """(review finding) kx-applied is an info finding: the report counted none before."""
    from adapter.workbench.reports import kx_crossings

    days = sum(1 for _, s, _ in RECORDS if "kx-applied" in s["notes"])
    assert days > 0
    assert sum(n for _, n in kx_crossings(store, None, None).rows) == days
