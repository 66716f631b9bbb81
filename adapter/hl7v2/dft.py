"""DFT^P03 (HL7 v2.5.1) for one patient-day, built with ``hl7apy`` (``domain.md`` §8).

MSH, EVN, PID, PV1, one FT1 per line — FT1-4 date of service, FT1-6 ``CG`` charge or ``CR``
credit, FT1-7 the transaction code (the chargemaster's CDM code, or the CPT/HCPCS code where the
site's profile says so or the line has none), FT1-10 the units, FT1-19 the line's diagnoses,
FT1-20 performed by, FT1-21 ordered by (the referring provider), FT1-25 the CPT/HCPCS code,
FT1-26 the modifiers — and DG1 segments (or FT1-19 alone, as the site profile says).

A day's message carries what changed since the last one the receiver accepted: a charge for
each new line and a credit for each line that went away (a changed line is both: a voided line
is sent as a credit, never dropped). ``control_id`` makes MSH-10 unique per message and the same
on every retry of it (the receiver de-duplicates by it).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from adapter.domain import Decision
from adapter.fhir.build import line_diagnoses
from adapter.fhir.parse import DayFacts
from adapter.fhir.parties import Parties, Person

_FHIR_DATE = re.compile(r"[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?")

#: characters with a meaning in ER7 and their escape sequences (HL7 v2.5.1 §2.7)
_ESCAPES = str.maketrans({"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\",
                          "~": "\\R\\", "\r": " ", "\n": " "})  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteProfile:
    """What differs between DFT receivers (a target's ``profile`` in the config)."""

    sending_application: str = "CHARGE-ADAPTER"
    sending_facility: str = ""
    receiving_application: str = "BILLING"
    receiving_facility: str = ""
    #: FT1-7: the chargemaster's CDM code ("cdm", CPT where a line has none) or the CPT code
    transaction_code: Literal["cdm", "cpt"] = "cdm"
    #: diagnoses as DG1 segments and FT1-19 ("both"), or FT1-19 only ("ft1")
    diagnoses: Literal["both", "ft1"] = "both"
    processing_id: Literal["P", "T", "D"] = "P"  # MSH-11: production, training, debugging
    patient_class: str = "O"  # PV1-2: outpatient


@dataclass(frozen=True, slots=True, kw_only=True)
class FtLine:
    """One financial transaction line as sent (and remembered, to credit it later)."""

    code: str
    modifiers: tuple[str, ...]
    units: int
    cdm: str | None
    performer: str | None  # clinician key
    diagnoses: tuple[str, ...]  # ICD-10-CM codes
    line_id: str  # stable across versions of the same line (FT1-2)
    description: str = ""

    def to_json(self) -> dict[str, object]:
        return {"code": self.code, "modifiers": list(self.modifiers), "units": self.units,
                "cdm": self.cdm, "performer": self.performer, "diagnoses": list(self.diagnoses),
                "line_id": self.line_id, "description": self.description}  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> FtLine:
        def strings(key: str) -> tuple[str, ...]:
            value = data.get(key)
            return tuple(str(x) for x in value) if isinstance(value, list) else ()

        return cls(code=str(data["code"]), modifiers=strings("modifiers"),
                   units=int(str(data["units"])),
                   cdm=str(data["cdm"]) if data.get("cdm") is not None else None,
                   performer=str(data["performer"]) if data.get("performer") else None,
                   diagnoses=strings("diagnoses"), line_id=str(data["line_id"]),
                   description=str(data.get("description") or ""))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Change:
    """What a day's new message carries: credits for lines gone, charges for new ones."""

    credits: tuple[FtLine, ...] = ()
    charges: tuple[FtLine, ...] = ()
    current: tuple[FtLine, ...] = field(default=())  # the day's lines after it

    @property
    def empty(self) -> bool:
        return not self.credits and not self.charges


def lines_of(
    decision: Decision | None,
    facts: DayFacts,
    parties: Parties,
    descriptions: Mapping[str, str] | None = None,
) -> tuple[FtLine, ...]:
    """The day's billable lines as FT1 lines (none: nothing billable)."""
    if decision is None:
        return ()
    out = []
    for ln in decision.lines:
        performers = [p for i in ln.intervention_ids for p in facts.performers.get(i, ())]
        if set(ln.modifiers) & {"CQ", "CO"}:  # the assistant's line: the assistant performed it
            performers = [p for p in performers if p in facts.assistants] or performers
        codes = [parties.diagnoses[i] for i in line_diagnoses(ln, facts)
                 if i < len(parties.diagnoses) and parties.diagnoses[i]]  # fmt: skip
        identity = (f"{facts.day.key}|{ln.code}|{','.join(ln.modifiers)}|"
                    f"{','.join(sorted(ln.intervention_ids))}")  # fmt: skip
        out.append(FtLine(
            code=ln.code, modifiers=ln.modifiers, units=ln.units, cdm=ln.price.cdm_code,
            performer=performers[0] if performers else None,
            diagnoses=tuple(dict.fromkeys(codes)),
            line_id=hashlib.sha256(identity.encode()).hexdigest()[:16],
            description=(descriptions or {}).get(ln.code, ""),
        ))  # fmt: skip
    return tuple(out)


def change(previous: Sequence[FtLine], current: Sequence[FtLine]) -> Change:
    """Credits for the lines sent before that are not in ``current`` as they were (a line
    whose units, modifiers or codes changed is credited and charged again), charges for the
    new ones."""
    # multisets: two equal lines are two charges (one of them gone is one credit)
    left_now, left_before = Counter(current), Counter(previous)
    credits, charges = [], []
    for ln in previous:
        if left_now[ln] > 0:
            left_now[ln] -= 1
        else:
            credits.append(ln)
    for ln in current:
        if left_before[ln] > 0:
            left_before[ln] -= 1
        else:
            charges.append(ln)
    return Change(credits=tuple(credits), charges=tuple(charges), current=tuple(current))


def control_id(target: str, day_key: str, sequence: int, salt: str = "") -> str:
    """MSH-10 (at most 20 characters): the same for every retry of the day's ``sequence``-th
    message to ``target``, different for any other (``salt``: the store's own, so a store
    started afresh never repeats an earlier store's ids)."""
    text = f"{salt}|{target}|{day_key}|{sequence}"
    return hashlib.sha256(text.encode()).hexdigest()[:20].upper()


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    """What a day's messages say about the patient and visit (kept with the outbox message,
    so a message is composed when it is sent)."""

    day_key: str
    service_date: str  # YYYYMMDD
    mrn: str
    family: str
    given: str
    birth_date: str
    gender: str
    encounter: str
    referring: str | None
    persons: Mapping[str, Person]

    def to_json(self) -> dict[str, object]:
        return {"day_key": self.day_key, "service_date": self.service_date, "mrn": self.mrn,
                "family": self.family, "given": self.given, "birth_date": self.birth_date,
                "gender": self.gender, "encounter": self.encounter, "referring": self.referring,
                "persons": {k: [p.family, p.given, p.npi]
                            for k, p in self.persons.items()}}  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Header:
        return cls(**{k: str(data.get(k) or "") for k in (
            "day_key", "service_date", "mrn", "family", "given", "birth_date", "gender",
            "encounter")}, referring=data.get("referring") or None,
            persons={k: Person(key=k, family=v[0], given=v[1], npi=v[2])
                     for k, v in dict(data.get("persons") or {}).items()})  # fmt: skip


def header_of(facts: DayFacts, parties: Parties) -> Header:
    return Header(
        day_key=facts.day.key, service_date=facts.day.service_date.strftime("%Y%m%d"),
        mrn=parties.mrn, family=parties.patient.family, given=parties.patient.given,
        birth_date=parties.birth_date, gender=parties.gender,
        encounter=facts.encounters[0].partition("/")[2] if facts.encounters else "",
        referring=facts.referring, persons=dict(parties.clinicians),
    )  # fmt: skip


def dft_message(
    *,
    header: Header,
    delta: Change,
    message_id: str,
    at: datetime,
    profile: SiteProfile,
) -> str:
    """The DFT^P03 message (ER7, segments ended by CR) for a day's change.

    Composed as text, segment by segment (every value escaped by ``_text``, trailing empty
    fields and components left out, as ER7 writes them): building it through hl7apy's element
    tree cost ~35 ms a message, the DFT target's whole throughput. hl7apy stays the
    independent check: the tests parse and validate every message strictly (v2.5.1)."""
    name = _components(_text(header.family), _text(header.given))
    if not name:
        raise ValueError("the patient has no name: PID-5 is required (HL7 v2.5.1)")
    stamp = at.strftime("%Y%m%d%H%M%S")
    segments = [
        _segment("MSH", "^~\\&", _text(profile.sending_application),
                 _text(profile.sending_facility), _text(profile.receiving_application),
                 _text(profile.receiving_facility), stamp, "", "DFT^P03^DFT_P03",
                 _text(message_id), profile.processing_id, "2.5.1", "", "", "", "", "",
                 "UNICODE UTF-8"),
        _segment("EVN", "P03", stamp),
        _segment("PID", "1", "", _components(_text(header.mrn), "", "", "", "MR"), "",
                 name, "",
                 _dtm_date(header.birth_date),
                 {"male": "M", "female": "F", "other": "O"}.get(header.gender, "U")),
        _segment("PV1", "1", _text(profile.patient_class), *([""] * 16),
                 _text(header.encounter)),
    ]  # fmt: skip
    n = 0
    for kind, lines in (("CR", delta.credits), ("CG", delta.charges)):
        for ln in lines:
            n += 1
            segments.append(_ft1(n, kind, ln, stamp=stamp, header=header, profile=profile))
    if profile.diagnoses == "both":
        codes = dict.fromkeys(c for ln in delta.current + delta.credits for c in ln.diagnoses)
        for i, code in enumerate(codes, start=1):
            segments.append(
                _segment("DG1", str(i), "", _components(_text(code), "", "I10"), "", "", "F")
            )  # fmt: skip  (DG1-6 F: final)
    return "\r".join(segments) + "\r"


def _segment(name: str, *fields: str) -> str:
    """A segment's ER7 text: its fields after the name, trailing empty ones left out."""
    text = _trimmed("|", fields)
    if name == "MSH":  # MSH-1 is the field separator itself: MSH-2 follows the name directly
        return "MSH|" + text
    return f"{name}|{text}" if text else name


def _components(*parts: str) -> str:
    """A field's components (``^``), trailing empty ones left out."""
    return _trimmed("^", parts)


def _trimmed(separator: str, values: Sequence[str]) -> str:
    """``values`` joined, the trailing empty ones left out (as ER7 writes them)."""
    end = len(values)
    while end and not values[end - 1]:
        end -= 1
    return separator.join(values[:end])


def _ft1(n: int, kind: str, ln: FtLine, *, stamp: str, header: Header,
         profile: SiteProfile) -> str:  # fmt: skip
    cdm = profile.transaction_code == "cdm" and bool(ln.cdm)
    transaction = ln.cdm if cdm and ln.cdm else ln.code
    system = "CDM" if cdm else "C4"
    referring = (
        _xcn(header.persons.get(header.referring), header.referring) if header.referring else ""
    )
    return _segment(
        "FT1", str(n), _text(ln.line_id), "", header.service_date, stamp[:8], kind,
        _components(_text(transaction), _fitted(ln.description, 199), system), "", "",
        str(ln.units), *([""] * 8),
        "~".join(_components(_text(code), "", "I10") for code in ln.diagnoses),
        _xcn(header.persons.get(ln.performer), ln.performer) if ln.performer else "",
        referring, "", "", "", _components(_text(ln.code), "", "C4"),
        "~".join(_components(_text(m), "", "CPTM") for m in ln.modifiers),
    )  # fmt: skip


def _xcn(person: Person | None, key: str) -> str:
    """A clinician as XCN: the NPI (XCN-13 NPI) and the name; no NPI: the reference's id."""
    if person is None or not person.npi:
        return _components(_text(key.partition("/")[2]), _text(person.family if person else ""),
                           _text(person.given) if person else "")  # fmt: skip
    return _components(_text(person.npi), _text(person.family), _text(person.given),
                       *([""] * 9), "NPI")  # fmt: skip


def _dtm_date(value: str) -> str:
    """A FHIR date (YYYY, YYYY-MM, YYYY-MM-DD) as an HL7 date; anything else left out (PID-7
    is optional; an unchecked value would break the segment)."""
    return value.replace("-", "") if _FHIR_DATE.fullmatch(value or "") else ""


def _fitted(value: str, limit: int) -> str:
    """``value`` escaped, cut so that the escaped text fits in ``limit`` characters (cutting
    after escaping could split an escape sequence)."""
    value = value[:limit]  # an escape only lengthens: no more characters than the limit
    text = _text(value)
    while len(text) > limit:
        value = value[:-1]
        text = _text(value)
    return text


def _text(value: str) -> str:
    """A value with ER7's special characters escaped."""
    return value.strip().translate(_ESCAPES)
