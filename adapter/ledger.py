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
    CodeKind,
    Decision,
    Discipline,
    KxGroup,
    KxSpend,
    ProgressReport,
    Rulebook,
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
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ConfigError(f"{path}: cannot be read: {err}") from None
    if not rows or [c.strip().lower() for c in rows[0]] != ["patient", "year", "pt_slp", "ot"]:
        raise ConfigError(f"{path}: line 1: header should be patient,year,pt_slp,ot")
    for n, raw in enumerate(rows[1:], start=2):
        cells = [c.strip() for c in raw]
        if not any(cells):
            continue
        if len(cells) != 4:
            raise ConfigError(f"{path}: line {n}: {len(cells)} columns, not 4")
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


@dataclass(frozen=True, slots=True)
class DayHistory:
    """What the clocks need from the patient's earlier days (the shell's to compute)."""

    treatment_days: Mapping[Discipline, tuple[date, ...]] = field(default_factory=dict)
    evaluations: tuple[ProgressReport, ...] = ()


def history_of(rows: Iterable[tuple[date, Iterable[str], Iterable[str]]]) -> DayHistory:
    """A ``DayHistory`` from earlier days' (date, treated disciplines, evaluated disciplines)."""
    days: dict[Discipline, set[date]] = {}
    evaluations: list[ProgressReport] = []
    for on, treated, evaluated in rows:
        for d in treated:
            days.setdefault(Discipline(d), set()).add(on)
        for d in evaluated:
            evaluations.append(ProgressReport(date=on, discipline=Discipline(d), kind="evaluation",
                                              ref=f"evaluation of {on}"))  # fmt: skip
    return DayHistory(
        treatment_days={k: tuple(sorted(v)) for k, v in days.items()},
        evaluations=tuple(sorted(evaluations, key=lambda r: (r.date, str(r.discipline)))),
    )


@dataclass
class TreatmentLedger:
    """The in-memory treatment days of one replay: patient -> date -> (treated, evaluated)."""

    days: dict[str, dict[date, tuple[frozenset[str], frozenset[str]]]] = field(default_factory=dict)

    def history(self, patient: str, on: date) -> DayHistory:
        rows = self.days.get(patient, {})
        return history_of((d, t, e) for d, (t, e) in sorted(rows.items()) if d < on)

    def record(self, patient: str, on: date, treated: Iterable[Discipline],
               evaluated: Iterable[Discipline]) -> None:  # fmt: skip
        self.days.setdefault(patient, {})[on] = (
            frozenset(d.value for d in treated),
            frozenset(d.value for d in evaluated),
        )
