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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from adapter.domain import Decision
from adapter.fhir.parse import DayFacts
from adapter.fhir.parties import Parties
from adapter.hl7v2 import mllp
from adapter.hl7v2.dft import FtLine, SiteProfile, change, control_id, dft_message, lines_of
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
class Composed:
    """A day's next message for a target: its body (given the target's next control number,
    one per interchange) and the state the receiver has after it."""

    render: Callable[[int], tuple[str, str]]  # control number -> (control id, body)
    state: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # acked | delivered | rejected | retry
    ack: str | None = None
    error: str | None = None


class Target(Protocol):
    name: str
    kind: str

    def compose(self, out: DayOutput, previous: OutboxRow | None, seq: int) -> Composed | None: ...

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

    def compose(self, out: DayOutput, previous: OutboxRow | None, seq: int) -> Composed | None:
        before = [
            FtLine.from_json(x) for x in (previous.state.get("lines", []) if previous else [])
        ]
        now = lines_of(out.decision, out.facts, out.parties, self.descriptions)
        delta = change(before, now)
        if delta.empty:
            return None
        control = control_id(self.name, out.facts.day.key, seq)

        def render(_: int) -> tuple[str, str]:
            return control, dft_message(facts=out.facts, parties=out.parties, delta=delta,
                                        message_id=control, at=out.at, profile=self.profile,
                                        referring=out.facts.referring)  # fmt: skip

        return Composed(render, {"lines": [ln.to_json() for ln in now]})

    def deliver(self, row: OutboxRow) -> Outcome:
        try:
            ack = mllp.send(self.host, self.port, row.body, tls=self.tls, cafile=self.cafile,
                            timeout=self.timeout)  # fmt: skip
        except mllp.MllpError as err:
            return Outcome("retry", error=str(err))
        if ack.control and ack.control != row.control:
            return Outcome("retry", ack.code, f"the ACK answers {ack.control}, not {row.control}")
        if ack.accepted:
            return Outcome("acked", ack.code)
        detail = f"{ack.code} {ack.error} {ack.text}".strip()
        return Outcome("retry" if ack.temporary else "rejected", ack.code, detail)


@dataclass
class X12Target:
    """837P files in a folder (a clearinghouse's drop folder): an original claim, then a
    replacement (frequency 7) when the day changes, a void (8) when its lines go."""

    name: str
    folder: Path
    envelope: Envelope
    provider: BillingProvider
    place_of_service: str = "11"
    payer_ids: Mapping[str, str] = field(default_factory=dict)
    kind: str = "x12-837p"

    def compose(self, out: DayOutput, previous: OutboxRow | None, seq: int) -> Composed | None:
        claimed = bool(previous and previous.state.get("claimed"))
        d = out.decision
        try:
            probe = ClaimControl(control_number=1, at=out.at)
            transaction(d, out.facts, out.parties, envelope=self.envelope,
                        provider=self.provider, control=probe,
                        place_of_service=self._place(out))  # fmt: skip
        except Unwritable:
            if not claimed or (d is not None and d.lines):
                return None  # nothing to claim (the FHIR path's findings say why)
            assert previous is not None
            return self._void(out, previous)
        digest = _claim_digest(d)
        if claimed and previous is not None and previous.state.get("digest") == digest:
            return None
        frequency: Literal["1", "7"] = "7" if claimed else "1"

        def render(number: int) -> tuple[str, str]:
            control = ClaimControl(control_number=number % 1_000_000_000 or 1, at=out.at,
                                   frequency=frequency)  # fmt: skip
            body = transaction(d, out.facts, out.parties, envelope=self.envelope,
                               provider=self.provider, control=control,
                               place_of_service=self._place(out),
                               payer_id=self.payer_ids.get(d.payer, "") if d else "")  # fmt: skip
            text = interchange([body], envelope=self.envelope,
                               control_number=control.control_number, at=out.at)  # fmt: skip
            return f"{control.control_number:09d}", text

        return Composed(render, {"claimed": True, "digest": digest})

    def _void(self, out: DayOutput, previous: OutboxRow) -> Composed:
        """The day's claim voided: the last claim sent, as frequency 8."""

        def render(number: int) -> tuple[str, str]:
            n = number % 1_000_000_000 or 1
            sets = [[_frequency(s, "8") for s in _set_of(previous.body)]]
            return f"{n:09d}", interchange(sets, envelope=self.envelope, control_number=n,
                                           at=out.at)  # fmt: skip

        return Composed(render, {"claimed": False, "digest": ""})

    def _place(self, out: DayOutput) -> str:
        return out.facts.place_of_service or self.place_of_service

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


def _claim_digest(decision: Decision | None) -> str:
    """What a claim bills (codes, modifiers, units, charges): a change replaces the claim."""
    lines = [[ln.code, list(ln.modifiers), ln.units, str(ln.price.net), ln.authorization]
             for ln in (decision.lines if decision else ())]  # fmt: skip
    return hashlib.sha256(json.dumps(lines).encode()).hexdigest()[:16]


def _set_of(body: str) -> list[str]:
    """The segments of an interchange's one transaction set, between ST and SE."""
    segments = [s for s in body.split("\n") if s]
    start = next(i for i, s in enumerate(segments) if s.startswith("ST*"))
    end = next(i for i, s in enumerate(segments) if s.startswith("SE*"))
    return segments[start + 1 : end]


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
