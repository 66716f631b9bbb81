"""Units for the day's tallies by the payer's method (the arithmetic itself is in ``units``).

CMS: timed minutes totalled per pool (per discipline, or pooled) and the pool's units spread over
its codes (MCPM Ch. 5 §20.2); CPT/AMA: each timed code on its own; untimed codes: one unit.
"""

from __future__ import annotations

from collections import defaultdict

from adapter.domain import Finding, FindingCode, PayerProfile, Pooling, UnitMethod
from adapter.rules.findings import INFO, finding
from adapter.rules.tally import CodeOrder, CodeTally, Tallies
from adapter.rules.units import allocate_ama, allocate_cms, band


def method_ref(payer: PayerProfile) -> str:
    """The rule ref of the payer's unit method, stamped on every line."""
    return f"payer:{payer.id}"


def allocate(codes: Tallies, payer: PayerProfile, order: CodeOrder) -> list[str]:
    """Units for every code not dropped by an edit; returns the explanation lines."""
    live = [c for c in codes.values() if not c.dropped]
    for c in codes.values():
        if c.dropped:
            c.units = 0
    if payer.method is UnitMethod.CMS:
        notes = allocate_timed_cms(live, payer, order)
    else:
        notes = allocate_timed_ama(live, codes, payer, order)
    return notes + allocate_untimed(live, order)


def allocate_timed_cms(live: list[CodeTally], payer: PayerProfile, order: CodeOrder) -> list[str]:
    """CMS total-time method (MCPM Ch. 5 §20.2): the timed minutes of each pool give its units."""
    scope = "per discipline" if payer.pooling is Pooling.PER_DISCIPLINE else "pooled"
    notes = [
        f"Units: CMS total-time method (MCPM Ch. 5 §20.2), timed minutes totalled {scope} "
        f"[{method_ref(payer)}]."
    ]
    pools: dict[str, list[CodeTally]] = defaultdict(list)
    for c in live:
        if c.timed:
            pools["all" if payer.pooling is Pooling.POOLED else str(c.discipline)].append(c)
    for pool, members in sorted(pools.items()):
        notes += allocate_pool(pool, members, order)
    return notes


def allocate_pool(pool: str, members: list[CodeTally], order: CodeOrder) -> list[str]:
    """One CMS pool: its total minutes give the units, spread by full units then remainders."""
    label = order.label
    alloc = allocate_cms({c.key: c.minutes for c in members}, order.rank, label)
    notes = [
        f"  {pool} timed: "
        + ", ".join(
            f"{label(c.key)} {c.minutes} min [{', '.join(c.ids)}]" for c in order.ranked(members)
        )
    ]
    notes += [f"    {step}" for step in alloc.steps]
    for c in members:
        c.units = alloc.units[c.key]
        c.zero_reason = (
            "the CMS total-time units went to codes with more minutes"
            if alloc.total_units
            else f"{pool} timed total {alloc.total_minutes} min is under 8"
        )
        c.unit_reason = (
            f"units: CMS total-time, {pool} timed total {alloc.total_minutes} min -> "
            f"{alloc.total_units} unit(s); {c.code} {c.minutes} min got {c.units}"
            + (" (remainder tie broken deterministically)" if alloc.tie_broken else "")
        )
    return notes


def allocate_timed_ama(
    live: list[CodeTally], codes: Tallies, payer: PayerProfile, order: CodeOrder
) -> list[str]:
    """CPT/AMA per-code method: each timed code's own minutes give its units, never pooled."""
    notes = [f"Units: CPT/AMA per-code method, each timed code on its own [{method_ref(payer)}]."]
    per_code = allocate_ama({c.key: c.minutes for c in live if c.timed})
    for key, u in sorted(per_code.items(), key=lambda kv: order.rank(kv[0])):
        c = codes[key]
        c.units = u
        c.unit_reason = f"units: CPT/AMA per code, {c.minutes} min -> {u} unit(s)"
        notes.append(
            f"  {order.label(key)} {c.minutes} min [{', '.join(c.ids)}] -> {u} unit(s) ({band(u)})"
        )
    return notes


def allocate_untimed(live: list[CodeTally], order: CodeOrder) -> list[str]:
    """An untimed code bills one unit a day, whatever its minutes."""
    notes: list[str] = []
    for c in live:
        if not c.timed:
            c.units = 1
            c.unit_reason = "units: untimed code, one unit per day regardless of minutes"
            notes.append(f"  {order.label(c.key)} untimed [{', '.join(c.ids)}] -> 1 unit")
    return notes


def unbilled_findings(codes: Tallies, order: CodeOrder) -> list[Finding]:
    """A timed code with no unit: under 8 minutes, or the pool's units went to other codes."""
    return [
        finding(
            FindingCode.UNDER_8_MINUTES if c.minutes < 8 else FindingCode.NO_UNIT_LEFT,
            INFO,
            f"{c.code} documented for {c.minutes} min: {c.zero_reason}; documented, not billed",
            c.ids,
            c.code,
        )
        for c in order.ranked(codes.values())
        if c.timed and c.units == 0 and not c.dropped
    ]
