"""The KX modifier: year-to-date therapy spend past the payer's yearly threshold per KX group (the
payer's ``kx_groups``; Medicare: PT and SLP combined, OT on its own), medical necessity attested;
above the review amount, a notice."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from adapter.domain import (
    Discipline,
    Finding,
    FindingCode,
    KxGroup,
    KxThreshold,
    PayerProfile,
    ServiceDay,
)
from adapter.rules.findings import INFO, WARN, finding
from adapter.rules.tally import Tallies


@dataclass(frozen=True, slots=True, kw_only=True)
class KxDecision:
    """Per discipline that carries KX: the reason and the refs; and the findings of the day."""

    reasons: Mapping[Discipline, str] = field(default_factory=dict)
    refs: Mapping[Discipline, tuple[str, ...]] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class _GroupKx:
    """The outcome for one KX group: the KX reason when it applies, and the findings."""

    reason: str | None
    findings: tuple[Finding, ...]


def kx(codes: Tallies, day: ServiceDay, payer: PayerProfile, explanation: list[str]) -> KxDecision:
    """Judge KX per group of the billed disciplines, for payers that use it."""
    if not payer.kx:
        return KxDecision()
    reasons: dict[Discipline, str] = {}
    refs: dict[Discipline, tuple[str, ...]] = {}
    out: list[Finding] = []
    groups = payer.kx_groups
    billed = sorted({c.discipline for c in codes.values() if c.billed and c.discipline in groups})
    year = day.service_date.year
    threshold = payer.kx_threshold(year)
    for g in sorted({groups[d] for d in billed}):
        members = [d for d in billed if groups[d] is g]
        ids = [i for c in codes.values() if c.billed and c.discipline in members for i in c.ids]
        spend = day.kx_spend.for_group(g)
        name = group_name(g, groups)
        outcome = kx_for_group(name, ids, year, threshold, spend=spend, payer=payer)
        out += outcome.findings
        if outcome.reason is not None and threshold is not None:
            for d in members:
                reasons[d] = outcome.reason
                refs[d] = (threshold.source.ref,)
            explanation.append(f"Modifier: {outcome.reason} [{threshold.source.ref}].")
    return KxDecision(reasons=reasons, refs=refs, findings=tuple(out))


def group_name(group: KxGroup, groups: Mapping[Discipline, KxGroup]) -> str:
    """A KX group in words: its disciplines ("PT and SLP combined", "OT")."""
    members = [d.value for d in Discipline if groups.get(d) is group]
    return " and ".join(members) + (" combined" if len(members) > 1 else "")


def kx_for_group(
    name: str,
    ids: Sequence[str],
    year: int,
    threshold: KxThreshold | None,
    *,
    spend: Decimal | None,
    payer: PayerProfile,
) -> _GroupKx:
    """KX when the spend passes the year's threshold; a warning when either is not known."""
    if threshold is None:
        unknown = finding(
            FindingCode.KX_THRESHOLD_UNKNOWN,
            WARN,
            f"no KX threshold is configured for {year}: KX cannot be judged",
            ids,
        )
        return _GroupKx(reason=None, findings=(unknown,))
    if spend is None:
        no_spend = finding(
            FindingCode.KX_SPEND_UNKNOWN,
            WARN,
            f"year-to-date therapy spend ({name}) is not known: cannot tell whether the "
            f"{year} KX threshold of ${threshold.amount} is passed",
            ids,
        )
        return _GroupKx(reason=None, findings=(no_spend,))
    if spend <= threshold.amount:
        return _GroupKx(reason=None, findings=())
    reason = (
        f"KX: year-to-date spend ({name}) ${spend} passes the {year} threshold "
        f"${threshold.amount}; medical necessity attested"
    )
    out = [finding(FindingCode.KX_APPLIED, INFO, reason, ids)]
    if payer.kx_review_amount is not None and spend > payer.kx_review_amount:
        out.append(
            finding(
                FindingCode.KX_REVIEW,
                INFO,
                f"year-to-date spend ({name}) ${spend} is above "
                f"${payer.kx_review_amount}: claims may face targeted medical review",
                ids,
            )
        )
    return _GroupKx(reason=reason, findings=tuple(out))
