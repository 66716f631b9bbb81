"""The billing office's decisions applied to a day (pure): line overrides after the lines are
built (before authorizations, prices and KX, which follow the overridden units), and released
administrative holds. Every change is explained on the line (``reasons``, ``rule_refs`` with
the decision's ``review:<id>``) and as a finding for the billing office.

An override never bills more than the rules: more units than the rules give are refused (the
documentation is fixed in the EMR instead); a modifier outside ``modifiers.toml`` is refused,
and so is adding or removing CQ, CO or KX (the assistant's reduced payment, the threshold's
attestation: the rules' alone);
an override that matches no line any more (the documentation changed since) is reported
stale, never applied to another line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from adapter.domain import (
    ChargeLine,
    DayReview,
    Finding,
    FindingCode,
    LineOverride,
    ModifierRules,
    Severity,
)
from adapter.rules.findings import INFO, WARN, finding

F = FindingCode
#: modifiers only the rules set: an assistant's service (paid at 85 %) and the KX attestation
RULES_ONLY = frozenset({"CQ", "CO", "KX"})


def apply_overrides(
    lines: Sequence[ChargeLine], review: DayReview, rules: ModifierRules
) -> tuple[list[ChargeLine], list[Finding]]:
    """The lines with the review's overrides applied (the latest override of a line wins;
    units 0 leaves the line out), and a finding for each override applied, stale or refused."""
    out = list(lines)
    findings: list[Finding] = []
    latest = {(o.code, o.discipline, o.modifiers): o for o in review.overrides}
    for o in latest.values():
        i = next((i for i, ln in enumerate(out) if _matches(ln, o)), None)
        if i is None:
            findings.append(finding(F.REVIEW_STALE, WARN,
                                    f"the override of {_label(o)} by {o.by} ({o.ref}) matches no "
                                    "line now: the day changed since; review it again",
                                    line_code=o.code))  # fmt: skip
            continue
        changed, why = _override(out[i], o, rules)
        if why is not None:
            findings.append(finding(F.REVIEW_REFUSED, WARN, f"the override of {_label(o)} by "
                                    f"{o.by} ({o.ref}) was not applied: {why}",
                                    out[i].intervention_ids, line_code=o.code))  # fmt: skip
            continue
        findings.append(finding(F.REVIEW_OVERRIDE, INFO, changed.reasons[-1],
                                out[i].intervention_ids, line_code=o.code))  # fmt: skip
        out[i] = changed
    return [ln for ln in out if ln.units > 0], findings


def _matches(line: ChargeLine, o: LineOverride) -> bool:
    return (line.code, line.discipline, line.modifiers) == (o.code, o.discipline, o.modifiers)


def _label(o: LineOverride) -> str:
    return " ".join([o.code, *o.modifiers])


def _override(
    line: ChargeLine, o: LineOverride, rules: ModifierRules
) -> tuple[ChargeLine, str | None]:
    units = line.units if o.units is None else o.units
    if units < 0 or units > line.units:
        return line, (f"{units} units is more than the {line.units} the documentation supports "
                      "(correct the documentation in the EMR instead)")  # fmt: skip
    modifiers = line.modifiers
    if o.new_modifiers is not None:
        unknown = sorted(set(o.new_modifiers) - set(rules.order))
        if unknown:
            return line, f"unknown modifier(s) {', '.join(unknown)}"
        if set(o.new_modifiers) & RULES_ONLY != set(line.modifiers) & RULES_ONLY:
            return line, ("CQ, CO and KX are the rules' (who furnished the service, the year's "
                          "threshold): correct the documentation instead")  # fmt: skip
        modifiers = tuple(sorted(dict.fromkeys(o.new_modifiers), key=rules.rank))
        if len(modifiers) > rules.max_per_line:
            return line, f"more than {rules.max_per_line} modifiers"
    steps = []
    if units != line.units:
        steps.append(f"units {line.units} -> {units}")
    if modifiers != line.modifiers:
        steps.append(f"modifiers {'-'.join(line.modifiers) or 'none'} -> "
                     f"{'-'.join(modifiers) or 'none'}")  # fmt: skip
    text = (f"{line.code}: {', '.join(steps) or 'confirmed as the rules give it'} by {o.by} "
            f"({o.ref}): {o.reason}")  # fmt: skip
    return replace(line, units=units, modifiers=modifiers, reasons=(*line.reasons, text),
                   rule_refs=(*line.rule_refs, o.ref)), None  # fmt: skip


def release(
    findings: Sequence[Finding], held: set[str], review: DayReview
) -> tuple[list[Finding], set[str]]:
    """A step's findings and held interventions with the review's released holds: a released
    error becomes a warning saying who released it and why, and holds nothing (an
    intervention another, unreleased, error of the step holds stays held)."""
    out: list[Finding] = []
    kept: set[str] = set()
    for f in findings:
        r = review.released(f.code, f.intervention_ids) if f.severity is Severity.ERROR else None
        if r is None:
            out.append(f)
            if f.severity is Severity.ERROR:
                kept.update(f.intervention_ids)
            continue
        note = f"{f.message} (released by {r.by}, {r.ref}: {r.reason})"
        out.append(replace(f, severity=WARN, message=note))
        out.append(finding(F.REVIEW_RELEASED, INFO, f"{f.code.value} released by {r.by} "
                           f"({r.ref}): {r.reason}", f.intervention_ids))  # fmt: skip
    return out, {i for i in held if i in kept or not _released_only(i, findings, review)}


def _released_only(iv: str, findings: Sequence[Finding], review: DayReview) -> bool:
    """Whether every error holding ``iv`` in the step was released."""
    errors = [f for f in findings if f.severity is Severity.ERROR and iv in f.intervention_ids]
    return bool(errors) and all(
        review.released(f.code, f.intervention_ids) is not None for f in errors
    )
