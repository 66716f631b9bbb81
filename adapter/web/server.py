"""uvicorn serving the application, in a thread beside the workers, hardened for the open
network: a connection limit (beyond it: 503), an idle timeout between requests, a header timeout
(a client that has not sent a whole request head within ``header_timeout`` seconds of connecting
or of its last response is disconnected: slow-header clients cannot hold connections), no access
log (the JSON log carries what matters), uvicorn's own errors through the JSON log.

It may sit behind a TLS-terminating proxy (it speaks plain HTTP on the listen address).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from adapter.intake.webhook import Receiver
from adapter.web.app import Cds, Ops, create_app

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerLimits:
    max_connections: int = 200  # connections and requests in flight; beyond: 503
    idle_timeout: int = 5  # seconds a kept-alive connection may wait for its next request
    header_timeout: float = 10.0  # seconds to send a request head (slow-header clients)


#: a chunked body with more CRLF-ended lines than this, averaging under SMALL_LINE bytes, is cut
MAX_LINES = 20_000
SMALL_LINE = 16


class _HeaderTimeoutProtocol(H11Protocol):
    """h11 with a deadline for each request head (uvicorn has none)."""

    header_timeout: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._waiting_cycle: object = None
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._waiting_cycle = self.cycle
        self._head_deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if getattr(self, "_head_deadline", None) is not None:
            assert self._head_deadline is not None
            self._head_deadline.cancel()
            self._head_deadline = None

    def _too_slow(self) -> None:
        waiting = self.cycle is None or self.cycle.response_complete  # no request in hand
        if waiting and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._tiny_chunks(data):
            self.transport.close()  # a body in thousands of tiny chunks: not parsed further
            return
        super().data_received(data)
        if self.cycle is not self._waiting_cycle:  # a whole request head arrived
            self._disarm()

    def _tiny_chunks(self, data: bytes) -> bool:
        """Whether the request in hand is a chunked body sent in tiny pieces: each chunk costs
        parsing on the event loop (1-byte chunks would stall every other request), so more than
        ``MAX_LINES`` lines averaging under ``SMALL_LINE`` bytes end the connection. Counted
        from the raw bytes (a C-speed count), before h11 parses them."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return False
        if getattr(self, "_counted_cycle", None) is not cycle:
            self._counted_cycle: object = cycle
            self._lines = self._bytes = 0
            self._chunked = any(
                k == b"transfer-encoding" and b"chunked" in v.lower()
                for k, v in cycle.scope["headers"]
            )
        if not self._chunked:
            return False
        self._lines += data.count(b"\r\n")
        self._bytes += len(data)
        return self._lines > MAX_LINES and self._bytes < self._lines * SMALL_LINE

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def _protocol(header_timeout: float) -> type[H11Protocol]:
    return type(
        "HeaderTimeoutProtocol", (_HeaderTimeoutProtocol,), {"header_timeout": header_timeout}
    )


class WebServer:
    """The application on ``host:port`` (port 0: a free one, read back from ``port``), served
    by uvicorn in a daemon thread; ``start`` returns once it accepts connections."""

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        limits: ServerLimits | None = None,
    ) -> None:
        limits = limits or ServerLimits()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, port))
        self.socket.set_inheritable(True)
        self.host = host
        self.port = int(self.socket.getsockname()[1])
        config = uvicorn.Config(
            app,
            http=_protocol(limits.header_timeout),
            lifespan="off",
            log_config=None,  # the adapter's JSON logging (adapter.observe) applies
            access_log=False,
            limit_concurrency=limits.max_connections,
            timeout_keep_alive=limits.idle_timeout,
            timeout_graceful_shutdown=5,
            server_header=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="web", daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.socket]))

    def start(self, timeout: float = 10.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the web server did not start")
            time.sleep(0.01)

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.socket.close()


class WebhookServer(WebServer):
    """The webhook (and, with ``ops``, health and metrics) on ``host:port``."""

    def __init__(
        self,
        receiver: Receiver,
        host: str = "127.0.0.1",
        port: int = 8080,
        ops: Ops | None = None,
        *,
        limits: ServerLimits | None = None,
        cds: Cds | None = None,
        mounts: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.receiver = receiver
        app = create_app(receiver, ops=ops, cds=cds, mounts=mounts)
        super().__init__(app, host, port, limits=limits)
