"""The patient's coverage on the date of service: which Coverage is active (lowest ``order``
first), its Source of Payment Typology type (for ``adapter.rules.payer``), and the year-to-date
allowed therapy spend a site may send on it for KX (README "Input conventions")."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

from adapter.domain import KxSpend, Rulebook
from adapter.fhir import codes
from adapter.fhir.coding import codings
from adapter.fhir.dates import in_period
from adapter.fhir.refs import Resource, as_list
from adapter.rules.payer import CoverageType


def active_coverage(
    coverages: Sequence[Resource], service_date: str, zone: tzinfo | None
) -> Resource | None:
    """The active Coverage covering the date with the lowest ``order`` (then id)."""
    active = [
        c
        for c in coverages
        if c.get("status") == "active" and in_period(c.get("period"), service_date, zone)
    ]

    def order(c: Resource) -> tuple[int, str]:
        o = c.get("order")
        return (o if isinstance(o, int) else 99, str(c.get("id")))

    return min(active, key=order) if active else None


def coverage_type(coverage: Resource, rulebook: Rulebook) -> CoverageType:
    """The coverage's first Source of Payment Typology coding (however its system is spelled),
    and whether any carries a code."""
    canonical = rulebook.intake.canonical
    sopt = [c for c in codings(coverage.get("type")) if canonical(c.get("system")) == codes.SOPT]
    first = sopt[0].get("code") if sopt else None
    return CoverageType(
        system=codes.SOPT,
        code=first if isinstance(first, str) else None,
        typed=any(isinstance(c.get("code"), str) for c in sopt),
    )


def kx_spend(coverage: Resource | None) -> KxSpend:
    """Year-to-date allowed therapy spend per KX group, from the coverage's extensions."""
    if coverage is None:
        return KxSpend()
    ext = {
        e["url"]: money(e.get("valueMoney"))
        for e in as_list(coverage.get("extension"))
        if isinstance(e, dict) and isinstance(e.get("url"), str)
    }
    return KxSpend(pt_slp=ext.get(codes.EXT_YTD_PT_SLP), ot=ext.get(codes.EXT_YTD_OT))


def money(value: Any) -> Decimal | None:
    """A Money's non-negative finite amount, or None."""
    amount = value.get("value") if isinstance(value, dict) else None
    if isinstance(amount, bool) or not isinstance(amount, int | float | str):
        return None
    try:
        amount = Decimal(str(amount))
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() and amount >= 0 else None
