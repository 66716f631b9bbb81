"""Charge lines from the billed tallies: the discipline modifier (GP/GO/GN), one distinct-service
modifier, the CQ/CO assistant split (``modifiers``), at most four modifiers a line."""

from __future__ import annotations

from collections.abc import Iterable

from adapter.domain import ChargeLine, Finding, FindingCode, ModifierRules, PayerProfile
from adapter.rules.findings import ERR, finding
from adapter.rules.modifiers import order_modifiers, split_timed, split_untimed
from adapter.rules.tally import CodeOrder, CodeTally, Tallies

#: One line's worth of a code: units, modifiers and reasons.
Part = tuple[int, set[str], list[str]]


def build_lines(
    codes: Tallies, payer: PayerProfile, order: CodeOrder, rules: ModifierRules
) -> tuple[list[ChargeLine], list[Finding]]:
    """The lines of every billed code in rank order, and the modifier-limit findings."""
    lines: list[ChargeLine] = []
    out: list[Finding] = []
    for c in order.ranked(codes.values()):
        if not c.billed:
            continue
        base, reasons, refs = line_modifiers(c, payer, rules)
        for units, mods, why in assistant_parts(c, payer, base, reasons):
            if units <= 0:
                continue
            if len(mods) > rules.max_per_line:
                out.append(modifier_limit(c, len(mods), rules.max_per_line))
                continue
            lines.append(
                ChargeLine(
                    code=c.code,
                    units=units,
                    modifiers=order_modifiers(mods, rules),
                    discipline=c.discipline,
                    intervention_ids=c.ids,
                    minutes=c.minutes,
                    method=payer.method.value,
                    rule_refs=tuple(dict.fromkeys(refs)),
                    reasons=tuple(why),
                )
            )
    return lines, out


def line_modifiers(
    c: CodeTally, payer: PayerProfile, rules: ModifierRules
) -> tuple[set[str], list[str], list[str]]:
    """The modifiers every line of the code carries (before CQ/CO and KX, which is added once
    the lines are priced: ``adapter.rules.kx``), their reasons and refs."""
    discipline = c.discipline
    base = set(c.modifiers)
    reasons = list(dict.fromkeys([c.unit_reason, *c.reasons]))
    refs = list(c.refs)
    disc_mod = payer.discipline_modifiers.get(discipline)
    if disc_mod:
        base.add(disc_mod)
        reasons.append(f"{disc_mod}: delivered under a {discipline} plan of care")
    base, kept = one_distinct_modifier(base, rules)
    reasons += kept
    return base, reasons, refs


def one_distinct_modifier(mods: set[str], rules: ModifierRules) -> tuple[set[str], list[str]]:
    """One distinct-service modifier marks the whole line: keep the first in the configured
    order.

    Returns the modifiers without the others, and the reason when some were left out.
    """
    distinct = sorted(mods & rules.distinct_service, key=rules.rank)
    if len(distinct) <= 1:
        return mods, []
    return mods - set(distinct[1:]), [
        f"{distinct[0]} kept: one distinct-service modifier is enough for the line "
        f"({', '.join(distinct[1:])} not repeated)"
    ]


def assistant_parts(
    c: CodeTally, payer: PayerProfile, base: set[str], reasons: list[str]
) -> list[Part]:
    """Split the code's units into lines without and with CQ/CO when an assistant took part."""
    asst_mod = payer.assistant_modifiers.get(c.discipline)
    if not (asst_mod and (c.assistant_minutes or c.assistant_minutes_unknown)):
        return [(c.units, base, reasons)]
    split = (
        split_timed(
            c.units,
            c.therapist_minutes,
            c.assistant_minutes,
            special_rules=payer.assistant_special_rules,
        )
        if c.timed
        else split_untimed(
            c.therapist_minutes,
            c.assistant_minutes,
            assistant_minutes_unknown=c.assistant_minutes_unknown,
        )
    )
    why = [f"{asst_mod} split: " + "; ".join(split.reasons)]
    return [
        (split.without_modifier, base, reasons + why),
        (split.with_modifier, base | {asst_mod}, reasons + why),
    ]


def modifier_limit(c: CodeTally, count: int, most: int) -> Finding:
    """An 837P line holds at most four modifiers: the line must be split by hand."""
    return finding(
        FindingCode.MODIFIER_LIMIT,
        ERR,
        f"{c.code} would need {count} modifiers; an 837P line holds {most}: split the line by hand",
        c.ids,
        c.code,
    )


def explain_lines(lines: Iterable[ChargeLine]) -> list[str]:
    """The explanation's "Lines:" section: each line with its units, modifiers and reasons."""
    text = [
        f"  {ln.code} x{ln.units} {' '.join(ln.modifiers) or '(no modifier)'} "
        f"from {', '.join(ln.intervention_ids)} ({ln.minutes} min): " + "; ".join(ln.reasons)
        for ln in lines
    ]
    return ["Lines:", *(text or ["  none"])]
