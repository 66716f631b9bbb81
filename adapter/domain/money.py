"""Money as data: the site's chargemaster (what a line is billed at), the Medicare Physician Fee
Schedule (what Medicare is expected to allow), commercial contract rates, and the adjustments
(CQ/CO payment rate, the therapy multiple procedure payment reduction). ``domain.md`` §6.

Amounts are ``Decimal`` dollars; nothing here rounds (the rules round a line to cents once).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Literal

from adapter.domain.source import RuleSource
from adapter.domain.terms import Discipline

Setting = Literal["non-facility", "facility"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CdmEntry:
    """One chargemaster row: the site's charge code and unit price for a CPT/HCPCS code (with a
    modifier where the site prices it apart), in effect over ``source``'s dates."""

    cdm_code: str
    code: str
    modifier: str | None
    description: str
    unit_price: Decimal
    department: str | None
    discipline: Discipline | None
    source: RuleSource


@dataclass(frozen=True, slots=True, kw_only=True)
class Rvu:
    """A PPRRVU row: relative value units and the indicators the payment needs."""

    code: str
    modifier: str | None
    status: str  # A, R, T ... (payable); others are not paid under the PFS
    work: Decimal
    pe_non_facility: Decimal
    pe_facility: Decimal
    mp: Decimal
    mult_proc: str  # "5": always-therapy services, subject to the therapy MPPR

    def pe(self, setting: Setting) -> Decimal:
        return self.pe_non_facility if setting == "non-facility" else self.pe_facility


@dataclass(frozen=True, slots=True, kw_only=True)
class Gpci:
    """The locality's geographic practice cost indices."""

    mac: str
    locality: str
    name: str
    work: Decimal
    pe: Decimal
    mp: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class FeeScheduleYear:
    """One calendar year of the PFS for the site's locality."""

    year: int
    rvus: Mapping[str, Rvu]  # by code (the global row: no modifier)
    gpci: Gpci
    conversion_factor: Decimal
    setting: Setting
    source: RuleSource  # the year's files and conversion factor


@dataclass(frozen=True, slots=True, kw_only=True)
class ContractRate:
    """A commercial payer's allowed amount per unit of a code."""

    payer: str
    code: str
    modifier: str | None
    rate: Decimal
    source: RuleSource


@dataclass(frozen=True, slots=True, kw_only=True)
class Adjustment:
    """A payment adjustment with its rate and source: the CQ/CO payment rate (0.85 of the fee
    schedule), the MPPR's reduction of the practice-expense part (0.50)."""

    rate: Decimal
    source: RuleSource


@dataclass(frozen=True, slots=True, kw_only=True)
class MoneyRules:
    """Everything pricing needs."""

    chargemaster: Mapping[str, tuple[CdmEntry, ...]] = field(default_factory=dict)  # by code
    fee_schedule: Mapping[int, FeeScheduleYear] = field(default_factory=dict)  # by year
    #: which payer profiles' allowed amounts come from the PFS (the rest: contract rates)
    pfs_payers: frozenset[str] = frozenset()
    contracts: Mapping[tuple[str, str], tuple[ContractRate, ...]] = field(default_factory=dict)
    assistant_rate: Adjustment | None = None
    mppr: Adjustment | None = None
    mppr_indicators: frozenset[str] = frozenset({"5"})

    def price(self, code: str, modifiers: tuple[str, ...], on: date) -> CdmEntry | None:
        """The chargemaster row for a line: one for one of its modifiers first, else the
        code's own row (no modifier), in effect on ``on``."""
        rows = [e for e in self.chargemaster.get(code, ()) if e.source.in_effect(on)]
        for row in rows:
            if row.modifier is not None and row.modifier in modifiers:
                return row
        return next((r for r in rows if r.modifier is None), None)

    def contract(
        self, payer: str, code: str, modifiers: tuple[str, ...], on: date
    ) -> ContractRate | None:
        """The payer's rate for a line: one for one of its modifiers first, else the code's
        own rate (no modifier), in effect on ``on``."""
        rows = [r for r in self.contracts.get((payer, code), ()) if r.source.in_effect(on)]
        for row in rows:
            if row.modifier is not None and row.modifier in modifiers:
                return row
        return next((r for r in rows if r.modifier is None), None)
