"""Health, readiness and metrics endpoints of the running service, and logs without PHI."""

from __future__ import annotations

import io
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from adapter.emr.client import FhirClient
from adapter.intake.webhook import Receiver
from adapter.mappings import load_rulebook
from adapter.observe import configure_logging
from adapter.pipeline import Options
from adapter.service import Health, Service
from adapter.store import open_store
from adapter.web.server import WebhookServer
from tests.fhir.make import GOOD, NAME
from tests.fhir_server import FhirServer, free_port
from tests.live.seed import seed_days


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_health_ready_and_metrics(fresh_fhir: FhirServer, tmp_path: Path) -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", stream)
    ids = seed_days(fresh_fhir, "ops", 3)
    client = FhirClient(fresh_fhir.base)
    store = open_store(tmp_path / "a.db")
    service = Service(client, client, load_rulebook(), Options(), store)
    web = WebhookServer(
        Receiver(service.inbox.enqueue, secret="ops", metrics=service.metrics),
        "127.0.0.1",
        0,
        ops=Health(service),
    )
    web.start()
    base = f"http://127.0.0.1:{web.port}"
    try:
        assert get(f"{base}/healthz")[0] == 200
        status, body = get(f"{base}/readyz")
        assert status == 200 and json.loads(body) == {"ready": True, "store": "ok"}
        for pid in ids:
            proc = client.read("Procedure", pid)
            headers = {"Content-Type": "application/fhir+json", "X-Adapter-Secret": "ops"}
            data = json.dumps(proc).encode()
            req = urllib.request.Request(f"{base}/notify", data=data, headers=headers)
            with urllib.request.urlopen(req, timeout=10) as resp:
                assert resp.status == 200
        assert service.drain(timeout=60)
        status, body = get(f"{base}/metrics")
        text = body.decode()
        assert status == 200
        assert "charge_adapter_patient_days_processed_total 3.0" in text
        assert "charge_adapter_lines_written_total 6.0" in text
        assert 'charge_adapter_findings_total{code="kx-spend-unknown"} 3.0' in text
        assert 'charge_adapter_inbox_rows{status="done"} 3.0' in text
        assert "charge_adapter_processing_seconds_count 3.0" in text
        assert "charge_adapter_dead_letters 0.0" in text
        # the documented counters are emitted, typed and described (prometheus_client)
        assert 'charge_adapter_notifications_received_total{kind="event"} 3.0' in text
        assert 'charge_adapter_webhook_requests_total{status="200"} 3.0' in text
        assert "charge_adapter_inbox_oldest_pending_seconds 0.0" in text
        assert "# TYPE charge_adapter_dead_letters gauge" in text
        assert "# TYPE charge_adapter_retries_total counter" in text
        assert "# HELP charge_adapter_patient_days_processed_total" in text
        # the EMR goes away: still ready (deliveries are queued while it is down), at once
        dead = FhirClient(f"http://127.0.0.1:{free_port()}/fhir")
        health = Health(Service(dead, dead, load_rulebook(), Options(), store))
        started = time.monotonic()
        assert health.ready() == (True, {"store": "ok"})
        assert time.monotonic() - started < 1.0
    finally:
        web.stop()
        store.close()
    logs = stream.getvalue()
    lines = [json.loads(line) for line in logs.splitlines()]
    assert lines and all({"ts", "level", "msg", "correlation_id"} <= set(e) for e in lines)
    assert any(e["correlation_id"].startswith("inbox-") for e in lines)
    for secret in (NAME, "1941-02-03", GOOD):
        assert secret not in logs
