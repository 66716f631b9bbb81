"""Small builders for rules-core tests: readable service days without FHIR."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

from adapter.domain import Clinician, Discipline, EncounterContext, Intervention, ServiceDay

DOS = date(2026, 3, 2)
TZ = timezone(timedelta(hours=-5))
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=TZ)

PT = Clinician(id="pt-1", discipline=Discipline.PT)
PT2 = Clinician(id="pt-2", discipline=Discipline.PT)
PTA = Clinician(id="pta-1", discipline=Discipline.PT, assistant=True)
OT = Clinician(id="ot-1", discipline=Discipline.OT)
OTA = Clinician(id="ota-1", discipline=Discipline.OT, assistant=True)
SLP = Clinician(id="slp-1", discipline=Discipline.SLP)
DC = Clinician(id="dc-1", discipline=Discipline.DC)
NOBODY = Clinician(id="aide-1", discipline=None)

GOOD_NOTE = (
    "Balance training with tactile cues and perturbations; patient tolerated well and "
    "improved single-leg stance time."
)


def iv(
    id: str,
    code: str,
    start: int | None,
    minutes: int | None,
    *who: Clinician,
    **kw: Any,
) -> Intervention:
    """An intervention starting ``start`` minutes after 08:00 lasting ``minutes``.

    ``start=None`` gives no time span (``minutes`` is then the documented duration, if any).
    """
    kw.setdefault("diagnosis", True)
    kw.setdefault("note", GOOD_NOTE)
    kw.setdefault("encounter_id", "enc-1")
    performers = who or (PT,)
    if start is None:
        return Intervention(id=id, code=code, minutes=minutes, performers=performers, **kw)
    assert minutes is not None
    s = T0 + timedelta(minutes=start)
    return Intervention(
        id=id, code=code, start=s, end=s + timedelta(minutes=minutes), performers=performers, **kw
    )


def sequential(*code_minutes: tuple[str, int], who: Clinician = PT) -> tuple[Intervention, ...]:
    """Back-to-back interventions, one per (code, minutes), ids p1, p2, ..."""
    out, at = [], 0
    for n, (code, m) in enumerate(code_minutes, start=1):
        out.append(iv(f"p{n}", code, at, m, who))
        at += m
    return tuple(out)


def encounter(*participants: Clinician, **kw: Any) -> EncounterContext:
    kw.setdefault("start", T0 - timedelta(minutes=30))
    kw.setdefault("end", T0 + timedelta(hours=8))
    return EncounterContext(id="enc-1", participants=participants or (PT,), **kw)


def day(*ivs: Intervention, payer: str = "medicare", **kw: Any) -> ServiceDay:
    kw.setdefault("encounters", (encounter(PT, OT, SLP),))
    kw.setdefault("plan_of_care", True)
    return ServiceDay(patient_id="pat-1", service_date=DOS, payer=payer, interventions=ivs, **kw)


def lines(decision: Any) -> list[tuple[str, int, tuple[str, ...]]]:
    return [(ln.code, ln.units, ln.modifiers) for ln in decision.lines]


def units_by_code(decision: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for ln in decision.lines:
        out[ln.code] = out.get(ln.code, 0) + ln.units
    return out


def codes(decision: Any) -> set[str]:
    return {f.code.value for f in decision.findings}
