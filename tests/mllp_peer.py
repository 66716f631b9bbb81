"""An MLLP receiver for the tests: hl7apy's ``MLLPServer`` on loopback, recording every message
and answering by rule — AR (rejected) for a patient whose MRN says ``reject``, AE with ERR-3
207 (an internal error: try again) the first ``flaky`` times, AA otherwise. Like a real
billing system, it takes a message once: a repeated MSH-10 is acknowledged and not recorded
again."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from hl7apy.mllp import AbstractHandler, MLLPServer

from tests.fhir_server import free_port


@dataclass
class Peer:
    port: int = 0
    flaky: int = 0  # answer AE 207 to this many messages first
    refuse: int = 0  # answer AR (a code table value not found) to this many messages first
    received: list[str] = field(default_factory=list)  # messages taken, in order
    seen: set[str] = field(default_factory=set)  # MSH-10 of every message taken
    tries: int = 0  # every message that arrived, repeats included
    _server: MLLPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Peer:
        self.port = self.port or free_port()
        peer = self

        class Handler(AbstractHandler):  # type: ignore[misc]
            def reply(self) -> str:
                return peer.answer(str(self.incoming_message))

        self._server = MLLPServer("127.0.0.1", self.port, {"DFT^P03^DFT_P03": (Handler,)},
                                  timeout=5)  # fmt: skip
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def answer(self, message: str) -> str:
        segments = [s.split("|") for s in message.replace("\n", "\r").split("\r") if s]
        msh = next(s for s in segments if s[0] == "MSH")
        pid = next((s for s in segments if s[0] == "PID"), [])
        control = msh[9]
        with self._lock:
            self.tries += 1
            if len(pid) > 3 and "reject" in pid[3]:
                return _ack(control, "AR", "patient unknown to billing", "204")
            if self.refuse > 0:
                self.refuse -= 1
                return _ack(control, "AR", "transaction code unknown", "103")
            if self.flaky > 0:
                self.flaky -= 1
                return _ack(control, "AE", "database busy", "207")
            if control not in self.seen:
                self.seen.add(control)
                self.received.append(message)
        return _ack(control, "AA")

    def lines(self) -> list[list[str]]:
        """Every FT1 taken, as fields (FT1-6 CG/CR, FT1-25 the code, FT1-10 the units)."""
        return [s.split("|") for m in self.received for s in m.split("\r") if s.startswith("FT1")]


def _ack(control: str, code: str, text: str = "", error: str = "") -> str:
    segments = [
        "MSH|^~\\&|BILLING||CHARGE-ADAPTER||20260801120000||ACK^P03^ACK|A"
        + control[:19]
        + "|P|2.5.1",
        f"MSA|{code}|{control}|{text}",
    ]
    if error:
        segments.append(f"ERR|||{error}^{text}^HL70357|E")
    return "\x0b" + "\r".join(segments) + "\r\x1c\r"
