"""Start and stop the real FHIR R4 test server (``sekmet-fhir``) for integration tests.

Each server binds 127.0.0.1 on a free port with its own temporary SQLite database, its payer
simulator off and inbound logging off; it is stopped by PID. See ../shared/test-server.md.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class FhirServer:
    base: str
    process: subprocess.Popen[bytes]
    log: Path

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"{self.base}/{path.lstrip('/')}" if path else self.base,
            data=data,
            method=method,
            headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as err:
            raw = err.read()
            return err.code, json.loads(raw) if raw else None

    def put_all(self, *resources: dict[str, Any]) -> None:
        """Create or replace resources with their ids, in one transaction."""
        entries = [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources
        ]
        status, body = self.request(
            "POST", "", {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        )
        assert status == 200, body

    def search(self, query: str) -> list[dict[str, Any]]:
        status, bundle = self.request("GET", query)
        assert status == 200, (status, bundle)
        return [
            e["resource"]
            for e in bundle.get("entry", [])
            if e.get("search", {}).get("mode", "match") == "match"
        ]

    def written(self) -> list[dict[str, Any]] | None:
        """Every ChargeItem, Claim, Communication and Provenance the server holds (what the
        adapter wrote, and the edits tests make as a billing office would); None when the
        server does not answer unauthenticated reads (a SMART-protected one)."""
        found: list[dict[str, Any]] = []
        for kind in ("ChargeItem", "Claim", "Communication", "Provenance"):
            path: str | None = f"{kind}?_count=500"
            while path:
                status, page = self.request("GET", path)
                if status != 200 or not isinstance(page, dict):
                    return None
                found += [e["resource"] for e in page.get("entry", []) if "resource" in e]
                nxt = [ln["url"] for ln in page.get("link", []) if ln.get("relation") == "next"]
                path = nxt[0][len(self.base) :] if nxt and nxt[0].startswith(self.base) else None
        return found

    def stop(self) -> None:
        """Stop the server, after checking every resource written to it with the independent
        validators (tests/conformance.py) and the shipped profiles (tests/profiles.py): a live
        test's output is held to the same standard as replay's, and a resource that fails is an
        error of the test that wrote it."""
        errors: dict[str, list[str]] = {}
        if self.process.poll() is None and os.environ.get("ADAPTER_SKIP_LIVE_CONFORMANCE") != "1":
            from tests.conformance import conformance_errors
            from tests.profiles import profile_errors, written_by_adapter

            for resource in self.written() or []:
                ours = profile_errors(resource) if written_by_adapter(resource) else []
                if problems := conformance_errors(resource) + ours:
                    errors[f"{resource.get('resourceType')}/{resource.get('id')}"] = problems[:5]
        self._stop()
        assert not errors, f"resources on the test server fail validation: {errors}"

    def _stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def start(workdir: Path, extra_settings: str = "") -> FhirServer:
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    settings = workdir / "sekmet.yaml"
    settings.write_text(
        f"host: 127.0.0.1\nport: {port}\nbase_url: {base}\n"
        f"db_path: {workdir / 'fhir.db'}\nlog_inbound: false\nsimulator: {{enabled: false}}\n"
        + extra_settings
    )
    log = workdir / "sekmet.log"
    exe = Path(sys.executable).parent / "sekmet"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "sekmet.cli"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*cmd, "serve", "-c", str(settings)], stdout=out, stderr=subprocess.STDOUT,
            cwd=workdir,
        )  # fmt: skip
    server = FhirServer(base=base, process=process, log=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"FHIR test server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{base}/metadata", timeout=2) as resp:
                if resp.status == 200:
                    return server
        except OSError:
            time.sleep(0.2)
    server._stop()
    raise RuntimeError(f"FHIR test server did not start: {log.read_text()[-2000:]}")
