"""An MLLP client: one message over TCP (optionally TLS), waiting for its ACK.

A small one of our own on ``socket`` and ``ssl``: python-hl7's ``MLLPClient`` connects without a
timeout and has no TLS, and the service must never hang on a receiver that is away. The frame
is VT, the message, FS CR (HL7 v2 MLLP release 1).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from dataclasses import dataclass

START, END = b"\x0b", b"\x1c\r"
MAX_ACK = 1 << 20
#: HL7 table 0357 error codes that say try again (record locked, internal error)
TEMPORARY = frozenset({"206", "207"})
DUPLICATE = "205"  # duplicate key identifier: the receiver has the message already


@dataclass(frozen=True, slots=True)
class Ack:
    """A receiver's answer: MSA-1 code, MSA-2 the control id it answers, the text and the
    ERR-3 error code."""

    code: str  # AA accepted, AE error, AR rejected (CA/CE/CR: commit level)
    control: str
    text: str = ""
    error: str = ""

    @property
    def accepted(self) -> bool:
        return self.code in ("AA", "CA") or self.error == DUPLICATE

    @property
    def temporary(self) -> bool:
        """The receiver says a later try may pass."""
        return not self.accepted and self.error in TEMPORARY


class MllpError(ConnectionError):
    """The receiver could not be reached, or its answer was not an ACK."""


def send(
    host: str,
    port: int,
    message: str,
    *,
    tls: bool = False,
    cafile: str | None = None,
    timeout: float = 10.0,
) -> Ack:
    """Send one message and return the receiver's ACK."""
    try:
        with contextlib.ExitStack() as stack:
            sock: socket.socket = stack.enter_context(
                socket.create_connection((host, port), timeout=timeout)
            )
            if tls:
                context = ssl.create_default_context(cafile=cafile)
                sock = stack.enter_context(context.wrap_socket(sock, server_hostname=host))
            sock.settimeout(timeout)
            sock.sendall(START + message.encode("utf-8") + END)
            buffer = b""
            while END not in buffer:
                chunk = sock.recv(65536)
                if not chunk:
                    raise MllpError("the receiver closed the connection before its ACK")
                buffer += chunk
                if len(buffer) > MAX_ACK:
                    raise MllpError("the receiver's answer is too large for an ACK")
    except (OSError, ssl.SSLError) as err:
        if isinstance(err, MllpError):
            raise
        raise MllpError(f"{type(err).__name__}: {err}") from None
    start = buffer.find(START)
    framed = buffer[start + 1 if start >= 0 else 0 : buffer.index(END)]
    return parse_ack(framed.decode("utf-8", errors="replace"))  # a Latin-1 ACK still reads


def parse_ack(text: str) -> Ack:
    """MSA (and ERR) of an ACK; an ``MllpError`` when there is no MSA."""
    segments = [s for s in text.replace("\n", "\r").split("\r") if s]
    msa = next((s for s in segments if s.startswith("MSA|")), None)
    if msa is None:
        raise MllpError("the answer has no MSA segment")
    fields = msa.split("|")
    err = next((s.split("|") for s in segments if s.startswith("ERR|")), [])
    code = err[3].split("^")[0] if len(err) > 3 else ""
    return Ack(code=fields[1] if len(fields) > 1 else "",
               control=fields[2] if len(fields) > 2 else "",
               text=fields[3] if len(fields) > 3 else "", error=code)  # fmt: skip
