"""Nothing lost, nothing doubled: fault tests against the real FHIR server and real databases.

Each prints one line: events sent, written, duplicates, lost, seconds.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapter.domain import PatientDay
from adapter.emr.client import FhirClient, RetryPolicy
from adapter.intake.events import ChangeEvent, InboxPayload, Notification, event_of
from adapter.intake.inbox import WATERMARK
from adapter.intake.polling import Watermark, stamp
from adapter.intake.webhook import Receiver
from adapter.mappings import load_rulebook
from adapter.pipeline import Options
from adapter.service import Service
from adapter.store import SqlStore, open_store
from tests.fault_proxy import FaultProxy
from tests.fhir.make import at
from tests.fhir_server import FhirServer
from tests.live.seed import EXPECTED_PER_DAY, day_of, seed_days, server_state

RULEBOOK = load_rulebook()
EXE = str(Path(sys.executable).parent / "charge-adapter")


def figure(name: str, sent: int, written: int, duplicates: int, lost: int, seconds: float) -> None:
    print(f"\n{name}: events sent {sent}, written {written}, duplicates {duplicates}, "
          f"lost {lost}, {seconds:.1f} s")  # fmt: skip


def check(fhir: FhirServer, prefix: str, days: int) -> tuple[int, int, int]:
    """(patient-days written correctly, duplicates, lost); asserts the server is exact."""
    lines, items, claims = server_state(fhir, prefix)
    good = sum(1 for v in lines.values() if v == EXPECTED_PER_DAY)
    duplicates = items - 2 * days + claims - days if items > 2 * days or claims > days else 0
    lost = days - good
    assert (good, items, claims) == (days, 2 * days, days), (good, items, claims)
    return good, max(0, duplicates), lost


def enqueue_all(service: Service, ids: list[str]) -> None:
    for pid in ids:
        service.inbox.enqueue(Notification(events=(ChangeEvent("Procedure", pid, source="test"),)))


def test_server_failures_for_a_stretch_then_recovery(
    fresh_fhir: FhirServer, tmp_path: Path
) -> None:
    days = 30
    ids = seed_days(fresh_fhir, "outage", days)
    proxy = FaultProxy(fresh_fhir.base)
    store = open_store(tmp_path / "a.db", max_attempts=20, base_delay=0.05)
    try:
        # reads and writes both go through the failing proxy
        policy = RetryPolicy(attempts=3, initial_delay=0.01, sleep=lambda s: None)
        client = FhirClient(proxy.base, timeout=(2.0, 1.0), retry=policy)
        service = Service(client, client, RULEBOOK, Options(), store, lease=30)
        start = time.monotonic()
        enqueue_all(service, ids)
        proxy.plan.extend(["503", "500", "429:0", "sleep:1.5", "lost:503", "502"] * 12)
        assert service.drain(timeout=240)
        seconds = time.monotonic() - start
        written, duplicates, lost = check(fresh_fhir, "outage", days)
        injected = sum(1 for *_, a in proxy.seen if a != "pass")
        print(f"\n(injected {injected} faults; client retries {client.retries}; "
              f"inbox retries {service.counters.failures})")  # fmt: skip
        figure("outage then recovery", len(ids), written, duplicates, lost, seconds)
        assert injected >= 60 and store.counts() == {"done": days}
    finally:
        proxy.close()
        store.close()


def test_sigkill_mid_batch_then_restart(fresh_fhir: FhirServer, tmp_path: Path) -> None:
    days = 200
    ids = seed_days(fresh_fhir, "killed", days)
    db = tmp_path / "inbox.db"
    store = open_store(db)
    client = FhirClient(fresh_fhir.base)
    enqueue_all(Service(client, client, RULEBOOK, Options(), store), ids)
    cfg = tmp_path / "adapter.toml"
    cfg.write_text(
        f'emr_base_url = "{fresh_fhir.base}"\nstore = "sqlite:///{db}"\nlease_seconds = 2\n'
    )
    start = time.monotonic()
    command = [EXE, "work", "--until-empty", "--config", str(cfg)]
    worker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(store.runs()) < 40:
        time.sleep(0.05)
    done_before = len(store.runs())
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(10)
    assert 0 < done_before < days, done_before
    restarted = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert restarted.returncode == 0, restarted.stderr
    seconds = time.monotonic() - start
    written, duplicates, lost = check(fresh_fhir, "killed", days)
    runs = store.runs()
    assert {d for d, *_ in runs} == {f"killed-{n}:{day_of(n)}" for n in range(days)}
    print(f"\n(killed after {done_before} patient-days; restart finished the rest)")
    figure("SIGKILL mid-batch", len(ids), written, duplicates, lost, seconds)
    assert store.counts() == {"done": days}
    store.close()


def test_same_notification_five_times_and_versions_out_of_order(
    fresh_fhir: FhirServer, tmp_path: Path
) -> None:
    ids = seed_days(fresh_fhir, "redeliver", 1)
    client = FhirClient(fresh_fhir.base)
    store = open_store(tmp_path / "r.db")
    service = Service(client, client, RULEBOOK, Options(), store)
    receiver = Receiver(service.inbox.enqueue, allow_unauthenticated=True)
    v1 = client.read("Procedure", ids[0])
    v2 = copy.deepcopy(v1)
    v2["performedPeriod"]["start"] = at("08:45", day_of(0))  # 97112 24 -> 39 min: 62 min -> 4 units
    v2 = client.update(v2)
    start = time.monotonic()
    sent = 0
    for resource in [v2] * 5 + [v1] * 5:  # the newest first, then the old version late, 5x each
        assert (
            receiver.handle("PUT", f"/notify/Procedure/{ids[0]}", {}, _body(resource)).status == 200
        )
        sent += 1
    assert service.drain(timeout=60)
    seconds = time.monotonic() - start
    lines, items, claims = server_state(fresh_fhir, "redeliver")
    assert lines == {"Patient/redeliver-0": [("97110", 1, "billable"), ("97112", 3, "billable")]}
    assert (items, claims) == (2, 1)
    runs = store.runs()
    assert len(runs) == 1 and runs[0][3]  # processed once; the rest recognised from the ledger
    assert store.counts() == {"done": 2}  # 10 deliveries, 2 distinct versions stored
    figure("redelivered 5x, out of order", sent, 1, 0, 0, seconds)
    store.close()


def test_two_replicas_on_postgresql(fresh_fhir: FhirServer, pg_dsn: str, tmp_path: Path) -> None:
    days = 500
    ids = seed_days(fresh_fhir, "replica", days, chunk=100)
    store: SqlStore = open_store(pg_dsn)
    client = FhirClient(fresh_fhir.base)
    feeder = Service(client, client, RULEBOOK, Options(), store)
    enqueue_all(feeder, ids)
    enqueue_all(feeder, ids[::5])  # some deliveries twice (no version: stored again)
    cfg = tmp_path / "adapter.toml"
    cfg.write_text(f'emr_base_url = "{fresh_fhir.base}"\nstore = "{pg_dsn}"\n')
    start = time.monotonic()
    logs = [tmp_path / f"replica-{k}.log" for k in range(2)]
    handles = [path.open("w") for path in logs]
    replicas = [
        subprocess.Popen(
            [EXE, "work", "--until-empty", "--config", str(cfg)], stdout=h, stderr=subprocess.STDOUT
        )
        for h in handles
    ]
    try:
        for r in replicas:
            r.wait(timeout=600)
    finally:
        for r in replicas:
            if r.poll() is None:
                r.kill()
                r.wait()
        for h in handles:
            h.close()
    outputs = [("", p.read_text()) for p in logs]
    seconds = time.monotonic() - start
    assert all(r.returncode == 0 for r in replicas), [o[1][-500:] for o in outputs]
    written, duplicates, lost = check(fresh_fhir, "replica", days)
    runs = store.runs()
    by_day: dict[str, set[str]] = {}
    for day, _, digest, _ in runs:
        by_day.setdefault(day, set()).add(digest)
    assert len(by_day) == days and all(len(h) == 1 for h in by_day.values())
    workers = Counter(w for _, w, _, _ in runs)
    assert len(workers) == 2 and min(workers.values()) > days // 10, workers  # both did work
    print(f"\n(patient-days per replica: {sorted(workers.values())}; runs {len(runs)})")
    figure(
        "two replicas on PostgreSQL", len(ids) + len(ids[::5]), written, duplicates, lost, seconds
    )
    store.close()


def _body(resource: dict[str, object]) -> bytes:
    import json

    event_of(resource, "rest-hook")
    return json.dumps(resource).encode()


def test_two_notifications_of_one_transaction_sync_the_day_once(
    fresh_fhir: FhirServer, tmp_path: Path
) -> None:
    """An EMR transaction of two procedures sends two notifications; with several workers both
    can pass the inbox's stale check before either has synced. The worker that gets the day
    lock second finds both versions in the ledger and does not gather the day again."""
    ids = seed_days(fresh_fhir, "twice", 1)
    client = FhirClient(fresh_fhir.base)
    store = open_store(tmp_path / "t.db")
    service = Service(client, client, RULEBOOK, Options(), store)
    a, b = (client.read("Procedure", pid) for pid in (ids[0], ids[0][:-1] + "b"))
    first, second = (InboxPayload.of(Notification(events=(event_of(r, "test"),))) for r in (a, b))
    second_days = service._days(second)  # the second worker's view, before the first syncs
    assert len(second_days) == 1
    assert len(service.process(first)) == 1  # gathers the day: both procedures, both versions
    (day, changes), *_ = second_days.items()
    assert service.sync(day, changes=changes) is None
    assert service.sync(day) is not None  # without events: always synced
    assert [changed for *_, changed in store.runs()] == [True, False]
    _, items, claims = server_state(fresh_fhir, "twice")
    assert (items, claims) == (2, 1)
    store.close()


def test_an_idle_worker_wakes_when_a_notification_is_stored(
    fresh_fhir: FhirServer, tmp_path: Path
) -> None:
    """Workers poll the inbox every ``idle_sleep`` seconds for other processes' rows, but a
    notification this process stores wakes them at once (here: long before the 60 s poll)."""
    ids = seed_days(fresh_fhir, "wake", 1)
    client = FhirClient(fresh_fhir.base)
    store = open_store(tmp_path / "w.db")
    service = Service(client, client, RULEBOOK, Options(), store)
    service.start(workers=2, idle_sleep=60)
    try:
        time.sleep(0.5)  # both workers found the inbox empty and are waiting
        enqueue_all(service, ids)
        deadline = time.monotonic() + 20
        while store.counts() != {"done": 1} and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.counts() == {"done": 1}
    finally:
        service.stop(timeout=5)
    assert not any(t.is_alive() for t in service._threads)  # stop wakes them too
    store.close()


def _move(client: FhirClient, proc_id: str, enc_id: str, newday: str) -> dict[str, object]:
    """Move a procedure (with a new encounter of its own) to ``newday``."""
    enc = client.read("Encounter", enc_id)
    moved_enc = {**copy.deepcopy(enc), "id": f"{enc_id}-moved",
                 "period": {"start": at("08:00", newday), "end": at("12:00", newday)}}  # fmt: skip
    moved_enc.pop("meta", None)
    client.update(moved_enc)
    proc = copy.deepcopy(client.read("Procedure", proc_id))
    proc["performedPeriod"] = {"start": at("09:24", newday), "end": at("09:47", newday)}
    proc["encounter"] = {"reference": f"Encounter/{moved_enc['id']}"}
    return client.update(proc)


def _synced_day(
    fhir: FhirServer, prefix: str, db: Path
) -> tuple[str, FhirClient, SqlStore, Service]:
    """One seeded patient-day (97112 + 97110), synced by a service on its own store."""
    (notified,) = seed_days(fhir, prefix, 1)
    client = FhirClient(fhir.base)
    store = open_store(db)
    service = Service(client, client, RULEBOOK, Options(), store)
    service.inbox.enqueue(Notification(events=(ChangeEvent("Procedure", notified, source="test"),)))
    assert service.drain(timeout=60)
    return notified, client, store, service


def test_a_procedure_moved_to_an_earlier_date_leaves_its_old_day(
    fresh_fhir: FhirServer, tmp_path: Path
) -> None:
    """The new (earlier) day is synced first and records the new version; the old day must not
    then count the change as processed: it still bills the procedure until recomputed."""
    notified, client, store, service = _synced_day(fresh_fhir, "mv", tmp_path / "m.db")
    old_day = day_of(0)
    moved = _move(client, notified[:-1] + "b", "mv-0-enc", "2025-01-05")
    assert old_day > "2025-01-05"
    service.inbox.enqueue(Notification(events=(event_of(moved, "rest-hook"),)))
    assert service.drain(timeout=60)
    items = fresh_fhir.search("ChargeItem?subject=Patient/mv-0&_count=100")
    billed = sorted(i["code"]["coding"][0]["code"] for i in items if i["status"] == "billable")
    # 97110 is billed once, on its new day; the old day keeps 97112 only
    assert billed == ["97110", "97112"]
    assert store.days_with(f"Procedure/{notified[:-1]}b") == ["mv-0:2025-01-05"]
    assert store.counts() == {"done": 2}  # a plain move queues no recheck
    store.close()


def test_a_failed_old_day_is_retried_after_its_new_day_was_synced(
    fresh_fhir: FhirServer, tmp_path: Path
) -> None:
    """A moved procedure's new day syncs, its old day fails: the retry must not drop the
    change as already processed (the old day still holds the old version in the ledger)."""
    notified, client, store, service = _synced_day(fresh_fhir, "mvf", tmp_path / "f.db")
    moved = _move(client, notified[:-1] + "b", "mvf-0-enc", "2027-01-05")
    payload = InboxPayload.of(Notification(events=(event_of(moved, "rest-hook"),)))
    days = service._days(payload)
    assert len(days) == 2
    new_day = min(days, key=lambda d: str(d.service_date) != "2027-01-05")  # the moved one's
    service.sync(new_day, changes=days[new_day])  # the new day succeeds; the old one "failed"
    retried = service._days(payload)  # the inbox retries the whole notification
    assert any(str(d.service_date) == day_of(0) for d in retried), retried
    service.process(payload)
    assert store.days_with(f"Procedure/{notified[:-1]}b") == ["mvf-0:2027-01-05"]
    store.close()


@dataclass
class _Race:
    """One procedure on 2026-03-02, two workers on one store, and worker 1's gather paused
    (the real gather; worker 1 then waits for ``release``)."""

    client: FhirClient
    store: SqlStore
    worker1: Service
    worker2: Service
    v1: dict[str, Any]
    gathered: threading.Event
    release: threading.Event


def _race(fhir: FhirServer, prefix: str, db: Path, monkeypatch: pytest.MonkeyPatch) -> _Race:
    from adapter import pipeline
    from tests.fhir.make import context, procedure

    pid = f"{prefix}-x"
    a = procedure(f"{prefix}-a", "97110", at("09:00"), at("09:24"), patient=f"Patient/{pid}",
                  encounter=None)  # fmt: skip
    fhir.put_all(*context(patient=pid), a)
    client = FhirClient(fhir.base)
    store = open_store(db)
    gathered, release = threading.Event(), threading.Event()
    real = pipeline.gather_day

    def paused(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        if threading.current_thread().name == "worker-1":
            gathered.set()
            release.wait(10)
        return out

    monkeypatch.setattr(pipeline, "gather_day", paused)
    return _Race(
        client, store, Service(client, client, RULEBOOK, Options(), store),
        Service(client, client, RULEBOOK, Options(), store),
        client.read("Procedure", f"{prefix}-a"), gathered, release,
    )  # fmt: skip


def _move_during(race: _Race, run: Callable[[], object]) -> None:
    """Run ``run`` (worker 1's processing) in a thread; once worker 1 has read the day, move the
    procedure to 2026-03-03 and let worker 2 sync it; then let worker 1 write."""
    thread = threading.Thread(target=run, name="worker-1")
    thread.start()
    assert race.gathered.wait(10)
    v1 = race.v1
    moved = {**v1, "performedPeriod": {"start": at("09:00", "2026-03-03"),
                                       "end": at("09:24", "2026-03-03")}}  # fmt: skip
    v2 = race.client.update(moved)
    race.worker2.process(InboxPayload.of(Notification(events=(event_of(v2, "rest-hook"),))))
    race.release.set()
    thread.join(30)


def test_a_move_while_another_worker_syncs_the_old_day_is_rechecked(
    fresh_fhir: FhirServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker 1 reads the old day, the EMR moves the procedure, worker 2 syncs the new day, then
    worker 1 writes the old day from its older read: the procedure is billed on both days until
    the ledger's 'also on another day' check queues a recheck, which voids the old day."""
    race = _race(fresh_fhir, "race", tmp_path / "race.db", monkeypatch)
    first = InboxPayload.of(Notification(events=(event_of(race.v1, "rest-hook"),)))
    _move_during(race, lambda: race.worker1.process(first))
    store = race.store
    assert store.days_with("Procedure/race-a") == ["race-x:2026-03-02", "race-x:2026-03-03"]
    assert race.worker2.drain(timeout=60)  # the recheck worker 1 queued
    items = fresh_fhir.search("ChargeItem?subject=Patient/race-x&_count=100")
    billed = sorted(
        next(t["code"] for t in i["meta"]["tag"] if ":" in t.get("code", ""))
        for i in items
        if i["status"] == "billable"
    )
    assert billed == ["race-x:2026-03-03"]
    assert store.days_with("Procedure/race-a") == ["race-x:2026-03-03"]
    store.close()


def test_an_id_only_change_finds_a_day_the_store_never_recorded(
    fresh_fhir: FhirServer, tmp_path: Path
) -> None:
    """A day written but not recorded (a crash between the write and the ledger, a new state
    directory), then the procedure moves and an id-only notification arrives: the old day is
    found from the ChargeItems' day tags and voided."""
    notified, client, first, _ = _synced_day(fresh_fhir, "lost", tmp_path / "first.db")
    first.close()

    moved_id = notified[:-1] + "b"
    _move(client, moved_id, "lost-0-enc", "2025-01-03")
    store = open_store(tmp_path / "second.db")  # knows nothing of the first day
    service = Service(client, client, RULEBOOK, Options(), store)
    service.inbox.enqueue(
        Notification(events=(ChangeEvent("Procedure", moved_id, source="rest-hook"),))
    )
    assert service.drain(timeout=60)
    items = fresh_fhir.search("ChargeItem?subject=Patient/lost-0&_count=100")
    billable = sorted(
        (i["code"]["coding"][0]["code"], next(t["code"] for t in i["meta"]["tag"]
                                              if ":" in t.get("code", "")))
        for i in items if i["status"] == "billable"
    )  # fmt: skip
    assert billable == [("97110", "lost-0:2025-01-03"), ("97112", f"lost-0:{day_of(0)}")]
    store.close()


def test_an_old_day_that_keeps_failing_does_not_flood_the_inbox(
    fresh_fhir: FhirServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A moved procedure's old day fails every time: its notification fails into a dead letter
    (visible) and queues no rechecks; nothing multiplies."""
    import adapter.service as service_mod
    from adapter.errors import FatalServerError

    notified, client, store, _ = _synced_day(fresh_fhir, "flood", tmp_path / "x.db")
    store.close()
    store = open_store(tmp_path / "x.db", max_attempts=3, base_delay=0.01)
    service = Service(client, client, RULEBOOK, Options(), store)
    old_day = day_of(0)
    real = service_mod.sync_day

    def failing_old_day(*args: Any, **kwargs: Any) -> Any:  # the real sync; the old day fails
        if str(kwargs["day"].service_date) == old_day:
            raise FatalServerError("refused", status=400)
        return real(*args, **kwargs)

    monkeypatch.setattr(service_mod, "sync_day", failing_old_day)
    moved = _move(client, notified[:-1] + "b", "flood-0-enc", "2025-01-03")
    service.inbox.enqueue(Notification(events=(event_of(moved, "rest-hook"),)))
    assert service.drain(timeout=60)
    assert store.counts() == {"done": 1, "dead": 1}  # the first day's, and the failing one
    store.close()


def test_a_retry_after_a_crash_before_the_recheck_still_rechecks(
    fresh_fhir: FhirServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in the race above, but worker 1 dies after writing the old day and before queueing
    the recheck; the inbox retries its item, whose day is now 'already processed': the retry
    must still see the procedure on two days and queue the recheck."""
    race = _race(fresh_fhir, "crash", tmp_path / "crash.db", monkeypatch)

    def crash(procs: set[str], generation: int = 1) -> None:
        raise RuntimeError("worker 1 killed")

    monkeypatch.setattr(race.worker1.inbox, "recheck", crash)
    first = InboxPayload.of(Notification(events=(event_of(race.v1, "rest-hook"),)))
    died: list[BaseException] = []

    def run() -> None:
        try:
            race.worker1.process(first)
        except RuntimeError as err:
            died.append(err)

    _move_during(race, run)
    store = race.store
    assert died and store.days_with("Procedure/crash-a") == [
        "crash-x:2026-03-02", "crash-x:2026-03-03"
    ]  # fmt: skip
    monkeypatch.undo()
    assert race.worker1.process(first) == []  # the retry: its day is already processed
    assert race.worker2.drain(timeout=60)  # the recheck it queued
    assert store.days_with("Procedure/crash-a") == ["crash-x:2026-03-03"]
    store.close()


def test_the_sweep_rechecks_a_procedure_left_on_two_days_and_rechecks_are_bounded(
    fresh_fhir: FhirServer, tmp_path: Path
) -> None:
    """The ledger is the durable signal: whatever lost a recheck (a crash, a dead letter), the
    next sweep finds the procedure on two days and queues it. Rechecks are queued once per
    ledger state (a day written again is a new state) and stop after MAX_RECHECKS in a row."""
    from adapter.intake.inbox import MAX_RECHECKS

    notified, client, store, service = _synced_day(fresh_fhir, "sweep", tmp_path / "s.db")
    moved_id = notified[:-1] + "b"
    old_day = f"sweep-0:{day_of(0)}"
    _move(client, moved_id, "sweep-0-enc", "2025-01-03")
    # the new day synced, the old day's recompute lost: the ledger holds the procedure twice
    service.sync(PatientDay.of("Patient/sweep-0", "2025-01-03"))
    assert sorted(store.days_with(f"Procedure/{moved_id}")) == [
        "sweep-0:2025-01-03", old_day
    ]  # fmt: skip
    # the sync's own recheck (no caller to wait for), and the old (later) day's history
    # recheck: a new earlier treatment day changes its progress-report count
    assert store.counts().get("pending") == 2
    assert sorted(r[0] for r in store._run("SELECT source FROM inbox WHERE status = 'pending'")) \
        == ["history", "recheck"]  # fmt: skip
    store._run("DELETE FROM inbox WHERE source IN ('recheck', 'history')")  # lost, as to a crash
    service.inbox.recheck({f"Procedure/{moved_id}"}, MAX_RECHECKS + 1)  # too many in a row: none
    assert store.counts().get("pending") is None
    service.inbox.recheck({f"Procedure/{moved_id}"})
    service.inbox.recheck({f"Procedure/{moved_id}"})  # the same ledger state: queued once
    assert store.counts().get("pending") == 1
    service.inbox.catch_up()  # the sweep: the same state, already queued
    assert service.drain(timeout=60)
    assert store.days_with(f"Procedure/{moved_id}") == ["sweep-0:2025-01-03"]
    billable = sorted(
        i["code"]["coding"][0]["code"]
        for i in fresh_fhir.search("ChargeItem?subject=Patient/sweep-0&_count=100")
        if i["status"] == "billable"
    )
    assert billable == ["97110", "97112"]  # once each: 97110 on its new day only
    store.close()


def test_the_sweep_alone_finds_a_procedure_on_two_days(
    fresh_fhir: FhirServer, tmp_path: Path
) -> None:
    notified, client, store, service = _synced_day(fresh_fhir, "sweep2", tmp_path / "s2.db")
    moved_id = notified[:-1] + "b"
    _move(client, moved_id, "sweep2-0-enc", "2025-01-03")
    service.sync(PatientDay.of("Patient/sweep2-0", "2025-01-03"))
    store._run("DELETE FROM inbox WHERE source = 'recheck'")  # its recheck lost to a crash
    time.sleep(0.05)  # the sweep's poll starts after the move (so only the backstop finds it)
    store.set_value(WATERMARK, json.dumps(Watermark(since=stamp(datetime.now(UTC))).as_json()))
    assert service.inbox.catch_up() == 0
    assert service.drain(timeout=60)
    assert store.days_with(f"Procedure/{moved_id}") == ["sweep2-0:2025-01-03"]
    store.close()
