"""The durable store, on SQLite and on a real PostgreSQL server (same behaviour)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from adapter.store import SqlStore, open_store


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'adapter.db'}"
    return str(request.getfixturevalue("pg_dsn"))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(url: str, clock: Clock) -> Iterator[SqlStore]:
    s = open_store(url, clock=clock, max_attempts=3, base_delay=10)
    yield s
    s.close()


def test_enqueue_is_durable_and_deduplicated(store: SqlStore, url: str) -> None:
    assert store.enqueue({"events": [{"kind": "Procedure", "id": "a"}]}, source="rest-hook",
                         dedupe="rest-hook:Procedure/a@2")  # fmt: skip
    for _ in range(4):  # the same delivery four more times
        assert not store.enqueue(
            {"events": []}, source="rest-hook", dedupe="rest-hook:Procedure/a@2"
        )
    assert store.enqueue({"catch_up": True}, source="ping")  # no dedupe key: always stored
    assert store.enqueue({"catch_up": True}, source="ping")
    again = open_store(url)  # another process opening the same store sees them
    try:
        assert again.counts() == {"pending": 3}
    finally:
        again.close()


def test_claim_lease_complete(store: SqlStore, clock: Clock) -> None:
    for n in range(5):
        store.enqueue({"n": n}, source="poll", dedupe=f"x{n}")
    first = store.claim("w1", limit=3, lease=30)
    assert [i.payload["n"] for i in first] == [0, 1, 2] and all(i.attempts == 1 for i in first)
    second = store.claim("w2", limit=10, lease=30)
    assert [i.payload["n"] for i in second] == [3, 4]
    assert store.claim("w3") == []
    store.complete(first[0].id)
    clock.now += 31  # w1 and w2 died: their unfinished rows come back after the lease
    back = store.claim("w3", limit=10)
    assert sorted(i.payload["n"] for i in back) == [1, 2, 3, 4]
    assert store.counts() == {"done": 1, "processing": 4}


def test_failures_back_off_then_become_dead_letters(store: SqlStore, clock: Clock) -> None:
    store.enqueue({"n": 1}, source="rest-hook", dedupe="one")
    (item,) = store.claim("w")
    assert store.fail(item.id, "TemporaryServerError: 503") == "retry"
    assert store.claim("w") == []  # backing off
    clock.now += 10
    (item,) = store.claim("w")
    assert store.fail(item.id, "again") == "retry"
    clock.now += 20
    (item,) = store.claim("w")
    assert item.attempts == 3
    assert store.fail(item.id, "FatalServerError: 422 invalid") == "dead"
    clock.now += 1000
    assert store.claim("w") == []
    (dead,) = store.dead_letters()
    assert dead.last_error == "FatalServerError: 422 invalid" and dead.status == "dead"
    assert store.get(dead.id) == dead
    assert store.retry(dead.id) and store.counts() == {"pending": 1}
    (item,) = store.claim("w")
    assert item.attempts == 1
    for _ in range(3):  # fail it to death again
        store.fail(item.id, "x")
        clock.now += 100
        item = next(iter(store.claim("w")), item)
    assert not store.discard(12345)
    assert store.discard(dead.id) and store.dead_letters() == [] and store.counts() == {}


def test_concurrent_claims_never_share_a_row(url: str) -> None:
    seed = open_store(url)
    for n in range(300):
        seed.enqueue({"n": n}, source="poll", dedupe=f"c{n}")
    seed.close()
    claimed: dict[str, list[int]] = {}

    def worker(name: str) -> None:
        s = open_store(url)
        got: list[int] = []
        while batch := s.claim(name, limit=7):
            got += [i.payload["n"] for i in batch]
            for i in batch:
                s.complete(i.id)
        claimed[name] = got
        s.close()

    threads = [threading.Thread(target=worker, args=(f"w{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [n for got in claimed.values() for n in got]
    assert sorted(everything) == list(range(300))  # none missed, none twice


def test_ledger_runs_and_values(store: SqlStore) -> None:
    assert store.ledger_get("p1:2026-03-02") is None
    store.ledger_put("p1:2026-03-02", {"Procedure/a": "3", "Procedure/b": "1"}, "h1",
                     {"created": 3}, worker="w1", changed=True)  # fmt: skip
    store.ledger_put("p1:2026-03-02", {"Procedure/a": "4", "Procedure/b": "1"}, "h2",
                     {"updated": 1}, worker="w2", changed=True)  # fmt: skip
    entry = store.ledger_get("p1:2026-03-02")
    assert entry and entry.inputs == {"Procedure/a": "4", "Procedure/b": "1"}
    assert entry.decision_hash == "h2" and entry.written == {"updated": 1}
    assert store.days_with("Procedure/a") == ["p1:2026-03-02"]
    assert store.processed("Procedure/a", "4") and store.processed("Procedure/a", "3")
    assert not store.processed("Procedure/a", "5") and not store.processed("Procedure/z", "1")
    assert [r[2] for r in store.runs()] == ["h1", "h2"]
    store.set_value("watermark", "a")
    store.set_value("watermark", "b")
    assert store.get_value("watermark") == "b" and store.get_value("other") is None


def test_day_lock_serialises_one_day(store: SqlStore) -> None:
    order: list[str] = []

    def hold(tag: str) -> None:
        with store.day_lock("p1:2026-03-02"):
            order.append(f"{tag}+")
            threading.Event().wait(0.1)
            order.append(f"{tag}-")

    threads = [threading.Thread(target=hold, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert order in (["a+", "a-", "b+", "b-"], ["b+", "b-", "a+", "a-"])


def test_unknown_store_url() -> None:
    from adapter.errors import ConfigError

    with pytest.raises(ConfigError, match="use sqlite"):
        open_store("mysql://x")
    with pytest.raises(ConfigError, match="unreachable"):
        open_store("postgresql://postgres@127.0.0.1:1/none")


def test_a_day_held_by_another_replica_is_busy_after_the_wait(pg_dsn: str) -> None:
    from adapter.store.base import StoreBusyError
    from adapter.store.postgres import PostgresStore

    first, second = PostgresStore(pg_dsn), PostgresStore(pg_dsn, lock_wait=0.3)
    try:
        with (
            first.day_lock("p1:2026-03-02"),
            pytest.raises(StoreBusyError, match="another replica"),
            second.day_lock("p1:2026-03-02"),
        ):
            pass
        with second.day_lock("p1:2026-03-02"):  # free again once released
            pass
    finally:
        first.close()
        second.close()


def test_the_ledger_holds_each_procedure_on_the_days_it_is_on_now(store: SqlStore) -> None:
    """A procedure that left a day (moved, deleted) stops naming it; ``processed`` asks every
    day a procedure is on, and the change's own day."""
    store.ledger_put("p1:2026-03-02", {"Procedure/a": "1", "Procedure/b": "1"}, "h1", {},
                     worker="w", changed=True)  # fmt: skip
    # b moved to the 5th at version 2: the new day is synced first
    store.ledger_put("p1:2026-03-05", {"Procedure/b": "2"}, "h2", {}, worker="w", changed=True)
    assert sorted(store.days_with("Procedure/b")) == ["p1:2026-03-02", "p1:2026-03-05"]
    assert not store.processed("Procedure/b", "2", "p1:2026-03-05")  # the 2nd still has v1
    assert store.on_other_days(["Procedure/a", "Procedure/b"], "p1:2026-03-05") == [
        "Procedure/a", "Procedure/b"
    ]  # fmt: skip
    assert store.on_other_days(["Procedure/b"], "p1:2026-03-02") == ["Procedure/b"]
    assert not store.processed("Procedure/b", "2")
    # the old day recomputed without b: b is on the 5th only, and v2 is processed
    store.ledger_put("p1:2026-03-02", {"Procedure/a": "1"}, "h3", {}, worker="w", changed=True)
    assert store.days_with("Procedure/b") == ["p1:2026-03-05"]
    assert store.on_other_days(["Procedure/b"], "p1:2026-03-05") == []
    assert store.processed("Procedure/b", "2", "p1:2026-03-05")
    assert store.processed("Procedure/b", "1")  # an older version arriving late
    assert not store.processed("Procedure/b", "3")
    assert not store.processed("Procedure/b", "2", "p1:2026-03-02")  # not on that day
    assert not store.processed("Procedure/zz", "1")
    entry = store.ledger_get("p1:2026-03-02")
    assert entry is not None and entry.inputs == {"Procedure/a": "1"}


def test_a_renewed_lease_is_not_taken_and_a_lost_one_says_so(store: SqlStore, clock: Clock) -> None:
    store.enqueue({"n": 1}, source="poll", dedupe="r1")
    (item,) = store.claim("w1", lease=30)
    clock.now += 20
    assert store.renew(item.id, "w1", 30)  # now held until +50
    clock.now += 20
    assert store.claim("w2") == []  # the first lease would have run out: renewed, not taken
    clock.now += 31
    (again,) = store.claim("w2", lease=30)
    assert again.id == item.id
    assert not store.renew(item.id, "w1", 30)  # w1's lease is gone: it is told so


def test_retention_prunes_done_rows_and_runs_only(store: SqlStore, clock: Clock) -> None:
    """Done rows and runs older than the cut-off go; pending rows, dead letters and the ledger
    stay (found in review: nothing was ever pruned)."""
    for n in range(2):
        store.enqueue({"n": n}, source="poll", dedupe=f"p{n}")
    old_done, old_dead = store.claim("w", limit=4)
    store.complete(old_done.id)
    for _ in range(3):
        store.fail(old_dead.id, "boom")
        clock.now += 1000
        store.claim("w", limit=4)
    for n in range(2, 4):
        store.enqueue({"n": n}, source="poll", dedupe=f"p{n}")
    store.ledger_put("p-1:2025-01-06", {"Procedure/a": "1"}, "h", {}, worker="w", changed=True)
    assert store.oldest_pending() is not None
    clock.now += 40 * 86400
    store.enqueue({"n": 9}, source="poll", dedupe="fresh")
    assert store.prune(clock.now - 30 * 86400) == 2  # the old done row and the old run
    counts = store.counts()
    assert counts.get("done") is None and counts.get("dead") == 1
    assert counts.get("pending", 0) + counts.get("processing", 0) == 3
    assert store.ledger_get("p-1:2025-01-06") is not None


def test_a_row_abandoned_on_its_last_attempt_is_a_dead_letter(
    store: SqlStore, clock: Clock
) -> None:
    """A row whose lease runs out on every attempt with no outcome recorded (its worker died on
    it, or could not record the failure) becomes a dead letter after the last attempt (found
    in attack review: it was claimed again forever)."""
    store.enqueue({"n": 1}, source="poll", dedupe="poison")
    claims = 0
    for _ in range(store.max_attempts + 3):
        claims += len(store.claim("w", limit=1, lease=10))
        clock.now += 11  # the lease runs out: no complete(), no fail()
    store.claim("w", limit=1)
    assert claims == store.max_attempts
    assert store.counts().get("dead") == 1
    (dead,) = store.dead_letters()
    assert "no outcome recorded" in (dead.last_error or "")


def test_failure_text_with_a_nul_is_recorded(store: SqlStore, clock: Clock) -> None:
    """A server's message with a NUL or control characters is kept as printable text (found in
    attack review: PostgreSQL refused the update and the row never got an outcome)."""
    store.enqueue({"n": 1}, source="poll", dedupe="nul")
    (item,) = store.claim("w", limit=1)
    assert store.fail(item.id, "FatalServerError: bad\x00thing\r\nX: y") == "retry"
    clock.now += 10_000
    (again,) = store.claim("w", limit=1)
    assert again.last_error == "FatalServerError: bad?thing??X: y"


def test_the_kx_ledger_sums_earlier_days_of_the_year(store: SqlStore) -> None:
    def put(day: str, kx: dict[str, str] | None) -> None:
        store.ledger_put(day, {}, "h", {}, worker="w", changed=True, kx=kx)

    put("p1:2026-03-02", {"PT_SLP": "71.69"})
    put("p1:2026-03-05", {"PT_SLP": "28.82", "OT": "40.00"})
    put("p1:2025-12-30", {"PT_SLP": "999.00"})  # another year
    put("p2:2026-03-01", {"PT_SLP": "500.00"})  # another patient
    assert store.kx_prior("p1:2026-03-02") == {}
    assert store.kx_prior("p1:2026-03-06") == {
        "PT_SLP": Decimal("100.51"), "OT": Decimal("40.00")
    }  # fmt: skip
    assert store.kx_later_days("p1:2026-03-01") == ["p1:2026-03-02", "p1:2026-03-05"]
    # across New Year too (the progress-report count does not restart with the year)
    assert store.kx_later_days("p1:2025-12-29") == [
        "p1:2025-12-30", "p1:2026-03-02", "p1:2026-03-05"
    ]  # fmt: skip
    put("p1:2026-03-02", {"PT_SLP": "50.99"})  # amended: replaced, not added
    assert store.kx_prior("p1:2026-03-06")["PT_SLP"] == Decimal("79.81")
    put("p1:2026-03-02", {})  # voided: the day holds nothing
    assert store.kx_amounts("p1:2026-03-02") == {}
    assert store.kx_prior("p1:2026-03-06")["PT_SLP"] == Decimal("28.82")
    put("p1:2026-03-05", None)  # a write without KX amounts leaves them as they were
    assert store.kx_amounts("p1:2026-03-05") == {"PT_SLP": "28.82", "OT": "40.00"}


def test_counters_and_the_outbox(store: SqlStore, clock: Clock) -> None:
    """(issue 16) a counter counts 1, 2, … per name; a day's newer state supersedes one not sent
    yet; a message is leased to one sender; what the receiver holds is the last accepted
    state; a rejected message is sent again only while no newer one exists."""
    assert [store.next_number("a"), store.next_number("a"), store.next_number("b")] == [1, 2, 1]
    day = "p1:2026-03-02"
    first = store.outbox_queue("t", day, 1, {"n": 1})
    assert first is not None and store.outbox_queue("t", day, 1, {"n": 9}) is None
    row = store.outbox_claim("t")
    assert row is not None and row.id == first and store.outbox_claim("t") is None  # leased
    store.outbox_done(first, "acked", "AA", None)
    second = store.outbox_queue("t", day, 2, {"n": 2})
    third = store.outbox_queue("t", day, 3, {"n": 3})
    assert store.outbox_get(second).status == "superseded"  # type: ignore[arg-type,union-attr]
    row = store.outbox_claim("t")
    assert row is not None and row.id == third
    store.outbox_done(third, "rejected", "AR", "no")  # type: ignore[arg-type]
    assert store.outbox_acked_state("t", day) == {"n": 1}
    assert store.outbox_latest("t", day).seq == 3  # type: ignore[union-attr]
    assert store.outbox_resend(third)  # type: ignore[arg-type]
    row = store.outbox_claim("t")
    assert row is not None and row.id == third and row.body == ""  # composed afresh
    store.outbox_retry_later(third, "away", 10)  # type: ignore[arg-type]
    assert store.outbox_claim("t") is None  # not due yet
    clock.now += 11
    assert store.outbox_claim("t").id == third  # type: ignore[union-attr]
    store.outbox_done(third, "rejected", "AR", "no")  # type: ignore[arg-type]
    store.outbox_queue("t", day, 4, {"n": 4})
    assert not store.outbox_resend(third)  # type: ignore[arg-type]  (a newer one exists)
    assert store.outbox_counts()[("t", "pending")] == 1
