"""The year's KX running total, kept by the shell from the lines the adapter wrote (``domain.md``
§6): per patient, per calendar year, per KX group, the expected allowed amounts of each day's
lines. A day's total before it is a function of the ledger (the sum over the earlier days of its
year), never a counter, so a changed or voided earlier day changes every later day's total by
exactly its own change. The rules get the sum (``ServiceDay.kx_prior``); they never read it.

Also the site's opening balances (``--kx-opening FILE``): a CSV ``patient,year,pt_slp,ot``
(dollars; an empty amount: not known), the spend outside the ledger (other providers, days before
the adapter was installed). For a patient and year it names, it wins over the Coverage
extensions.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path

from adapter.domain import (
    Authorization,
    CodeKind,
    Decision,
    Discipline,
    KxGroup,
    KxSpend,
    ProgressReport,
    Rulebook,
    UnitsOnDay,
)
from adapter.errors import ConfigError

ZERO = Decimal("0.00")
_AMOUNT = re.compile(r"^[0-9]+(\.[0-9]{1,2})?$")
_PATIENT = re.compile(r"^Patient/[A-Za-z0-9\-.]{1,64}$")


def day_amounts(decision: Decision, rulebook: Rulebook) -> dict[KxGroup, Decimal]:
    """What a day adds to its year's KX totals: the expected allowed amounts of its lines, per
    KX group of its payer (nothing for a payer without KX; a line without an allowed amount
    adds nothing, and its day has a warning)."""
    payer = rulebook.payer(decision.payer)
    if payer is None or not payer.kx:
        return {}
    out: dict[KxGroup, Decimal] = {}
    for ln in decision.lines:
        group = payer.kx_groups.get(ln.discipline)
        if group is not None and ln.price.allowed is not None:
            out[group] = out.get(group, ZERO) + ln.price.allowed
    return out


def as_spend(amounts: Mapping[KxGroup, Decimal]) -> KxSpend:
    return KxSpend(pt_slp=amounts.get(KxGroup.PT_SLP, ZERO), ot=amounts.get(KxGroup.OT, ZERO))


@dataclass
class KxLedger:
    """The in-memory ledger of one replay: (patient, year) -> date -> amounts."""

    days: dict[tuple[str, int], dict[date, dict[KxGroup, Decimal]]] = field(default_factory=dict)

    def prior(self, patient: str, on: date) -> KxSpend:
        """The sums over the patient's earlier days of the year."""
        total: dict[KxGroup, Decimal] = {}
        for d, amounts in self.days.get((patient, on.year), {}).items():
            if d < on:
                for g, a in amounts.items():
                    total[g] = total.get(g, ZERO) + a
        return as_spend(total)

    def record(self, patient: str, on: date, amounts: Mapping[KxGroup, Decimal]) -> None:
        """The day's amounts (replacing what it held before; none: the day holds nothing)."""
        year = self.days.setdefault((patient, on.year), {})
        if amounts:
            year[on] = dict(amounts)
        else:
            year.pop(on, None)


def read_opening_balances(path: Path) -> dict[tuple[str, int], KxSpend]:
    """The site's opening balances; a ``ConfigError`` naming the file, line and reason."""
    out: dict[tuple[str, int], KxSpend] = {}
    for n, cells in _csv_rows(path, ["patient", "year", "pt_slp", "ot"]):
        patient, year, pt_slp, ot = cells
        patient = patient if patient.startswith("Patient/") else f"Patient/{patient}"
        if not _PATIENT.match(patient):
            raise ConfigError(f"{path}: line {n}: {cells[0]!r} is not a Patient id")
        if not (year.isascii() and year.isdigit() and len(year) == 4):
            raise ConfigError(f"{path}: line {n}: year {year!r} is not a year")
        for value in (pt_slp, ot):
            if value and not _AMOUNT.match(value):
                raise ConfigError(f"{path}: line {n}: {value!r} is not an amount in dollars")
        key = (patient, int(year))
        if key in out:
            raise ConfigError(f"{path}: line {n}: {patient} {year} is listed twice")
        out[key] = KxSpend(
            pt_slp=Decimal(pt_slp) if pt_slp else None, ot=Decimal(ot) if ot else None
        )
    return out


# -- the site's authorizations ---------------------------------------------------------------
AUTHORIZATION_HEADER = ["patient", "number", "discipline", "code", "start", "end", "visits",
                        "units", "payer"]  # fmt: skip
_CODE = re.compile(r"^[A-Z0-9][0-9]{3}[A-Z0-9]$")
_NUMBER = re.compile(r"^[!-~][ -~]{0,49}$")
_PAYER = re.compile(r"^[a-z][a-z0-9_-]*$")


def read_authorizations(
    path: Path, payers: Iterable[str] | None = None
) -> dict[str, tuple[Authorization, ...]]:
    """The site's file of payers' authorizations, by patient key: a CSV with the header
    ``patient,number,discipline,code,start,end,visits,units,payer`` (discipline PT/OT/SLP or
    empty: any; code a CPT/HCPCS code or empty: the discipline's services; start and end
    dates, both days included; visits and units whole numbers or empty: not limited; payer a
    payer profile id or empty: whichever). A ``ConfigError`` names the file, line and reason."""
    rows = _csv_rows(path, AUTHORIZATION_HEADER)
    known = set(payers) if payers is not None else None
    out: dict[str, list[Authorization]] = {}
    seen: set[tuple[str, str, str, str]] = set()
    for n, cells in rows:
        patient, number, discipline, code, start, end, visits, units, payer = cells
        patient = patient if patient.startswith("Patient/") else f"Patient/{patient}"
        where = f"{path}: line {n}"
        if not _PATIENT.match(patient):
            raise ConfigError(f"{where}: {cells[0]!r} is not a Patient id")
        if not _NUMBER.match(number):
            raise ConfigError(f"{where}: {number!r} is not an authorization number")
        if discipline and discipline not in ("PT", "OT", "SLP"):
            raise ConfigError(f"{where}: discipline {discipline!r} is not PT, OT or SLP")
        if code and not _CODE.match(code):
            raise ConfigError(f"{where}: {code!r} is not a CPT/HCPCS code")
        if payer and (not _PAYER.match(payer) or (known is not None and payer not in known)):
            raise ConfigError(f"{where}: {payer!r} is not a payer profile")
        first, last = _date_cell(start, where, "start"), _date_cell(end, where, "end")
        if last < first:
            raise ConfigError(f"{where}: end {end} is before start {start}")
        key = (patient, number, discipline, code)
        if key in seen:
            what = discipline or code or "all services"
            raise ConfigError(f"{where}: {number} for {what} is listed twice")
        seen.add(key)
        out.setdefault(patient, []).append(Authorization(
            number=number, ref=f"{path.name}:{n}",
            discipline=Discipline(discipline) if discipline else None, code=code or None,
            start=first, end=last, visits=_count_cell(visits, where, "visits"),
            units=_count_cell(units, where, "units"), payer=payer or None,
        ))  # fmt: skip
    return {k: tuple(v) for k, v in out.items()}


def _csv_rows(path: Path, header: list[str]) -> list[tuple[int, list[str]]]:
    """The file's rows after its header (blank rows skipped), each with its line number."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ConfigError(f"{path}: cannot be read: {err}") from None
    if not rows or [c.strip().lower() for c in rows[0]] != header:
        raise ConfigError(f"{path}: line 1: header should be {','.join(header)}")
    out = []
    for n, raw in enumerate(rows[1:], start=2):
        cells = [c.strip() for c in raw]
        if not any(cells):
            continue
        if len(cells) != len(header):
            raise ConfigError(f"{path}: line {n}: {len(cells)} columns, not {len(header)}")
        out.append((n, cells))
    return out


def _date_cell(text: str, where: str, name: str) -> date:
    if len(text) == 10:
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise ConfigError(f"{where}: {name} {text!r} is not a date (YYYY-MM-DD)")


def _count_cell(text: str, where: str, name: str) -> int | None:
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or int(text) == 0 or len(text) > 6:
        raise ConfigError(f"{where}: {name} {text!r} is not a whole number above 0")
    return int(text)


# -- the treatment days the progress-report clock counts ----------------------------------------
def day_treatments(
    decision: Decision, rulebook: Rulebook
) -> tuple[set[Discipline], set[Discipline]]:
    """The disciplines a day treated (billed lines) and those it evaluated (an evaluation or
    re-evaluation line), for the progress-report clock."""
    treated = {ln.discipline for ln in decision.lines}
    evaluated = {
        ln.discipline
        for ln in decision.lines
        if (entry := rulebook.code(ln.code, decision.service_date)) is not None
        and entry.kind in (CodeKind.EVALUATION, CodeKind.REEVALUATION)
    }
    return treated, evaluated


DayUnits = tuple[tuple[str, str, int, tuple[str, ...]], ...]


def day_units(decision: Decision) -> DayUnits:
    """The units a day billed per (discipline, code) and the authorization numbers they were
    billed under, for the authorization counters."""
    total: dict[tuple[str, str], tuple[int, set[str]]] = {}
    for ln in decision.lines:
        key = (ln.discipline.value, ln.code)
        units, numbers = total.get(key, (0, set()))
        total[key] = (units + ln.units, numbers | set(ln.authorizations))
    return tuple((d, c, u, tuple(sorted(n))) for (d, c), (u, n) in sorted(total.items()))


@dataclass(frozen=True, slots=True)
class DayHistory:
    """What the clocks need from the patient's earlier days (the shell's to compute)."""

    treatment_days: Mapping[Discipline, tuple[date, ...]] = field(default_factory=dict)
    evaluations: tuple[ProgressReport, ...] = ()
    units: tuple[UnitsOnDay, ...] = ()


HistoryRow = tuple[date, Iterable[str], Iterable[str], Iterable[Iterable[object]] | None]
UNKNOWN_CODE = "*"  # a day recorded before the ledger kept its units: any code, no units


def history_of(rows: Iterable[HistoryRow]) -> DayHistory:
    """A ``DayHistory`` from earlier days' (date, treated disciplines, evaluated disciplines,
    units billed as (discipline, code, units))."""
    days: dict[Discipline, set[date]] = {}
    evaluations: list[ProgressReport] = []
    units: list[UnitsOnDay] = []
    for on, treated_of, evaluated, billed_of in rows:
        treated = list(treated_of)
        # kept before the units were: each treated discipline a visit
        billed = [(d, UNKNOWN_CODE, 0) for d in treated] if billed_of is None else billed_of
        for entry in (tuple(b) for b in billed):
            discipline, code, n = entry[:3]
            numbers = entry[3] if len(entry) > 3 else ()
            units.append(UnitsOnDay(
                date=on, discipline=Discipline(str(discipline)), code=str(code),
                units=int(str(n)),
                authorizations=tuple(str(x) for x in numbers) if isinstance(numbers, list | tuple)
                else (),
            ))  # fmt: skip
        for d in treated:
            days.setdefault(Discipline(d), set()).add(on)
        for d in evaluated:
            evaluations.append(ProgressReport(date=on, discipline=Discipline(d), kind="evaluation",
                                              ref=f"evaluation of {on}"))  # fmt: skip
    return DayHistory(
        treatment_days={k: tuple(sorted(v)) for k, v in days.items()},
        evaluations=tuple(sorted(evaluations, key=lambda r: (r.date, str(r.discipline)))),
        units=tuple(sorted(units, key=lambda u: (u.date, u.discipline.value, u.code))),
    )


@dataclass
class TreatmentLedger:
    """The in-memory treatment days of one replay: patient -> date -> (treated, evaluated,
    units billed)."""

    days: dict[str, dict[date, tuple[frozenset[str], frozenset[str], DayUnits]]] = field(
        default_factory=dict
    )

    def history(self, patient: str, on: date) -> DayHistory:
        rows = self.days.get(patient, {})
        return history_of((d, t, e, u) for d, (t, e, u) in sorted(rows.items()) if d < on)

    def record(self, patient: str, on: date, treated: Iterable[Discipline],
               evaluated: Iterable[Discipline],
               units: DayUnits = ()) -> None:  # fmt: skip
        self.days.setdefault(patient, {})[on] = (
            frozenset(d.value for d in treated),
            frozenset(d.value for d in evaluated),
            units,
        )
