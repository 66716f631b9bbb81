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
    stop = threading.Event()

    def saboteur() -> None:
        nonlocal killed
        while not stop.wait(0.4):
            killed += terminate_backends(pg_dsn)

    chaos = threading.Thread(target=saboteur, daemon=True)
    chaos.start()
    try:
        time.sleep(1.5)
        for pid in ids[days // 2 :]:  # the intake meets the same outage: retried until stored
            for _ in range(50):
                try:
                    enqueue_all(service, [pid])
                    break
                except Exception:
                    time.sleep(0.05)
        time.sleep(1.5)
    finally:
        stop.set()
        chaos.join()
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
