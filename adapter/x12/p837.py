"""837P 005010X222A1 for one patient-day (``domain.md`` §8): ISA/GS/ST envelope and BHT; 1000A
submitter, 1000B receiver; 2000A/2010AA billing provider (NPI, taxonomy, address, tax id);
2000B/2010BA subscriber (the patient), 2010BB payer; 2300 CLM (claim id, total charge, place of
service, frequency 1 original, 7 replacement, 8 void) with REF*G1 (prior authorization), REF*F8
(the payer's claim control number of the claim replaced), HI diagnoses (ABK first, then ABF);
2310A referring provider; 2310B rendering provider (when all lines share one with an NPI);
2400 LX/SV1 (``HC:code:mod1..mod4``, charge, ``UN`` units, up to four diagnosis pointers) and
DTP*472 date of service.

A day the claim cannot carry is not written and says why (``Unwritable``): no billable line, a
line without a price, no ICD-10-CM diagnosis, a subscriber who is not the patient.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from adapter.domain import Decision
from adapter.fhir.build import line_diagnoses
from adapter.fhir.parse import DayFacts
from adapter.fhir.parties import Parties, Person

#: element, component, repetition and segment separators this writer uses
ELEMENT, COMPONENT, REPETITION, SEGMENT = "*", ":", "^", "~"
_SPECIAL = str.maketrans(dict.fromkeys("*:^~\r\n", " "))
#: SBR09 claim filing indicator by payer profile (others: CI commercial)
FILING = {"medicare": "MB", "medicaid": "MC", "tricare": "CH", "commercial": "CI"}


class Unwritable(ValueError):
    """The day cannot be an 837P claim (the reason says why)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """Who sends and who receives (a target's configuration)."""

    sender_id: str  # ISA06 / GS02 / 1000A NM109
    receiver_id: str  # ISA08 / GS03 / 1000B NM109
    submitter_name: str
    receiver_name: str
    contact_name: str
    contact_phone: str  # digits
    usage: Literal["T", "P"] = "T"  # ISA15: test or production


@dataclass(frozen=True, slots=True, kw_only=True)
class BillingProvider:
    name: str
    npi: str
    tax_id: str  # EIN, digits
    address: str
    city: str
    state: str
    postal_code: str  # ZIP+4, 9 digits
    taxonomy: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimControl:
    """What makes one file unique: its control number and the claim's frequency."""

    control_number: int  # ISA13 / GS06 (1..999999999)
    at: datetime  # the file's date and time
    frequency: Literal["1", "7", "8"] = "1"
    payer_claim_number: str = ""  # REF*F8 of a replacement or void, when known


def claim_837p(
    decision: Decision | None,
    facts: DayFacts,
    parties: Parties,
    *,
    envelope: Envelope,
    provider: BillingProvider,
    control: ClaimControl,
    place_of_service: str = "11",
    previous: Decision | None = None,
    payer_id: str = "",
) -> str:
    """The 837P interchange of the day's one claim; a void (frequency 8) repeats the
    ``previous`` decision's lines. ``Unwritable`` when the day cannot be one."""
    body = transaction(decision, facts, parties, envelope=envelope, provider=provider,
                       control=control, place_of_service=place_of_service, previous=previous,
                       payer_id=payer_id)  # fmt: skip
    return interchange([body], envelope=envelope, control_number=control.control_number,
                       at=control.at)  # fmt: skip


def transaction(
    decision: Decision | None,
    facts: DayFacts,
    parties: Parties,
    *,
    envelope: Envelope,
    provider: BillingProvider,
    control: ClaimControl,
    place_of_service: str = "11",
    previous: Decision | None = None,
    payer_id: str = "",
) -> list[str]:
    """The segments of the day's claim between ST and SE (BHT to the last service line)."""
    billed = previous if control.frequency == "8" else decision
    if billed is None or not billed.lines:
        raise Unwritable("no billable line")
    total = billed.total
    if total is None or any(ln.price.net is None for ln in billed.lines):
        raise Unwritable("a line has no price (no chargemaster row)")
    if parties.relationship != "self":
        raise Unwritable("the subscriber is not the patient (2000C is not written yet)")
    codes = list(dict.fromkeys(c for c in parties.diagnoses if c))[:12]
    if not codes:
        raise Unwritable("no ICD-10-CM diagnosis")
    if not (payer_id or parties.payer_id):
        raise Unwritable("no payer id (the target's payer_ids for the profile)")
    w = _Writer()
    claim = claim_id(facts.day.key)
    at = control.at
    w.seg("BHT", "0019", "00", claim, f"{at:%Y%m%d}", f"{at:%H%M}", "CH")
    w.seg("NM1", "41", "2", _text(envelope.submitter_name)[:60], "", "", "", "", "46",
          _text(envelope.sender_id))  # fmt: skip
    w.seg("PER", "IC", _text(envelope.contact_name)[:60], "TE", _digits(envelope.contact_phone))
    w.seg("NM1", "40", "2", _text(envelope.receiver_name)[:60], "", "", "", "", "46",
          _text(envelope.receiver_id))  # fmt: skip
    _billing(w, provider)
    _subscriber(w, parties, billed.payer, payer_id)
    where = f"{place_of_service}{COMPONENT}B{COMPONENT}{control.frequency}"
    w.seg("CLM", claim, _amount(total), "", "", where, "Y", "A", "Y", "Y")
    numbers = sorted({ln.authorization for ln in billed.lines if ln.authorization})
    if numbers:
        w.seg("REF", "G1", _text(numbers[0])[:50])
    if control.frequency in ("7", "8") and control.payer_claim_number:
        w.seg("REF", "F8", _text(control.payer_claim_number)[:50])
    w.seg("HI", *(f"{'ABK' if n == 0 else 'ABF'}{COMPONENT}{c.replace('.', '')}"
                  for n, c in enumerate(codes)))  # fmt: skip
    if facts.referring:
        _person(w, "DN", parties.clinicians.get(facts.referring))
    rendering = _rendering(billed, facts, parties)
    if rendering is not None:
        _person(w, "82", rendering)
    for n, ln in enumerate(billed.lines, start=1):
        mine = [parties.diagnoses[i] for i in line_diagnoses(ln, facts)
                if i < len(parties.diagnoses)]  # fmt: skip
        pointers = [codes.index(c) + 1 for c in dict.fromkeys(mine) if c in codes][:4]
        service = COMPONENT.join(["HC", ln.code, *ln.modifiers[:4]])
        assert ln.price.net is not None
        w.seg("LX", str(n))
        w.seg("SV1", service, _amount(ln.price.net), "UN", str(ln.units), "", "",
              COMPONENT.join(str(p) for p in (pointers or [1])))  # fmt: skip
        w.seg("DTP", "472", "D8", facts.day.service_date.strftime("%Y%m%d"))
    return w.body


def claim_id(day_key: str) -> str:
    """CLM01 (at most 38 characters): the patient-day key, or its hash and date when longer."""
    key = day_key.replace(":", "-")
    if len(key) <= 38:
        return key
    return f"{hashlib.sha256(day_key.encode()).hexdigest()[:27]}-{key[-10:]}"


def interchange(
    sets: Sequence[list[str]], *, envelope: Envelope, control_number: int, at: datetime
) -> str:
    """An interchange of one functional group holding ``sets`` (each one claim's segments),
    ST02 numbered from 0001."""
    n = control_number
    env = envelope
    lines = [
        f"ISA*00*{'':10}*00*{'':10}*ZZ*{_text(env.sender_id)[:15]:15}*ZZ*"
        f"{_text(env.receiver_id)[:15]:15}*{at:%y%m%d}*{at:%H%M}*{REPETITION}*00501*{n:09d}*0*"
        f"{env.usage}*{COMPONENT}{SEGMENT}",
        f"GS*HC*{_text(env.sender_id)}*{_text(env.receiver_id)}*{at:%Y%m%d}*{at:%H%M}*{n}*X*"
        f"005010X222A1{SEGMENT}",
    ]
    for i, body in enumerate(sets, start=1):
        lines.append(f"ST*837*{i:04d}*005010X222A1{SEGMENT}")
        lines += body
        lines.append(f"SE*{len(body) + 2}*{i:04d}{SEGMENT}")
    lines += [f"GE*{len(sets)}*{n}{SEGMENT}", f"IEA*1*{n:09d}{SEGMENT}"]
    return "\n".join(lines) + "\n"


def _billing(w: _Writer, p: BillingProvider) -> None:
    w.seg("HL", "1", "", "20", "1")
    if p.taxonomy:
        w.seg("PRV", "BI", "PXC", _text(p.taxonomy))
    w.seg("NM1", "85", "2", _text(p.name)[:60], "", "", "", "", "XX", _digits(p.npi))
    w.seg("N3", _text(p.address)[:55])
    w.seg("N4", _text(p.city)[:30], _text(p.state)[:2], _digits(p.postal_code))
    w.seg("REF", "EI", _digits(p.tax_id))


def _subscriber(w: _Writer, parties: Parties, payer: str, payer_id: str) -> None:
    w.seg("HL", "2", "1", "22", "0")
    w.seg("SBR", "P", "18", "", "", "", "", "", "", FILING.get(payer, "CI"))
    pat = parties.patient
    w.seg("NM1", "IL", "1", _text(pat.family)[:60] or "UNKNOWN", _text(pat.given)[:35], "", "",
          "", "MI", _text(parties.subscriber_id)[:80] or _text(parties.mrn))  # fmt: skip
    line, city, state, postal = parties.address
    if line and city and state and postal:
        w.seg("N3", _text(line)[:55])
        w.seg("N4", _text(city)[:30], _text(state)[:2], _digits(postal))
    if parties.birth_date:
        gender = {"male": "M", "female": "F"}.get(parties.gender, "U")
        w.seg("DMG", "D8", parties.birth_date.replace("-", "")[:8], gender)
    w.seg("NM1", "PR", "2", _text(parties.payer_name)[:60] or "UNKNOWN PAYER", "", "", "", "",
          "PI", _text(payer_id or parties.payer_id)[:80])  # fmt: skip


def _rendering(decision: Decision, facts: DayFacts, parties: Parties) -> Person | None:
    """The one rendering provider of every line, when there is one with an NPI."""
    who = {p for ln in decision.lines for i in ln.intervention_ids
           for p in facts.performers.get(i, ())[:1]}  # fmt: skip
    person = parties.clinicians.get(next(iter(who))) if len(who) == 1 else None
    return person if person is not None and person.npi else None


def _person(w: _Writer, role: str, person: Person | None) -> None:
    if person is None or not person.family:
        return
    ident = ("XX", _digits(person.npi)) if person.npi else ("", "")
    w.seg("NM1", role, "1", _text(person.family)[:60], _text(person.given)[:35], "", "", "",
          *ident)  # fmt: skip


class _Writer:
    """A transaction set's segments, in order."""

    def __init__(self) -> None:
        self.body: list[str] = []

    def seg(self, tag: str, *elements: str) -> None:
        values = list(elements)
        while values and values[-1] == "":
            values.pop()  # no trailing empty elements
        self.body.append(ELEMENT.join([tag, *values]) + SEGMENT)


def _amount(value: Decimal) -> str:
    """An X12 amount: at most two decimals, no trailing zeros after the point."""
    text = f"{value.quantize(Decimal('0.01'))}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _digits(value: str) -> str:
    return "".join(c for c in value if c.isdigit())


def _text(value: str) -> str:
    """A value in the X12 basic character set: letters without their accents (Müller:
    MULLER), no separators, upper case."""
    plain = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    return " ".join(plain.translate(_SPECIAL).split()).upper()
