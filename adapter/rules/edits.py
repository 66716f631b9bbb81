"""Edits on the allocated units: evaluation limits, NCCI procedure-to-procedure pairs, MUE caps,
and the payers' unit review thresholds.

An edit that drops a code records an error finding and its rule ref on the code. ``units_and_edits``
allocates the units and runs the dropping edits again until no timed code is newly dropped (a
dropped timed code lends no minutes to the others).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from adapter.domain import (
    Discipline,
    Finding,
    FindingCode,
    PayerProfile,
    PtpEdit,
    Rulebook,
    ServiceDay,
)
from adapter.rules import timeline
from adapter.rules.allocate import allocate, method_ref
from adapter.rules.codes import is_evaluation
from adapter.rules.documentation import has_justification
from adapter.rules.findings import ERR, INFO, WARN, finding
from adapter.rules.tally import (
    DISCIPLINE_ORDER,
    CodeOrder,
    CodeTally,
    ResolvedService,
    Tallies,
    billed_by_code,
)


def units_and_edits(
    codes: Tallies, day: ServiceDay, payer: PayerProfile, rulebook: Rulebook, order: CodeOrder
) -> tuple[list[Finding], list[str]]:
    """Allocate, apply the evaluation limits and NCCI pairs; again while a timed code drops.

    Returns the findings of every round and the explanation: the last round's unit notes, then
    each edit note once.
    """
    ref = method_ref(payer)
    for c in codes.values():
        c.refs.append(ref)
    findings: list[Finding] = []
    edit_notes: list[str] = []
    rounds = 0
    while True:
        rounds += 1
        unit_notes = allocate(codes, payer, order)
        before = {k for k, c in codes.items() if c.dropped}
        findings += evaluation_limits(codes, rulebook, edit_notes)
        findings += ncci(codes, day, payer, rulebook, edit_notes)
        newly = {k for k, c in codes.items() if c.dropped} - before
        if not any(codes[k].timed for k in newly):
            break
    explanation = list(unit_notes)
    if rounds > 1:
        explanation.append(
            "  the minutes of timed codes the edits below do not bill were left out of the "
            "total and the units allocated again"
        )
    return findings, explanation + list(dict.fromkeys(edit_notes))


def drop(c: CodeTally, code: FindingCode, message: str, ref: str) -> Finding:
    """An edit drops the code: no line, the edit's ref recorded, an error finding."""
    c.dropped = True
    c.refs.append(ref)
    return finding(code, ERR, message, c.ids, c.code)


# -- evaluation limits (NCCI Policy Manual Ch. XI) ----------------------------------------------


def evaluation_limits(codes: Tallies, rulebook: Rulebook, explanation: list[str]) -> list[Finding]:
    """At most N evaluations per discipline a day; some codes not with an evaluation."""
    evals = [c for c in codes.values() if c.billed and is_evaluation(c.services[0].entry)]
    out = too_many_evaluations(evals, rulebook, explanation)
    return out + exclusive_with_evaluation(codes, evals, rulebook, explanation)


def too_many_evaluations(
    evals: list[CodeTally], rulebook: Rulebook, explanation: list[str]
) -> list[Finding]:
    """More evaluations of one discipline than the daily limit: none of them is billed."""
    limits = rulebook.evaluation_limits
    out: list[Finding] = []
    by_discipline: dict[Discipline, list[CodeTally]] = defaultdict(list)
    for c in evals:
        if c.discipline in limits.disciplines:
            by_discipline[c.discipline].append(c)
    for discipline, group in sorted(by_discipline.items()):
        if len(group) > limits.per_discipline_per_day:
            names = ", ".join(sorted(c.code for c in group))
            message = (
                f"{names}: at most {limits.per_discipline_per_day} {discipline} "
                "evaluation or re-evaluation a day; none billed until corrected"
            )
            out += [
                drop(c, FindingCode.EVALUATION_LIMIT, message, limits.source.ref) for c in group
            ]
            explanation.append(f"Edit: {discipline} evaluations {names} exceed the daily limit.")
    return out


def exclusive_with_evaluation(
    codes: Tallies, evals: list[CodeTally], rulebook: Rulebook, explanation: list[str]
) -> list[Finding]:
    """A code not separately reportable with an evaluation by the same practitioner (97750)."""
    limits = rulebook.evaluation_limits
    ref = limits.source.ref
    out: list[Finding] = []
    eval_performers = {
        p for c in evals if not c.dropped for s in c.services for p in s.performer_ids
    }
    for c in codes.values():
        if c.billed and c.code in limits.exclusive_with_evaluation:
            mine = {p for s in c.services for p in s.performer_ids}
            if mine & eval_performers:
                out.append(
                    drop(
                        c,
                        FindingCode.EVALUATION_EXCLUSIVE,
                        f"{c.code} is not separately reportable with an evaluation by the same "
                        "practitioner",
                        ref,
                    )
                )
                explanation.append(f"Edit: {c.code} not billed with an evaluation [{ref}].")
    return out


# -- NCCI procedure-to-procedure pairs ------------------------------------------------------------


def ncci(
    codes: Tallies,
    day: ServiceDay,
    payer: PayerProfile,
    rulebook: Rulebook,
    explanation: list[str],
) -> list[Finding]:
    """NCCI PTP pairs among the billed codes: column 2 dropped, or marked distinct (indicator 1)."""
    out: list[Finding] = []
    by_code = billed_by_code(codes)
    for col1 in sorted(by_code):
        for col2 in sorted(by_code):
            if col1 == col2:
                continue
            edit = rulebook.ptp_edit(col1, col2, day.service_date)
            if edit is None or edit.modifier_indicator == 9:
                continue
            first = [c for c in by_code[col1] if c.billed]
            second = [c for c in by_code[col2] if c.billed]
            if not first or not second:
                continue
            pair = (col1, col2)
            if edit.modifier_indicator == 0:
                out += never_together(pair, edit, second, explanation)
            else:
                out += distinct_or_dropped(
                    pair, edit, first, second, payer, explanation=explanation
                )
    return out


def never_together(
    pair: tuple[str, str], edit: PtpEdit, second: list[CodeTally], explanation: list[str]
) -> list[Finding]:
    """Modifier indicator 0: column 2 is never billable with column 1 on the same day."""
    col1, col2 = pair
    message = f"NCCI: {col2} is never billable with {col1} on the same day (modifier indicator 0)"
    out = [drop(c, FindingCode.NCCI_NOT_ALLOWED, message, edit.source.ref) for c in second]
    explanation.append(f"Edit: NCCI {col1}/{col2} indicator 0 -> {col2} not billed.")
    return out


def distinct_or_dropped(
    pair: tuple[str, str],
    edit: PtpEdit,
    first: list[CodeTally],
    second: list[CodeTally],
    payer: PayerProfile,
    *,
    explanation: list[str],
) -> list[Finding]:
    """Indicator 1: column 2 bills with the distinct-service modifier only when documented apart.

    Therapy pairs need separate documented time intervals (XU/59); chiropractic pairs
    different documented body regions (XS).
    """
    (col1, col2), ref = pair, edit.source.ref
    s1 = [s for c in first for s in c.services]
    s2 = [s for c in second for s in c.services]
    if edit.distinct_by == "region":
        distinct, mod = regions_distinct(s1, s2), payer.region_modifier
        basis = "different documented body regions"
    else:
        distinct, mod = spans_distinct(s1, s2), payer.distinct_modifier
        basis = "separate documented time intervals"
    if not distinct:
        message = (
            f"NCCI pair {col1}/{col2}: {col2} is billable with {col1} only when performed in "
            f"{basis}, which the documentation does not show; {col2} not billed"
        )
        out = [drop(c, FindingCode.NCCI_NOT_DISTINCT, message, ref) for c in second]
        explanation.append(f"Edit: NCCI {col1}/{col2} not distinct -> {col2} not billed.")
        return out
    for c in second:
        c.modifiers.add(mod)
        c.refs.append(ref)
        c.reasons.append(f"{mod}: NCCI pair {col1}/{col2} performed in {basis}")
    explanation.append(f"Edit: NCCI {col1}/{col2} distinct ({basis}) -> {col2} {mod}.")
    return [
        finding(
            FindingCode.NCCI_DISTINCT,
            INFO,
            f"NCCI pair {col1}/{col2}: {col2} performed in {basis}, billed with {mod}",
            [s.id for s in s2],
            col2,
        )
    ]


def spans_distinct(a: Iterable[ResolvedService], b: Iterable[ResolvedService]) -> bool:
    """Every service has a span and no span of one side overlaps one of the other."""
    sa, sb = list(a), list(b)
    if any(s.span is None for s in sa + sb):
        return False
    return all(
        timeline.overlap_seconds(x.span, y.span) == 0  # type: ignore[arg-type]
        for x in sa
        for y in sb
    )


def regions_distinct(a: Iterable[ResolvedService], b: Iterable[ResolvedService]) -> bool:
    """Every service names a body site and no site of one side is a site of the other (a
    manipulation of several regions shares each of them; a site is its coding or its text,
    case-insensitive)."""
    sa, sb = list(a), list(b)
    if any(not s.iv.body_sites for s in sa + sb):
        return False
    ra = {r.lower() for s in sa for r in s.iv.body_sites}
    rb = {r.lower() for s in sb for r in s.iv.body_sites}
    return not (ra & rb)


# -- MUE and review thresholds ---------------------------------------------------------------------


def mue(
    codes: Tallies, day: ServiceDay, rulebook: Rulebook, explanation: list[str]
) -> list[Finding]:
    """Medically unlikely edits: a code's units a day capped, the last disciplines cut first."""
    out: list[Finding] = []
    for code, group in sorted(billed_by_code(codes).items()):
        edit = rulebook.mue_edit(code, day.service_date)
        if edit is None:
            continue
        total = sum(c.units for c in group)
        if total <= edit.max_units:
            continue
        excess = total - edit.max_units
        for c in sorted(group, key=lambda c: DISCIPLINE_ORDER[c.discipline], reverse=True):
            cut = min(excess, c.units)
            c.units -= cut
            excess -= cut
            c.refs.append(edit.source.ref)
            c.reasons.append(f"MUE: {code} capped at {edit.max_units} unit(s) a day")
        ids = [i for c in group for i in c.ids]
        out.append(
            finding(
                FindingCode.MUE_EXCEEDED,
                WARN,
                f"{code}: {total} units exceed the MUE of {edit.max_units}; "
                f"{total - edit.max_units} unit(s) not billed",
                ids,
                code,
            )
        )
        explanation.append(f"Edit: MUE {code} {total} -> {edit.max_units} [{edit.source.ref}].")
    return out


def thresholds(
    codes: Tallies, day: ServiceDay, payer: PayerProfile, rulebook: Rulebook
) -> list[Finding]:
    """Units over a payer review threshold (domain.md §4) without a justification in the note."""
    out: list[Finding] = []
    units: dict[str, int] = defaultdict(int)
    services: dict[str, list[ResolvedService]] = defaultdict(list)
    for c in codes.values():
        if c.billed:
            units[c.code] += c.units
            services[c.code] += c.services
    for t in rulebook.unit_thresholds:
        if not t.source.in_effect(day.service_date):
            continue
        if t.payers and payer.id not in t.payers:
            continue
        if units.get(t.code, 0) <= t.max_units:
            continue
        if t.with_codes and not (t.with_codes & set(units)):
            continue
        if has_justification((s.iv for s in services[t.code]), rulebook.notes):
            continue
        context = (
            f" when billed with {', '.join(sorted(t.with_codes & set(units)))}"
            if t.with_codes
            else ""
        )
        out.append(
            finding(
                FindingCode.UNITS_OVER_THRESHOLD,
                WARN,
                f"{t.code} x{units[t.code]} is over the review threshold of {t.max_units} "
                f"unit(s){context} and the note gives no justification",
                (s.id for s in services[t.code]),
                t.code,
            )
        )
    return out
