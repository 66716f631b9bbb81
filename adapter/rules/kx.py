"""The KX modifier (MCPM Ch. 5 §10.3; ``domain.md`` §6): allowed amounts accumulate per patient
per calendar year per KX group (the payer's ``kx_groups``; Medicare: PT and SLP together, OT
apart). A line needs KX when the total before it plus its own expected allowed amount exceeds
the year's threshold; every later line of the year too. Above the targeted medical review amount
the billing office is warned.

The total before the day is the shell's to compute and pass in: ``ServiceDay.kx_spend`` is the
opening balance the site supplies (spend outside the adapter's ledger: other providers, days
before it was installed; None: not known), ``ServiceDay.kx_prior`` the allowed amounts of the
adapter's own lines on earlier days of the year. Within the day the lines are taken in their
order. An unknown opening balance is never guessed: KX is added only when the adapter's own
lines alone pass the threshold, else a warning says the answer is not known.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal

from adapter.domain import (
    ChargeLine,
    Discipline,
    Finding,
    FindingCode,
    KxGroup,
    ModifierRules,
    PayerProfile,
    ServiceDay,
)
from adapter.rules.findings import ERR, INFO, WARN, finding
from adapter.rules.modifiers import order_modifiers


@dataclass(slots=True)
class _Running:
    """One KX group's running total through the day."""

    name: str
    total: Decimal  # opening (when known) + earlier days + the day's lines so far
    known: bool  # False: the opening balance is unknown, ``total`` is a lower bound
    steps: list[str]
    ids: list[str]
    kx_ids: list[str] = field(default_factory=list)  # the interventions of the KX lines
    added: Decimal = Decimal("0.00")  # what the day's lines added
    unknown: bool = False  # a line's place could not be judged
    crossed: bool = False
    reviewed: bool = False


def apply_kx(
    lines: Sequence[ChargeLine],
    day: ServiceDay,
    payer: PayerProfile,
    rules: ModifierRules,
    explanation: list[str],
) -> tuple[list[ChargeLine], list[Finding]]:
    """The lines with KX where the running total passes the threshold, and the findings."""
    if not payer.kx:
        return list(lines), []
    year = day.service_date.year
    threshold = payer.kx_threshold(year)
    groups = payer.kx_groups
    billed = [ln for ln in lines if ln.discipline in groups]
    if not billed:
        return list(lines), []
    if threshold is None:
        ids = sorted({i for ln in billed for i in ln.intervention_ids})
        return list(lines), [
            finding(FindingCode.KX_THRESHOLD_UNKNOWN, WARN,
                    f"no KX threshold is configured for {year}: KX cannot be judged", ids)
        ]  # fmt: skip
    running: dict[KxGroup, _Running] = {}
    for ln in billed:
        g = groups[ln.discipline]
        if g not in running:
            running[g] = _start(g, groups, day)
    out: list[ChargeLine] = []
    findings: list[Finding] = []
    for ln in lines:
        group = groups.get(ln.discipline)
        if group is None:
            out.append(ln)
            continue
        r = running[group]
        new, found = _line(ln, r, threshold.amount, rules=rules, ref=threshold.source.ref)
        out.append(new)
        findings += found
    for r in running.values():
        findings += _group_findings(r, year, threshold.amount, payer)
        findings += _forecast(r, threshold.amount, day.planned_visits_per_week)
        explanation.append(
            f"KX ({r.name}, {year} threshold ${threshold.amount}): " + "; ".join(r.steps)
        )
    return out, findings


def _start(g: KxGroup, groups: Mapping[Discipline, KxGroup], day: ServiceDay) -> _Running:
    name = group_name(g, groups)
    opening = day.kx_spend.for_group(g)
    prior = day.kx_prior.for_group(g) or Decimal("0.00")
    opening = opening.quantize(Decimal("0.01")) if opening is not None else None
    total = (opening or Decimal("0.00")) + prior
    if opening is None:
        start = f"before the day ${prior} of the adapter's own lines (opening balance unknown)"
    else:
        start = (
            f"before the day ${total} (opening ${opening} + the adapter's earlier lines ${prior})"
        )
    return _Running(name=name, total=total, known=opening is not None, steps=[start], ids=[])


def _line(
    ln: ChargeLine, r: _Running, threshold: Decimal, *, rules: ModifierRules, ref: str
) -> tuple[ChargeLine, list[Finding]]:
    """One line through its group's running total: KX when the total passes the threshold."""
    label = " ".join([ln.code, *ln.modifiers]) + f" x{ln.units}"
    r.ids += ln.intervention_ids
    allowed = ln.price.allowed
    if allowed is None:
        r.steps.append(f"{label}: allowed amount unknown")
        needs = r.total > threshold  # already past: KX whatever this line adds
        r.unknown = r.unknown or not needs
    else:
        r.total += allowed
        r.added += allowed
        needs = r.total > threshold
        r.steps.append(f"{label} +${allowed} = ${r.total}" + (" -> KX" if needs else ""))
        if not needs and not r.known:
            r.unknown = True
    if not needs:
        return ln, []
    r.crossed = True
    r.kx_ids += ln.intervention_ids
    if "KX" in ln.modifiers:
        return ln, []
    if len(ln.modifiers) + 1 > rules.max_per_line:
        return ln, [
            finding(FindingCode.MODIFIER_LIMIT, ERR,
                    f"{ln.code} needs KX but already has {len(ln.modifiers)} modifiers; an 837P "
                    f"line holds {rules.max_per_line}: split the line by hand",
                    ln.intervention_ids, ln.code)
        ]  # fmt: skip
    reason = (
        f"KX: the {r.name} allowed amounts of the year reach ${r.total}, past the threshold "
        f"${threshold}; medical necessity attested"
    )
    new = replace(
        ln,
        modifiers=order_modifiers({*ln.modifiers, "KX"}, rules),
        reasons=(*ln.reasons, reason),
        rule_refs=tuple(dict.fromkeys((*ln.rule_refs, ref))),
    )
    return new, []


def _group_findings(
    r: _Running, year: int, threshold: Decimal, payer: PayerProfile
) -> list[Finding]:
    out: list[Finding] = []
    if r.crossed:
        out.append(
            finding(FindingCode.KX_APPLIED, INFO,
                    f"KX: {r.name} allowed amounts of {year} reach ${r.total}, past the "
                    f"threshold ${threshold}; medical necessity attested", r.kx_ids)
        )  # fmt: skip
    if r.unknown:
        out.append(
            finding(FindingCode.KX_SPEND_UNKNOWN, WARN,
                    f"year-to-date therapy spend ({r.name}) is not known (no opening balance, or "
                    f"a line without an allowed amount): cannot tell whether the {year} KX "
                    f"threshold of ${threshold} is passed", r.ids)
        )  # fmt: skip
    review = payer.kx_review_amount
    if review is not None and r.total > review:
        out.append(
            finding(FindingCode.KX_REVIEW, WARN,
                    f"{r.name} allowed amounts of {year} reach ${r.total}, above ${review}: "
                    "claims may face targeted medical review", r.ids)
        )  # fmt: skip
    return out


FORECAST_WEEKS = 4


def _forecast(r: _Running, threshold: Decimal, visits_per_week: Decimal | None) -> list[Finding]:
    """A billing-office warning when the plan of care's visits, each worth about what this day
    allowed, take the total past the threshold within the next four weeks."""
    if r.crossed or not r.known or visits_per_week is None or r.added <= 0:
        return []
    visits = math.ceil((threshold - r.total) / r.added) or 1  # the visit that passes it
    weeks = Decimal(visits) / visits_per_week
    if weeks > FORECAST_WEEKS:
        return []
    return [
        finding(FindingCode.KX_FORECAST, WARN,
                f"at {visits_per_week.normalize():f} visit(s) a week of about ${r.added} "
                f"(this day's), the {r.name} total of ${r.total} passes the threshold "
                f"${threshold} in about {math.ceil(weeks)} week(s) ({visits} more visit(s)): "
                "KX and its medical-necessity documentation will be needed", r.ids)
    ]  # fmt: skip


def group_name(group: KxGroup, groups: Mapping[Discipline, KxGroup]) -> str:
    """A KX group in words: its disciplines ("PT and SLP combined", "OT")."""
    members = [d.value for d in Discipline if groups.get(d) is group]
    return " and ".join(members) + (" combined" if len(members) > 1 else "")
