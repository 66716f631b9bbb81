"""The live commands as a user runs them: poll --once, and serve + subscribe in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from adapter.cli import main
from tests.fhir.make import at, context, procedure
from tests.fhir_server import FhirServer
from tests.live.test_sync import charge_lines
from tests.live.test_webhook_e2e import wait_for


def test_poll_once(
    fresh_fhir: FhirServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pid = "cli-poll"
    proc = procedure("cli-poll-a", "97112", at("09:00"), at("09:30"), patient=f"Patient/{pid}")
    fresh_fhir.put_all(*context(patient=pid), proc)
    cfg = tmp_path / "adapter.toml"
    cfg.write_text(f'emr_base_url = "{fresh_fhir.base}"\nstate_dir = "state"\n')
    # the watermark starts a day back from now; these procedures were just written
    assert main(["poll", "--once", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    # Procedure, Encounter and the CarePlan (the patient's context): one day, written once
    assert "3 change(s)" in out and " 1 written" in out
    assert "inbox done 3" in out
    assert charge_lines(fresh_fhir, pid) == [("97112", 2, "billable")]
    assert (tmp_path / "state" / "adapter.db").exists()
    assert main(["poll", "--once", "--config", str(cfg)]) == 0
    assert "0 change(s)" in capsys.readouterr().out


def test_bad_live_configuration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["poll", "--once"]) == 2
    assert "emr_base_url is not set" in capsys.readouterr().err
    cfg = tmp_path / "a.toml"
    cfg.write_text('emr_base_url = "http://127.0.0.1:9/fhir"\n[auth]\ntype = "smart"\n')
    assert main(["poll", "--once", "--config", str(cfg)]) == 2
    assert "needs client_id and private_key" in capsys.readouterr().err
    assert main(["subscribe", "--emr", "http://127.0.0.1:9/fhir"]) == 2
    assert "no endpoint" in capsys.readouterr().err


def test_serve_and_subscribe_then_sigterm(fresh_fhir: FhirServer, tmp_path: Path) -> None:
    pid = "cli-serve"
    fresh_fhir.put_all(*context(patient=pid))
    cfg = tmp_path / "adapter.toml"
    cfg.write_text(
        f'emr_base_url = "{fresh_fhir.base}"\nstate_dir = "state"\npoll_interval = 600\n'
        '[webhook]\nhost = "127.0.0.1"\nport = 0\nsecret = "cli-secret"\n'
    )
    exe = Path(sys.executable).parent / "charge-adapter"
    proc = subprocess.Popen(
        [str(exe), "serve", "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:"), line + (
            proc.stderr.read() if proc.stderr else ""
        )
        endpoint = "http://" + line.split("listening on ", 1)[1].strip()
        assert main(["subscribe", "--config", str(cfg), "--endpoint", endpoint]) == 0
        assert main(["subscribe", "--config", str(cfg), "--endpoint", endpoint]) == 0  # idempotent
        subs = fresh_fhir.search("Subscription")
        assert len(subs) == 2 and {s["criteria"] for s in subs} == {"Procedure?", "Encounter?"}
        assert all("X-Adapter-Secret: cli-secret" in s["channel"]["header"] for s in subs)
        who = f"Patient/{pid}"
        fresh_fhir.put_all(procedure("cli-serve-a", "97112", at("09:00"), at("09:24"), patient=who))
        wait_for(fresh_fhir, pid, [("97112", 2, ("GP",))])
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "stopped" in out
        assert "cli-secret" not in out + err  # secrets never printed
        assert main(["unsubscribe", "--config", str(cfg)]) == 0
        assert fresh_fhir.search("Subscription") == []
    finally:
        if proc.poll() is None:
            proc.kill()


def test_serve_starts_and_queues_while_the_emr_is_down(tmp_path: Path) -> None:
    """The EMR does not answer: serve still starts, is ready (its store answers), and stores
    deliveries for later (was: exit 5 on the capability check)."""
    import json
    import urllib.request

    from tests.fhir_server import free_port

    cfg = tmp_path / "adapter.toml"
    cfg.write_text(
        f'emr_base_url = "http://127.0.0.1:{free_port()}/fhir"\nstate_dir = "state"\n'
        'poll_interval = 600\n[webhook]\nhost = "127.0.0.1"\nport = 0\nsecret = "down-secret"\n'
    )
    exe = Path(sys.executable).parent / "charge-adapter"
    proc = subprocess.Popen(
        [str(exe), "serve", "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:"), line
        base = "http://" + line.split("listening on ", 1)[1].strip().removesuffix("/notify")
        with urllib.request.urlopen(f"{base}/readyz", timeout=5) as resp:
            assert resp.status == 200 and json.loads(resp.read())["ready"] is True
        body = json.dumps(procedure("down-a", "97112", at("09:00"), at("09:24"))).encode()
        headers = {"X-Adapter-Secret": "down-secret", "Content-Type": "application/fhir+json"}
        request = urllib.request.Request(f"{base}/notify", data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 200  # stored: the workers retry it until the EMR is back
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()


def test_poll_once_fails_when_items_dead_letter_and_prune_keeps_them(
    fresh_fhir: FhirServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """poll --once exits 6 when an item became a dead letter (was: 0); prune deletes done rows
    and runs past the retention, never dead letters."""
    from adapter.store import open_store

    cfg = tmp_path / "adapter.toml"
    cfg.write_text(f'emr_base_url = "{fresh_fhir.base}"\nstate_dir = "state"\nmax_attempts = 1\n')
    store = open_store(tmp_path / "state" / "adapter.db")
    store.enqueue({"events": [{"kind": "Procedure", "id": "../x", "version": "1"}]}, source="t")
    store.close()
    assert main(["poll", "--once", "--config", str(cfg)]) == 6
    assert "dead letters" in capsys.readouterr().err
    assert main(["prune", "--days", "0.0000001", "--config", str(cfg)]) == 0
    assert "row(s) older than" in capsys.readouterr().out
    store = open_store(tmp_path / "state" / "adapter.db")
    assert store.counts() == {"dead": 1}
    store.close()
    assert main(["prune", "--days", "0", "--config", str(cfg)]) == 2
