"""Bounded work against the real FHIR server: one delivery naming many procedures is split into
items that are worked within the EMR request budget, and a long item keeps its lease (found in
review: 20,000 id-only procedures made one item that ran 14,550 searches in 6 minutes, outlived
its lease and was taken by all four workers at once)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from adapter.emr.budget import RequestBudget
from adapter.emr.client import FhirClient
from adapter.intake.events import ChangeEvent, Notification
from adapter.mappings import load_rulebook
from adapter.pipeline import Options
from adapter.service import Service
from adapter.store import open_store
from tests.fault_proxy import FaultProxy
from tests.fhir_server import FhirServer
from tests.live.seed import seed_days, server_state
from tests.live.test_reliability import check, figure

RULEBOOK = load_rulebook()


def test_a_fan_out_is_split_and_kept_within_the_request_budget(
    fresh_fhir: FhirServer, tmp_path: Path
) -> None:
    ids = 300  # procedures the EMR does not have: each costs a read and a billed-days search
    rate = 100.0
    proxy = FaultProxy(fresh_fhir.base)
    emr = FhirClient(proxy.base, budget=RequestBudget(rate, concurrency=4))
    store = open_store(tmp_path / "f.db")
    service = Service(emr, emr, RULEBOOK, Options(), store, max_events=50)
    events = tuple(ChangeEvent("Procedure", f"nowhere-{k}", source="backport") for k in range(ids))
    service.inbox.enqueue(Notification(events=events, subscription="Subscription/fan"))
    assert store.counts() == {"pending": ids // 50}
    started = time.monotonic()
    service.start(4, idle_sleep=0.05)
    assert service.drain(timeout=120)
    seconds = time.monotonic() - started
    service.stop()
    requests = len(proxy.seen)
    assert requests >= 2 * ids  # every procedure was looked at
    assert requests <= rate * seconds + rate + 10  # never faster than the budget (plus a burst)
    assert store.counts() == {"done": ids // 50}
    print(f"\nfan-out of {ids} procedures: {ids // 50} items, {requests} EMR requests in "
          f"{seconds:.1f} s ({requests / seconds:.0f}/s, budget {rate:.0f}/s)")  # fmt: skip
    store.close()
    proxy.close()


def test_a_long_item_keeps_its_lease(fresh_fhir: FhirServer, tmp_path: Path) -> None:
    """The EMR answers slowly: one day takes longer than the lease. The lease is renewed while
    it runs, so the second worker never takes the same item (was: taken again when the lease
    ran out, and processed twice)."""
    (notified,) = seed_days(fresh_fhir, "lease", 1)
    proxy = FaultProxy(fresh_fhir.base)
    proxy.plan.extend(["sleep:1.2"] * 3)  # the day's first requests are slow: ~3.6 s
    emr = FhirClient(proxy.base)
    store = open_store(tmp_path / "l.db")
    workers = [
        Service(emr, emr, RULEBOOK, Options(), store, lease=1.5, worker=f"w{n}") for n in (1, 2)
    ]
    workers[0].inbox.enqueue(
        Notification(events=(ChangeEvent("Procedure", notified, source="test"),))
    )
    started = time.monotonic()
    for w in workers:
        w.start(1, idle_sleep=0.05)
    deadline = time.monotonic() + 60
    while store.counts() != {"done": 1} and time.monotonic() < deadline:
        time.sleep(0.1)
    for w in workers:
        w.stop()
    assert store.counts() == {"done": 1}
    runs = Counter(day for day, *_ in store.runs())
    assert list(runs.values()) == [1], runs  # one sync of the day, by one worker
    written, duplicates, lost = check(fresh_fhir, "lease", 1)
    assert server_state(fresh_fhir, "lease")[1:] == (2, 1)
    figure("a day slower than its lease", 1, written, duplicates, lost, time.monotonic() - started)
    store.close()
    proxy.close()
