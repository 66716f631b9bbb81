"""Output: the decision for one patient-day.

Every number is explained: each ``ChargeLine`` carries the interventions, minutes, unit method and
rule entries (``rule_refs``) that produced it, and the ``Decision`` carries a step-by-step
``explanation`` in plain words.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from adapter.domain.terms import Discipline, FindingCode, Severity, UnitMethod


@dataclass(frozen=True, slots=True, kw_only=True)
class LinePrice:
    """What a line is billed at (the chargemaster's unit price times units) and what the payer
    is expected to allow, each with the steps that produced it."""

    unit_price: Decimal | None = None  # None: no chargemaster row (an error finding says so)
    net: Decimal | None = None
    cdm_code: str | None = None
    allowed: Decimal | None = None  # None: no fee schedule or contract rate for the line
    steps: tuple[str, ...] = ()  # the arithmetic, in words


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargeLine:
    """One billable CPT line: code, units, ordered modifiers and everything that produced it."""

    code: str
    units: int
    modifiers: tuple[str, ...]
    discipline: Discipline
    intervention_ids: tuple[str, ...]
    minutes: int
    method: str
    rule_refs: tuple[str, ...]
    reasons: tuple[str, ...]
    price: LinePrice = LinePrice()
    authorization: str | None = None  # the payer's authorization number the line is under
    authorizations: tuple[str, ...] = ()  # every authorization it counts against


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """A documentation or billing problem, as a value. ``code`` is stable across releases."""

    code: FindingCode
    severity: Severity
    message: str
    intervention_ids: tuple[str, ...] = ()
    line_code: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeMinutes:
    """Minutes documented per discipline and code, and the units they were given."""

    discipline: Discipline
    code: str
    timed: bool
    minutes: int
    units: int
    intervention_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The outcome for one patient-day: lines, findings and the explanation of both."""

    patient_id: str
    service_date: date
    payer: str
    method: UnitMethod
    rulebook_version: str
    lines: tuple[ChargeLine, ...]
    findings: tuple[Finding, ...]
    minutes: tuple[CodeMinutes, ...]
    explanation: tuple[str, ...]

    @property
    def total(self) -> Decimal | None:
        """The day's billed charges (Σ net), when every line is priced."""
        return _sum_known([ln.price.net for ln in self.lines])

    @property
    def allowed_total(self) -> Decimal | None:
        """The day's expected allowed amount, when every line has one."""
        return _sum_known([ln.price.allowed for ln in self.lines])

    @property
    def held_intervention_ids(self) -> frozenset[str]:
        """Interventions an error finding holds back from billing."""
        return frozenset(
            i for f in self.findings if f.severity is Severity.ERROR for i in f.intervention_ids
        )

    def explain(self) -> str:
        """The explanation as readable text."""
        return "\n".join(self.explanation)


def _sum_known(amounts: list[Decimal | None]) -> Decimal | None:
    """The sum of the amounts, or None when one is not known."""
    known = [a for a in amounts if a is not None]
    return sum(known, Decimal("0.00")) if len(known) == len(amounts) else None
