"""A fault-injecting HTTP proxy in front of the real FHIR test server (loopback only).

``plan`` is consumed one action per incoming request; when it is empty requests pass through.
Actions: ``"pass"``, ``"503"`` / ``"500"`` / any status (answered with an OperationOutcome),
``"429:<seconds>"`` (with ``Retry-After``), ``"sleep:<seconds>"`` (answer late, then forward),
``"lost:<status>"`` (forward, so the server applies the request, then answer ``status`` as if the
response had been lost).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.plan: deque[str] = deque()
        self.seen: list[tuple[str, str, str]] = []  # (method, path, action)
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy.lock:
                    action = proxy.plan.popleft() if proxy.plan else "pass"
                    proxy.seen.append((self.command, self.path, action))
                if action.startswith("sleep:"):
                    time.sleep(float(action.split(":")[1]))
                    action = "pass"
                if action.startswith("lost:"):
                    self._forward(body, reply=False)
                    self._reply(int(action.split(":")[1]), {})
                    return
                if action.startswith("429"):
                    wait = action.split(":")[1] if ":" in action else "1"
                    self._reply(429, {"Retry-After": wait})
                    return
                if action != "pass":
                    self._reply(int(action), {})
                    return
                self._forward(body)

            def _reply(self, status: int, headers: dict[str, str]) -> None:
                issue = {"severity": "error", "code": "transient", "diagnostics": "injected"}
                payload = json.dumps(
                    {"resourceType": "OperationOutcome", "issue": [issue]}
                ).encode()
                self.send_response(status)
                for k, v in {**headers, "Content-Type": "application/fhir+json"}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _forward(self, body: bytes | None, reply: bool = True) -> None:
                path = self.path.split("/fhir", 1)[1] if "/fhir" in self.path else self.path
                req = urllib.request.Request(
                    proxy.upstream + path, data=body, method=self.command,
                    headers={k: v for k, v in self.headers.items()
                             if k.lower() not in ("host", "content-length", "connection")},
                )  # fmt: skip
                try:
                    with urllib.request.urlopen(req, timeout=60) as resp:
                        status, headers, payload = resp.status, resp.headers, resp.read()
                except urllib.error.HTTPError as err:
                    status, headers, payload = err.code, err.headers, err.read()
                if not reply:
                    return
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
