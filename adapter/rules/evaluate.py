"""``evaluate(day, rulebook) -> Decision``: the billing rules for one patient-day, pure.

Steps, each explained in the decision:

1. resolve every intervention (code, payer substitution/bundling, discipline, time, group,
   supervision); an error holds it;
2. timed services of different codes overlapping in time are held (minutes never count twice);
3. minutes per discipline and code (sessions add up; overlapping records of one code count once);
4. units by the payer's method (CMS total-time per pool, or CPT/AMA per code); untimed: 1 unit;
5. edits: evaluation limits, NCCI PTP pairs (distinct-service modifier only with separate
   documented intervals), MUE caps;
6. lines: CQ/CO split, GP/GO/GN, KX; modifiers in the default order;
7. review thresholds and documentation warnings.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from adapter.domain import (
    ChargeLine,
    CodeMinutes,
    CoverageStatus,
    Decision,
    Discipline,
    Finding,
    FindingCode,
    KxGroup,
    PayerProfile,
    Pooling,
    Rulebook,
    ServiceDay,
    Severity,
    UnitMethod,
)
from adapter.rules import timeline
from adapter.rules.documentation import (
    ERR,
    INFO,
    WARN,
    Service,
    concurrency,
    finding,
    has_justification,
    is_evaluation,
    note_findings,
    overlaps,
    resolve,
)
from adapter.rules.modifiers import (
    DISTINCT_MODIFIERS,
    MAX_MODIFIERS,
    MODIFIER_ORDER,
    order_modifiers,
    split_timed,
    split_untimed,
)
from adapter.rules.units import allocate_ama, allocate_cms, band

Key = tuple[Discipline, str]
_DISCIPLINE_ORDER = {d: n for n, d in enumerate(Discipline)}
_SEVERITY_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


@dataclass(slots=True)
class _Code:
    """Working state for one discipline + code on the day."""

    key: Key
    services: list[Service]
    timed: bool
    minutes: int = 0
    therapist_minutes: int = 0
    assistant_minutes: int = 0
    assistant_minutes_unknown: bool = False
    units: int = 0
    zero_reason: str = "under 8 min"
    unit_reason: str = ""
    dropped: bool = False
    modifiers: set[str] = field(default_factory=set)
    refs: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def code(self) -> str:
        return self.key[1]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(sorted(s.id for s in self.services))

    @property
    def billed(self) -> bool:
        return self.units > 0 and not self.dropped


def evaluate(day: ServiceDay, rulebook: Rulebook) -> Decision:
    """Decide the billable lines and the findings for one patient's date of service."""
    payer = rulebook.payer(day.payer)
    if payer is None:
        raise ValueError(f"unknown payer profile {day.payer!r}; known: {sorted(rulebook.payers)}")
    findings: list[Finding] = []
    explanation: list[str] = [
        f"{day.patient_id}, date of service {day.service_date}, payer profile "
        f"{payer.id} ({payer.name}), rulebook {rulebook.version}.",
    ]
    encounters = {e.id: e for e in day.encounters}
    interventions = sorted(day.interventions, key=lambda iv: iv.id)
    if len({iv.id for iv in interventions}) != len(interventions):
        raise ValueError("intervention ids must be unique within a service day")

    # 1. resolve ------------------------------------------------------------------------------
    services: list[Service] = []
    sub_refs: dict[str, tuple[str, ...]] = {}
    for iv in interventions:
        res = resolve(iv, day, payer, rulebook, encounters)
        findings += res.findings
        findings += note_findings(iv, rulebook.notes)
        if res.service is not None:
            services.append(res.service)
            sub_refs[iv.id] = res.rule_refs
    no_dx = [
        iv.id
        for iv in interventions
        if not iv.diagnosis
        and not (iv.encounter_id in encounters and encounters[iv.encounter_id].diagnosis)
    ]
    if no_dx:
        findings.append(
            finding(
                FindingCode.NO_DIAGNOSIS,
                WARN,
                "no diagnosis (reason) on the procedure or its encounter: medical necessity "
                "is not shown",
                no_dx,
            )
        )
    if day.coverage is CoverageStatus.MISSING and interventions:
        findings.append(
            finding(
                FindingCode.COVERAGE_MISSING,
                WARN,
                f"no active coverage found for the date of service: billed under the default "
                f"profile {payer.id}; confirm the payer",
                (iv.id for iv in interventions),
            )
        )
    elif day.coverage is CoverageStatus.UNTYPED and interventions:
        findings.append(
            finding(
                FindingCode.COVERAGE_TYPE_UNKNOWN,
                WARN,
                f"the active coverage has no Source of Payment Typology type: billed under the "
                f"default profile {payer.id}; confirm the payer",
                (iv.id for iv in interventions),
            )
        )
    if day.plan_of_care is False and interventions:
        findings.append(
            finding(
                FindingCode.NO_PLAN_OF_CARE,
                WARN,
                "no active plan of care (CarePlan) for the patient on the date of service",
                (iv.id for iv in interventions),
            )
        )

    # 2. overlaps and concurrency ----------------------------------------------------------------
    overlap_findings, held = overlaps(services)
    findings += overlap_findings
    findings += concurrency(services, day, rulebook)
    services = [s for s in services if s.id not in held]

    # 3. minutes per discipline and code -----------------------------------------------------------
    codes: dict[Key, _Code] = {}
    for s in services:
        key = (s.discipline, s.code)
        if key not in codes:
            codes[key] = _Code(key=key, services=[], timed=s.entry.timed)
        codes[key].services.append(s)
    for c in codes.values():
        _count_minutes(c)
        c.refs += sorted({r for s in c.services for r in sub_refs[s.id]})

    def rank(key: Key) -> tuple[int, str]:
        return (rulebook.order_of(key[1]) * 10 + _DISCIPLINE_ORDER[key[0]], key[1])

    def label(key: Key) -> str:
        return key[1] if payer.pooling is not Pooling.POOLED else f"{key[1]} ({key[0]})"

    # 4-5. units, then edits; a timed code an edit drops lends no minutes to the others --------
    method_ref = f"payer:{payer.id}"
    for c in codes.values():
        c.refs.append(method_ref)
    edit_notes: list[str] = []
    rounds = 0
    while True:
        rounds += 1
        unit_notes = _allocate(codes, payer, rank, label, method_ref)
        before = {k for k, c in codes.items() if c.dropped}
        findings += _evaluation_limits(codes, rulebook, edit_notes)
        findings += _ncci(codes, day, payer, rulebook, edit_notes)
        newly = {k for k, c in codes.items() if c.dropped} - before
        if not any(codes[k].timed for k in newly):
            break
    explanation += unit_notes
    if rounds > 1:
        explanation.append(
            "  the minutes of timed codes the edits below do not bill were left out of the "
            "total and the units allocated again"
        )
    explanation += list(dict.fromkeys(edit_notes))
    for c in sorted(codes.values(), key=lambda c: rank(c.key)):
        if c.timed and c.units == 0 and not c.dropped:
            findings.append(
                finding(
                    FindingCode.UNDER_8_MINUTES if c.minutes < 8 else FindingCode.NO_UNIT_LEFT,
                    INFO,
                    f"{c.code} documented for {c.minutes} min: {c.zero_reason}; documented, "
                    "not billed",
                    c.ids,
                    c.code,
                )
            )
    findings += _mue(codes, day, rulebook, explanation)

    # 6. lines ----------------------------------------------------------------------------------
    kx_mods, kx_findings, kx_refs = _kx(codes, day, payer, explanation)
    findings += kx_findings
    lines: list[ChargeLine] = []
    for c in sorted(codes.values(), key=lambda c: rank(c.key)):
        if not c.billed:
            continue
        discipline = c.key[0]
        base = set(c.modifiers)
        base_reasons = list(dict.fromkeys([c.unit_reason, *c.reasons]))
        refs = list(c.refs)
        disc_mod = payer.discipline_modifiers.get(discipline)
        if disc_mod:
            base.add(disc_mod)
            base_reasons.append(f"{disc_mod}: delivered under a {discipline} plan of care")
        distinct = sorted(base & DISTINCT_MODIFIERS, key=MODIFIER_ORDER.index)
        if len(distinct) > 1:  # one distinct-service modifier marks the whole line
            base -= set(distinct[1:])
            base_reasons.append(
                f"{distinct[0]} kept: one distinct-service modifier is enough for the line "
                f"({', '.join(distinct[1:])} not repeated)"
            )
        kx = kx_mods.get(discipline)
        if kx:
            base.add("KX")
            base_reasons.append(kx)
            refs += kx_refs.get(discipline, [])
        asst_mod = payer.assistant_modifiers.get(discipline)
        parts: list[tuple[int, set[str], list[str]]]
        if asst_mod and (c.assistant_minutes or c.assistant_minutes_unknown):
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
            parts = [
                (split.without_modifier, base, base_reasons + why),
                (split.with_modifier, base | {asst_mod}, base_reasons + why),
            ]
        else:
            parts = [(c.units, base, base_reasons)]
        for units, mods, reasons in parts:
            if units <= 0:
                continue
            if len(mods) > MAX_MODIFIERS:
                findings.append(
                    finding(
                        FindingCode.MODIFIER_LIMIT,
                        ERR,
                        f"{c.code} would need {len(mods)} modifiers; an 837P line holds "
                        f"{MAX_MODIFIERS}: split the line by hand",
                        c.ids,
                        c.code,
                    )
                )
                continue
            lines.append(
                ChargeLine(
                    code=c.code,
                    units=units,
                    modifiers=order_modifiers(mods),
                    discipline=discipline,
                    intervention_ids=c.ids,
                    minutes=c.minutes,
                    method=payer.method.value,
                    rule_refs=tuple(dict.fromkeys(refs)),
                    reasons=tuple(reasons),
                )
            )

    # 7. review thresholds ------------------------------------------------------------------------
    findings += _thresholds(codes, day, payer, rulebook)
    if not lines and codes:
        findings.append(
            finding(
                FindingCode.NOTHING_BILLABLE,
                WARN,
                "therapy was documented but nothing is billable for this day: check the "
                "minutes and the findings",
                (s.id for s in services),
            )
        )

    explanation.append("Lines:")
    explanation += [
        f"  {ln.code} x{ln.units} {' '.join(ln.modifiers) or '(no modifier)'} "
        f"from {', '.join(ln.intervention_ids)} ({ln.minutes} min): " + "; ".join(ln.reasons)
        for ln in lines
    ] or ["  none"]
    findings = _dedupe(findings)
    if findings:
        explanation.append("Findings:")
        explanation += [
            f"  {f.severity.value} {f.code.value}"
            + (f" [{', '.join(f.intervention_ids)}]" if f.intervention_ids else "")
            + f": {f.message}"
            for f in findings
        ]
    return Decision(
        patient_id=day.patient_id,
        service_date=day.service_date,
        payer=payer.id,
        method=payer.method,
        rulebook_version=rulebook.version,
        lines=tuple(lines),
        findings=tuple(findings),
        minutes=tuple(
            CodeMinutes(
                discipline=c.key[0],
                code=c.code,
                timed=c.timed,
                minutes=c.minutes,
                units=c.units if not c.dropped else 0,
                intervention_ids=c.ids,
            )
            for c in sorted(codes.values(), key=lambda c: rank(c.key))
        ),
        explanation=tuple(explanation),
    )


def _allocate(
    codes: dict[Key, _Code],
    payer: PayerProfile,
    rank: Callable[[Key], tuple[int, str]],
    label: Callable[[Key], str],
    method_ref: str,
) -> list[str]:
    """Units for every code not dropped by an edit; returns the explanation lines."""
    notes: list[str] = []
    live = [c for c in codes.values() if not c.dropped]
    for c in codes.values():
        if c.dropped:
            c.units = 0
    if payer.method is UnitMethod.CMS:
        scope = "per discipline" if payer.pooling is Pooling.PER_DISCIPLINE else "pooled"
        notes.append(
            f"Units: CMS total-time method (MCPM Ch. 5 §20.2), timed minutes totalled {scope} "
            f"[{method_ref}]."
        )
        pools: dict[str, list[_Code]] = defaultdict(list)
        for c in live:
            if c.timed:
                pools["all" if payer.pooling is Pooling.POOLED else str(c.key[0])].append(c)
        for pool, members in sorted(pools.items()):
            alloc = allocate_cms({c.key: c.minutes for c in members}, rank, label)
            notes.append(
                f"  {pool} timed: "
                + ", ".join(
                    f"{label(c.key)} {c.minutes} min [{', '.join(c.ids)}]"
                    for c in sorted(members, key=lambda c: rank(c.key))
                )
            )
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
    else:
        notes.append(f"Units: CPT/AMA per-code method, each timed code on its own [{method_ref}].")
        per_code = allocate_ama({c.key: c.minutes for c in live if c.timed})
        for key, u in sorted(per_code.items(), key=lambda kv: rank(kv[0])):
            c = codes[key]
            c.units = u
            c.unit_reason = f"units: CPT/AMA per code, {c.minutes} min -> {u} unit(s)"
            notes.append(
                f"  {label(key)} {c.minutes} min [{', '.join(c.ids)}] -> {u} unit(s) ({band(u)})"
            )
    for c in live:
        if not c.timed:
            c.units = 1
            c.unit_reason = "units: untimed code, one unit per day regardless of minutes"
            notes.append(f"  {label(c.key)} untimed [{', '.join(c.ids)}] -> 1 unit")
    return notes


def _count_minutes(c: _Code) -> None:
    """Minutes of one code: sessions add up, overlapping records count once.

    Time a therapist and an assistant spend together counts as the therapist's; the assistant's
    minutes are only those furnished independently (for CQ/CO).
    """
    spans = [s.span for s in c.services if s.span]
    th_spans = [s.span for s in c.services if s.span and s.by_therapist]
    as_spans = timeline.subtract([s.span for s in c.services if s.span and not s.by_therapist],
                                 th_spans)  # fmt: skip
    documented_th = sum(s.documented_minutes or 0 for s in c.services if s.by_therapist)
    documented_as = sum(s.documented_minutes or 0 for s in c.services if not s.by_therapist)
    c.minutes = timeline.minutes(spans) + documented_th + documented_as
    c.assistant_minutes = timeline.minutes(as_spans) + documented_as
    c.therapist_minutes = c.minutes - c.assistant_minutes
    c.assistant_minutes_unknown = any(
        not s.by_therapist and s.span is None and s.documented_minutes is None for s in c.services
    )


def _drop(c: _Code, code: FindingCode, message: str, ref: str) -> Finding:
    c.dropped = True
    c.refs.append(ref)
    return finding(code, ERR, message, c.ids, c.code)


def _evaluation_limits(
    codes: dict[Key, _Code], rulebook: Rulebook, explanation: list[str]
) -> list[Finding]:
    limits = rulebook.evaluation_limits
    ref = limits.source.ref
    out: list[Finding] = []
    evals = [c for c in codes.values() if c.billed and is_evaluation(c.services[0].entry)]
    by_discipline: dict[Discipline, list[_Code]] = defaultdict(list)
    for c in evals:
        if c.key[0] in limits.disciplines:
            by_discipline[c.key[0]].append(c)
    for discipline, group in sorted(by_discipline.items()):
        if len(group) > limits.per_discipline_per_day:
            names = ", ".join(sorted(c.code for c in group))
            for c in group:
                out.append(
                    _drop(
                        c,
                        FindingCode.EVALUATION_LIMIT,
                        f"{names}: at most {limits.per_discipline_per_day} {discipline} "
                        "evaluation or re-evaluation a day; none billed until corrected",
                        ref,
                    )
                )
            explanation.append(f"Edit: {discipline} evaluations {names} exceed the daily limit.")
    eval_performers = {
        p for c in evals if not c.dropped for s in c.services for p in s.performer_ids
    }
    for c in codes.values():
        if c.billed and c.code in limits.exclusive_with_evaluation:
            mine = {p for s in c.services for p in s.performer_ids}
            if mine & eval_performers:
                out.append(
                    _drop(
                        c,
                        FindingCode.EVALUATION_EXCLUSIVE,
                        f"{c.code} is not separately reportable with an evaluation by the same "
                        "practitioner",
                        ref,
                    )
                )
                explanation.append(f"Edit: {c.code} not billed with an evaluation [{ref}].")
    return out


def _spans_distinct(a: Iterable[Service], b: Iterable[Service]) -> bool:
    sa, sb = list(a), list(b)
    if any(s.span is None for s in sa + sb):
        return False
    return all(
        timeline.overlap_seconds(x.span, y.span) == 0  # type: ignore[arg-type]
        for x in sa
        for y in sb
    )


def _regions_distinct(a: Iterable[Service], b: Iterable[Service]) -> bool:
    ra = [s.iv.body_site for s in a]
    rb = [s.iv.body_site for s in b]
    if any(r is None for r in ra + rb):
        return False
    return not ({r.lower() for r in ra if r} & {r.lower() for r in rb if r})


def _ncci(
    codes: dict[Key, _Code],
    day: ServiceDay,
    payer: PayerProfile,
    rulebook: Rulebook,
    explanation: list[str],
) -> list[Finding]:
    out: list[Finding] = []
    by_code: dict[str, list[_Code]] = defaultdict(list)
    for c in codes.values():
        if c.billed:
            by_code[c.code].append(c)
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
            ref = edit.source.ref
            s1 = [s for c in first for s in c.services]
            s2 = [s for c in second for s in c.services]
            if edit.modifier_indicator == 0:
                for c in second:
                    out.append(
                        _drop(
                            c,
                            FindingCode.NCCI_NOT_ALLOWED,
                            f"NCCI: {col2} is never billable with {col1} on the same day "
                            "(modifier indicator 0)",
                            ref,
                        )
                    )
                explanation.append(f"Edit: NCCI {col1}/{col2} indicator 0 -> {col2} not billed.")
                continue
            if edit.distinct_by == "region":
                distinct, mod = _regions_distinct(s1, s2), payer.region_modifier
                basis = "different documented body regions"
            else:
                distinct, mod = _spans_distinct(s1, s2), payer.distinct_modifier
                basis = "separate documented time intervals"
            if distinct:
                for c in second:
                    c.modifiers.add(mod)
                    c.refs.append(ref)
                    c.reasons.append(f"{mod}: NCCI pair {col1}/{col2} performed in {basis}")
                out.append(
                    finding(
                        FindingCode.NCCI_DISTINCT,
                        INFO,
                        f"NCCI pair {col1}/{col2}: {col2} performed in {basis}, billed with {mod}",
                        [s.id for s in s2],
                        col2,
                    )
                )
                explanation.append(f"Edit: NCCI {col1}/{col2} distinct ({basis}) -> {col2} {mod}.")
            else:
                for c in second:
                    out.append(
                        _drop(
                            c,
                            FindingCode.NCCI_NOT_DISTINCT,
                            f"NCCI pair {col1}/{col2}: {col2} is billable with {col1} only when "
                            f"performed in {basis}, which the documentation does not show; "
                            f"{col2} not billed",
                            ref,
                        )
                    )
                explanation.append(f"Edit: NCCI {col1}/{col2} not distinct -> {col2} not billed.")
    return out


def _mue(
    codes: dict[Key, _Code], day: ServiceDay, rulebook: Rulebook, explanation: list[str]
) -> list[Finding]:
    out: list[Finding] = []
    by_code: dict[str, list[_Code]] = defaultdict(list)
    for c in codes.values():
        if c.billed:
            by_code[c.code].append(c)
    for code, group in sorted(by_code.items()):
        edit = rulebook.mue_edit(code, day.service_date)
        if edit is None:
            continue
        total = sum(c.units for c in group)
        if total <= edit.max_units:
            continue
        excess = total - edit.max_units
        for c in sorted(group, key=lambda c: _DISCIPLINE_ORDER[c.key[0]], reverse=True):
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


def _kx(
    codes: dict[Key, _Code], day: ServiceDay, payer: PayerProfile, explanation: list[str]
) -> tuple[dict[Discipline, str], list[Finding], dict[Discipline, list[str]]]:
    mods: dict[Discipline, str] = {}
    refs: dict[Discipline, list[str]] = {}
    out: list[Finding] = []
    if not payer.kx:
        return mods, out, refs
    groups = {
        Discipline.PT: KxGroup.PT_SLP,
        Discipline.SLP: KxGroup.PT_SLP,
        Discipline.OT: KxGroup.OT,
    }
    billed = sorted({c.key[0] for c in codes.values() if c.billed and c.key[0] in groups})
    year = day.service_date.year
    threshold = payer.kx_threshold(year)
    for g in sorted({groups[d] for d in billed}):
        members = [d for d in billed if groups[d] is g]
        ids = [i for c in codes.values() if c.billed and c.key[0] in members for i in c.ids]
        name = "PT and SLP combined" if g is KxGroup.PT_SLP else "OT"
        if threshold is None:
            out.append(
                finding(
                    FindingCode.KX_THRESHOLD_UNKNOWN,
                    WARN,
                    f"no KX threshold is configured for {year}: KX cannot be judged",
                    ids,
                )
            )
            continue
        spend = day.kx_spend.for_group(g)
        if spend is None:
            out.append(
                finding(
                    FindingCode.KX_SPEND_UNKNOWN,
                    WARN,
                    f"year-to-date therapy spend ({name}) is not known: cannot tell whether the "
                    f"{year} KX threshold of ${threshold.amount} is passed",
                    ids,
                )
            )
            continue
        if spend > threshold.amount:
            reason = (
                f"KX: year-to-date spend ({name}) ${spend} passes the {year} threshold "
                f"${threshold.amount}; medical necessity attested"
            )
            for d in members:
                mods[d] = reason
                refs[d] = [threshold.source.ref]
            out.append(finding(FindingCode.KX_APPLIED, INFO, reason, ids))
            explanation.append(f"Modifier: {reason} [{threshold.source.ref}].")
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
    return mods, out, refs


def _thresholds(
    codes: dict[Key, _Code], day: ServiceDay, payer: PayerProfile, rulebook: Rulebook
) -> list[Finding]:
    out: list[Finding] = []
    units: dict[str, int] = defaultdict(int)
    services: dict[str, list[Service]] = defaultdict(list)
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


def _dedupe(findings: list[Finding]) -> list[Finding]:
    unique = dict.fromkeys(findings)
    return sorted(
        unique,
        key=lambda f: (
            _SEVERITY_ORDER[f.severity],
            f.code.value,
            f.intervention_ids,
            f.line_code or "",
            f.message,
        ),
    )
