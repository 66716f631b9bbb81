"""The store goes away under load: the PostgreSQL backends of the test database are terminated
(``pg_terminate_backend``) again and again while workers sync patient-days from the real FHIR
server. The workers must survive (no thread dies), reconnect through the pool, and finish every
day exactly once; /healthz must say so. Prints events sent, written, duplicates, lost, seconds.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg

from adapter.emr.client import FhirClient
from adapter.mappings import load_rulebook
from adapter.pipeline import Options
from adapter.service import Health, Service
from adapter.store import open_store
from tests.conftest import PG_ADMIN
from tests.fhir_server import FhirServer
from tests.live.seed import seed_days
from tests.live.test_reliability import check, enqueue_all, figure


def terminate_backends(dsn: str) -> int:
    """Terminate every session on the test database but this one; how many."""
    name = dsn.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return sum(1 for (ok,) in rows if ok)


def test_workers_survive_the_database_going_away(
    fresh_fhir: FhirServer, pg_dsn: str, tmp_path: Path
) -> None:
    days = 60
    ids = seed_days(fresh_fhir, "pgdown", days)
    store = open_store(pg_dsn, pool_size=6, base_delay=0.05)
    client = FhirClient(fresh_fhir.base)
    service = Service(client, client, load_rulebook(), Options(), store, lease=5.0)
    started = time.monotonic()
    enqueue_all(service, ids[: days // 2])
    service.start(2, idle_sleep=0.05)
    killed = 0

    def outage(rounds: int) -> None:
        """Every session of the test database terminated, ``rounds`` times, 0.5 s apart."""
        nonlocal killed
        for _ in range(rounds):
            killed += terminate_backends(pg_dsn)
            time.sleep(0.5)

    chaos = threading.Thread(target=outage, args=(6,), daemon=True)
    chaos.start()  # while the first half is being synced
    chaos.join()
    for pid in ids[days // 2 :]:  # the intake after the outage: stored once it answers again
        for _ in range(100):
            try:
                enqueue_all(service, [pid])
                break
            except Exception:
                time.sleep(0.1)
    outage(2)  # and once more while the second half is being synced
    assert killed > 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            counts = store.counts()
        except Exception:
            time.sleep(0.2)
            continue
        if (
            counts.get("done", 0) >= days
            and not counts.get("pending")
            and not counts.get("processing")
        ):
            break
        time.sleep(0.2)
    live, checks = Health(service).live()
    service.stop()
    assert live, checks  # every worker thread still running, the store answering
    assert store.counts().get("dead") is None
    written, duplicates, lost = check(fresh_fhir, "pgdown", days)
    figure("PostgreSQL backends terminated under load", days, written, duplicates, lost,
           time.monotonic() - started)  # fmt: skip
    print(f"(sessions terminated: {killed})")
    store.close()
