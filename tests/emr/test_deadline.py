"""A whole EMR answer within a deadline and a size limit (found in attack review: a server
dripping one byte every two seconds held a worker forever under the per-read timeout, and one
400 MB answer took 1.2 GB of memory)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from adapter.emr.client import FhirClient, RetryPolicy
from adapter.errors import FatalServerError, TemporaryServerError


@pytest.fixture
def drip() -> Iterator[tuple[str, list[float]]]:
    """A server that answers 200 with a declared 1 MB body and sends a byte every 0.1 s."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    closed_after: list[float] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n"
                         b"Content-Length: 1000000\r\n\r\n{")  # fmt: skip
            started = time.monotonic()
            try:
                for _ in range(600):
                    conn.sendall(b" ")
                    time.sleep(0.1)
            except OSError:
                closed_after.append(time.monotonic() - started)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}/fhir", closed_after
    srv.close()


def test_an_answer_that_drips_is_cut_at_the_deadline(drip: tuple[str, list[float]]) -> None:
    base, closed_after = drip
    client = FhirClient(base, timeout=(2.0, 2.0), deadline=1.0,
                        retry=RetryPolicy(attempts=1, sleep=lambda s: None))  # fmt: skip
    started = time.monotonic()
    with pytest.raises(TemporaryServerError, match="not whole in time"):
        client.read("Patient", "p1")
    assert time.monotonic() - started < 3.0  # the per-read timeout alone never fired
    deadline = time.monotonic() + 3
    while not closed_after and time.monotonic() < deadline:
        time.sleep(0.05)
    assert closed_after  # the connection was dropped, not left dripping


def test_an_answer_over_the_size_limit_is_refused(drip: tuple[str, list[float]]) -> None:
    base, _ = drip
    client = FhirClient(base, max_response_bytes=5,
                        retry=RetryPolicy(attempts=1, sleep=lambda s: None))  # fmt: skip
    with pytest.raises(FatalServerError, match="over 5 bytes"):
        client.read("Patient", "p1")
