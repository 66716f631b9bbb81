"""Delivery targets beside the FHIR write-back (README "Targets"): the same decision as DFT^P03
messages to an MLLP receiver, or as 837P files in a drop folder.

Each target keeps a durable outbox in the store. When a day is synced, each target composes
what changed for it since its last message for the day (nothing: no message) and queues it; a
delivery worker per target sends its messages in order, so a target that is down delays only
itself and nothing is sent twice: a message is retried with the same MSH-10 (the receiver
de-duplicates by it) or rewritten to the same file until it is accepted or rejected for good.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from adapter.domain import Decision
from adapter.fhir.parse import DayFacts
from adapter.fhir.parties import Parties
from adapter.hl7v2 import mllp
from adapter.hl7v2.dft import (
    FtLine,
    Header,
    SiteProfile,
    change,
    control_id,
    dft_message,
    header_of,
    lines_of,
)
from adapter.store import OutboxRow
from adapter.x12.p837 import (
    BillingProvider,
    ClaimControl,
    Envelope,
    Unwritable,
    claim_id,
    interchange,
    transaction,
)


@dataclass(frozen=True, slots=True)
class DayOutput:
    """What a synced day gives the targets."""

    decision: Decision | None
    facts: DayFacts
    parties: Parties
    at: datetime  # the evaluation's time


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # acked | delivered | rejected | retry
    ack: str | None = None
    error: str | None = None


class Target(Protocol):
    """A delivery target. ``desire`` says, when a day is synced, what the receiver should hold
    for it (JSON); ``render`` composes, when the message is sent, the message that takes the
    receiver from what it accepted last (``acked``) to that (None: nothing to send);
    ``deliver`` sends it."""

    name: str
    kind: str

    def desire(self, out: DayOutput) -> dict[str, Any]: ...

    def render(self, row: OutboxRow, acked: Mapping[str, Any] | None, number: int,
               salt: str) -> tuple[str, str] | None: ...  # fmt: skip

    def deliver(self, row: OutboxRow) -> Outcome: ...


@dataclass
class Hl7Target:
    """DFT^P03 over MLLP: credits for what went away, charges for what is new."""

    name: str
    host: str
    port: int
    profile: SiteProfile = field(default_factory=SiteProfile)
    tls: bool = False
    cafile: str | None = None
    timeout: float = 10.0
    descriptions: Mapping[str, str] = field(default_factory=dict)
    kind: str = "hl7v2-mllp"

    def desire(self, out: DayOutput) -> dict[str, Any]:
        lines = lines_of(out.decision, out.facts, out.parties, self.descriptions)
        return {"header": header_of(out.facts, out.parties).to_json(),
                "lines": [ln.to_json() for ln in lines], "at": out.at.isoformat()}  # fmt: skip

    def render(self, row: OutboxRow, acked: Mapping[str, Any] | None, number: int,
               salt: str) -> tuple[str, str] | None:  # fmt: skip
        before = [FtLine.from_json(x) for x in (acked or {}).get("lines", [])]
        now = [FtLine.from_json(x) for x in row.state.get("lines", [])]
        delta = change(before, now)
        if delta.empty:
            return None
        control = control_id(self.name, row.day, row.seq, salt)
        at = datetime.fromisoformat(str(row.state["at"]))
        body = dft_message(header=Header.from_json(row.state["header"]), delta=delta,
                           message_id=control, at=at, profile=self.profile)  # fmt: skip
        return control, body

    def deliver(self, row: OutboxRow) -> Outcome:
        try:
            ack = mllp.send(self.host, self.port, row.body, tls=self.tls, cafile=self.cafile,
                            timeout=self.timeout)  # fmt: skip
        except mllp.MllpError as err:
            return Outcome("retry", error=str(err))
        if ack.control != row.control:
            return Outcome("retry", ack.code, f"the ACK answers {ack.control!r}, not ours")
        if ack.accepted and (ack.error != mllp.DUPLICATE or row.attempts > 0):
            return Outcome("acked", ack.code)  # a duplicate only of a message sent before
        detail = f"{ack.code} {ack.error} {ack.text}".strip()
        return Outcome("retry" if ack.temporary else "rejected", ack.code, detail)


@dataclass
class X12Target:
    """837P files in a folder (a clearinghouse's drop folder): an original claim, then a
    replacement (frequency 7) when the day's claim changes, a void (8) when its lines go."""

    name: str
    folder: Path
    envelope: Envelope
    provider: BillingProvider
    place_of_service: str = "11"
    payer_ids: Mapping[str, str] = field(default_factory=dict)
    kind: str = "x12-837p"

    def desire(self, out: DayOutput) -> dict[str, Any]:
        """The day's claim (its segments between ST and SE), or none (with the reason)."""
        d = out.decision
        try:
            body = transaction(
                d, out.facts, out.parties, envelope=self.envelope, provider=self.provider,
                control=ClaimControl(control_number=1, at=out.at),
                place_of_service=out.facts.place_of_service or self.place_of_service,
                payer_id=self.payer_ids.get(d.payer, "") if d else "",
            )  # fmt: skip
        except Unwritable as why:
            return {"claim": None, "why": str(why), "lines": bool(d and d.lines),
                    "at": out.at.isoformat()}  # fmt: skip
        return {"claim": body, "digest": _claim_digest(body), "at": out.at.isoformat()}

    def render(self, row: OutboxRow, acked: Mapping[str, Any] | None, number: int,
               salt: str) -> tuple[str, str] | None:  # fmt: skip
        claim = row.state.get("claim")
        sent = (acked or {}).get("claim")
        at = datetime.fromisoformat(str(row.state["at"]))
        n = number % 1_000_000_000 or 1
        if claim is None:
            if sent is None or row.state.get("lines"):
                return None  # nothing to claim, or a claim it cannot carry now: held
            body = [_frequency(seg, "8") for seg in sent]  # the claim sent last, voided
        elif sent is not None and (acked or {}).get("digest") == row.state.get("digest"):
            return None
        else:
            body = [_frequency(seg, "7" if sent is not None else "1") for seg in claim]
        del salt
        return f"{n:09d}", interchange([body], envelope=self.envelope, control_number=n, at=at)

    def deliver(self, row: OutboxRow) -> Outcome:
        """The file written whole (a temporary name, then renamed): a rerun writes the same
        bytes to the same name."""
        name = f"{claim_id(row.day)}-{row.seq:03d}.837p.x12"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".{name}.tmp"
            tmp.write_text(row.body, encoding="utf-8")
            os.replace(tmp, self.folder / name)
        except OSError as err:
            return Outcome("retry", error=f"{type(err).__name__}: {err.strerror or err}")
        return Outcome("delivered")


def _claim_digest(segments: list[str]) -> str:
    """What a claim says (every segment but BHT's date and time): any change replaces it."""
    kept = [s for s in segments if not s.startswith("BHT*")]
    return hashlib.sha256(json.dumps(kept).encode()).hexdigest()[:16]


def _frequency(segment: str, code: str) -> str:
    """A CLM segment with its frequency code (CLM05-3) set to ``code``."""
    if not segment.startswith("CLM*"):
        return segment
    parts = segment.split("*")
    where = parts[5].split(":")
    parts[5] = ":".join([*where[:2], code])
    return "*".join(parts)


def backoff(attempts: int, base: float = 2.0, cap: float = 300.0) -> float:
    """Seconds before a message's next try."""
    return float(min(cap, base * 2 ** min(attempts, 16)))
