"""The ``mappings/`` entry a finding rests on: what a card or the workbench names as the rule
behind it (pure: a finding, its day's decision and the rulebook in, a ``RuleSource`` out).

A finding about a code's lines names the entry that made it a finding (the MUE edit, the NCCI
pair, the review threshold, the catalog entry, the payer's substitution or bundling, the text
match); a clock's names its clock's rules; the KX findings, the unit method's and the
payer-setting findings name the payer profile. A finding about the input itself (a missing
time, an unknown code, no Coverage) rests on no entry: ``None``.
"""

from __future__ import annotations

from collections.abc import Callable

from adapter.domain import Decision, Finding, FindingCode, Rulebook, RuleSource

F = FindingCode
_Lookup = Callable[[Finding, Decision, Rulebook], RuleSource | None]

#: the findings the payer profile decides (its unit method, its settings, its KX rules)
_PAYER = frozenset({
    F.UNDER_8_MINUTES, F.NO_UNIT_LEFT, F.NOTHING_BILLABLE, F.MINUTES_WITHOUT_TIMES,
    F.KX_APPLIED, F.KX_REVIEW, F.KX_SPEND_UNKNOWN, F.KX_THRESHOLD_UNKNOWN, F.KX_FORECAST,
    F.ASSISTANT_UNSUPERVISED, F.OVERLAPPING_SERVICES, F.SAME_CODE_OVERLAP, F.CONCURRENT_PATIENTS,
})  # fmt: skip
#: the findings a code's catalog entry decides (its disciplines, assistants, one-on-one)
_CATALOG = frozenset({
    F.ASSISTANT_NOT_PERMITTED, F.DISCIPLINE_MISMATCH, F.GROUP_BILLED_ONE_ON_ONE,
})  # fmt: skip


def finding_source(f: Finding, decision: Decision, rulebook: Rulebook) -> RuleSource | None:
    """The rule entry behind ``f`` in effect on the decision's day (None: it rests on none)."""
    lookup = _LOOKUPS.get(f.code)
    if lookup is not None:
        return lookup(f, decision, rulebook)
    if f.code in _PAYER:
        profile = rulebook.payer(decision.payer)
        return profile.source if profile is not None else None
    if f.code in _CATALOG:
        return _catalog(f, decision, rulebook)
    return None


def _codes_of(f: Finding, decision: Decision) -> list[str]:
    """The codes the finding is about: its line's code, then its procedures' codes."""
    ids = set(f.intervention_ids)
    found = [f.line_code] if f.line_code else []
    found += [m.code for m in decision.minutes if ids & set(m.intervention_ids)]
    return list(dict.fromkeys(found))


def _catalog(f: Finding, decision: Decision, rulebook: Rulebook) -> RuleSource | None:
    for code in _codes_of(f, decision):
        entry = rulebook.code(code, decision.service_date)
        if entry is not None:
            return entry.source
    return None


def _mue(f: Finding, decision: Decision, rulebook: Rulebook) -> RuleSource | None:
    on = decision.service_date
    for code in _codes_of(f, decision):
        edit = next((e for e in rulebook.mue.get(code, ()) if e.source.in_effect(on)), None)
        if edit is not None:
            return edit.source
    return None


def _ncci(f: Finding, decision: Decision, rulebook: Rulebook) -> RuleSource | None:
    """The pair edit between the finding's code and another code billed or documented that
    day."""
    on = decision.service_date
    mine = _codes_of(f, decision)
    day = [*(ln.code for ln in decision.lines), *(m.code for m in decision.minutes)]
    for code in mine:
        for other in day:
            for pair in ((code, other), (other, code)):
                edit = rulebook.ptp_edit(*pair, on) if other != code else None
                if edit is not None:
                    return edit.source
    return None


def _threshold(f: Finding, decision: Decision, rulebook: Rulebook) -> RuleSource | None:
    codes = _codes_of(f, decision)
    on = decision.service_date
    return next((t.source for t in rulebook.unit_thresholds
                 if t.code in codes and t.source.in_effect(on)
                 and (not t.payers or decision.payer in t.payers)), None)  # fmt: skip


def _substitution(f: Finding, decision: Decision, rulebook: Rulebook) -> RuleSource | None:
    profile = rulebook.payer(decision.payer)
    if profile is None:
        return None
    codes = _codes_of(f, decision)
    on = decision.service_date
    subs = [s for s in profile.substitutions if s.source.in_effect(on)
            and (s.to_code in codes or s.from_code in codes)]  # fmt: skip
    return subs[0].source if subs else profile.source


def _bundled(f: Finding, decision: Decision, rulebook: Rulebook) -> RuleSource | None:
    profile = rulebook.payer(decision.payer)
    if profile is None:
        return None
    return next((profile.bundled[c] for c in _codes_of(f, decision) if c in profile.bundled),
                profile.source)  # fmt: skip


def _text(f: Finding, decision: Decision, rulebook: Rulebook) -> RuleSource | None:
    codes = _codes_of(f, decision)
    on = decision.service_date
    return next((t.source for t in rulebook.text_matches
                 if t.code in codes and t.source.in_effect(on)), None)  # fmt: skip


def _clock(pick: Callable[[Rulebook], RuleSource | None]) -> _Lookup:
    return lambda f, decision, rulebook: pick(rulebook)


_LOOKUPS: dict[FindingCode, _Lookup] = {
    F.MUE_EXCEEDED: _mue,
    F.NCCI_NOT_ALLOWED: _ncci,
    F.NCCI_NOT_DISTINCT: _ncci,
    F.NCCI_DISTINCT: _ncci,
    F.UNITS_OVER_THRESHOLD: _threshold,
    F.CODE_SUBSTITUTED: _substitution,
    F.CODE_BUNDLED: _bundled,
    F.CODE_FROM_TEXT: _text,
    F.EVALUATION_LIMIT: _clock(lambda r: r.evaluation_limits.source),
    F.EVALUATION_EXCLUSIVE: _clock(lambda r: r.evaluation_limits.source),
    F.NOTE_MISSING: _clock(lambda r: r.notes.source),
    F.NOTE_VAGUE: _clock(lambda r: r.notes.source),
    F.MODIFIER_LIMIT: _clock(lambda r: r.modifiers.source),
    F.PROGRESS_REPORT_DUE: _clock(lambda r: r.clocks.progress.source),
    F.PROGRESS_REPORT_MISSING: _clock(lambda r: r.clocks.progress.source),
    F.NO_PLAN_OF_CARE: _clock(lambda r: r.clocks.certification.source),
    F.PLAN_UNCERTIFIED: _clock(lambda r: r.clocks.certification.source),
    F.PLAN_CERTIFIED_LATE: _clock(lambda r: r.clocks.certification.source),
    F.PLAN_RECERTIFICATION_DUE: _clock(lambda r: r.clocks.certification.source),
    F.AUTHORIZATION_MISSING: _clock(lambda r: r.clocks.authorization.source),
    F.AUTHORIZATION_EXCEEDED: _clock(lambda r: r.clocks.authorization.source),
    F.AUTHORIZATION_RUNNING_OUT: _clock(lambda r: r.clocks.authorization.source),
}
