"""What the workbench keeps of a synced day, and what the rules get back from the billing
office's decisions.

``record``: a synced day as the queue's summary row (counts, money at risk, the filters'
values) and the body of its version (lines with every number's explanation, findings with
their rule and what to fix, the documented periods for the timeline, the explanation).

``day_review``: the day's stored decisions as the rules take them (``DayReview``: the latest
override of each line, the holds released), and whether the day is held; a reverted
decision counts no more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from adapter.domain import (
    BILLING_FINDINGS,
    RELEASABLE,
    ChargeLine,
    DayReview,
    Decision,
    Discipline,
    Finding,
    FindingCode,
    LineOverride,
    Release,
    Rulebook,
    ServiceDay,
    Severity,
)
from adapter.rules.sources import finding_source
from adapter.store.review import Action

F = FindingCode
#: the authorization findings the queue counts as "running out"
AUTH = frozenset({F.AUTHORIZATION_RUNNING_OUT, F.AUTHORIZATION_EXCEEDED, F.AUTHORIZATION_MISSING})
#: what to do about a finding, where the message alone does not say it
FIX = {
    F.TIME_MISSING: "Enter the service's start and end time in the EMR, then re-run the day.",
    F.TIME_INVERTED: "Correct the service's times in the EMR (the end is before the start).",
    F.TIME_OUTSIDE_ENCOUNTER: "Correct the service's times or the encounter's period in the EMR.",
    F.OVERLAPPING_SERVICES: "Correct the overlapping times in the EMR: a minute bills once.",
    F.SAME_CODE_OVERLAP: "Check the duplicated documentation in the EMR: the minutes count once.",
    F.GROUP_BILLED_ONE_ON_ONE: "Recode the group session in the EMR (97150), then re-run.",
    F.NO_PERFORMER: "Name the performing therapist on the procedure in the EMR.",
    F.NO_DISCIPLINE: "Give the performer a therapy role (PractitionerRole) in the EMR.",
    F.NOTE_MISSING: "The clinician documents the service (technique, response) in the EMR.",
    F.NOTE_VAGUE: "The clinician adds the technique and the patient's response to the note.",
    F.NO_PRICE: "Add the code to the chargemaster (mappings/chargemaster.csv or the site's).",
    F.PROGRESS_REPORT_MISSING: "File the progress report in the EMR, or release the hold "
    "when it is on file elsewhere.",
    F.PLAN_UNCERTIFIED: "Have the plan of care signed in the EMR, or release the hold when the "
    "signed certification is on file elsewhere.",
    F.AUTHORIZATION_EXCEEDED: "Ask the payer for more visits or units; release the hold when "
    "they are granted.",
    F.AUTHORIZATION_MISSING: "Record the payer's authorization; release the hold when it is "
    "granted.",
    F.NCCI_NOT_DISTINCT: "Document separate time intervals in the EMR for a distinct-service "
    "modifier, or leave the column-two code unbilled.",
    F.REVIEW_STALE: "Review the day again: the documentation changed since the override.",
}


def _cents(amount: Decimal | None) -> int:
    return int((amount or Decimal(0)) * 100)


def line_key(ln: ChargeLine) -> str:
    """The line as an override names it: code, discipline, the modifiers before KX (the
    rules add KX after the overrides)."""
    return "|".join([ln.code, ln.discipline.value, "-".join(m for m in ln.modifiers if m != "KX")])


def _estimate(iv_code: str, minutes: int, decision: Decision, rulebook: Rulebook) -> Decimal:
    """What a held service would bill at its chargemaster price: an estimate for sorting the
    queue by money at risk (timed: a unit per 15 minutes from 8; untimed: one)."""
    entry = rulebook.code(iv_code, decision.service_date)
    row = rulebook.money.price(iv_code, (), decision.service_date)
    if row is None:
        return Decimal(0)
    units = (max(0, (minutes + 7) // 15) if minutes >= 8 else 0) if entry and entry.timed else 1
    return row.unit_price * units


def _minutes(start: Any, end: Any, minutes: int | None) -> int:
    if start is not None and end is not None:
        return max(0, int((end - start).total_seconds() // 60))
    return minutes or 0


def record(
    decision: Decision, day: ServiceDay | None, clinic: str, rulebook: Rulebook
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(summary, body) of a decided day."""
    shown = [f for f in decision.findings if f.severity is not Severity.INFO]
    held = decision.held_intervention_ids
    flagged = {i for f in shown for i in f.intervention_ids}
    ivs = list(day.interventions) if day is not None else []
    at_risk = sum(
        (ln.price.net or Decimal(0) for ln in decision.lines if flagged & set(ln.intervention_ids)),
        Decimal(0),
    )
    at_risk += sum(
        (
            _estimate(iv.code, _minutes(iv.start, iv.end, iv.minutes), decision, rulebook)
            for iv in ivs
            if iv.id in held
        ),
        Decimal(0),
    )
    clinicians = sorted({p.id for iv in ivs for p in iv.performers})
    summary = {
        "patient": decision.patient_id,
        "dos": decision.service_date.isoformat(),
        "payer": decision.payer,
        "clinic": clinic,
        "errors": sum(f.severity is Severity.ERROR for f in shown),
        "warnings": sum(f.severity is Severity.WARNING for f in shown),
        "held": len(held),
        "unpriced": sum(ln.price.unit_price is None for ln in decision.lines),
        "rejected": 0,
        "auth_low": sum(f.code in AUTH for f in shown),
        "at_risk": _cents(at_risk),
        "total": _cents(decision.total),
        "findings": sorted({f.code.value for f in shown}),
        "clinicians": clinicians,
        "notes": sorted({f.code.value for f in decision.findings if f.severity is Severity.INFO}),
        "lines": [
            {
                "code": ln.code,
                "discipline": ln.discipline.value,
                "units": ln.units,
                "modifiers": "-".join(ln.modifiers),
                "assistant": bool({"CQ", "CO"} & set(ln.modifiers)),
                "net": _cents(ln.price.net),
            }
            for ln in decision.lines
        ],
    }
    body = {
        "patient": decision.patient_id,
        "dos": decision.service_date.isoformat(),
        "payer": decision.payer,
        "method": str(decision.method),
        "rulebook": decision.rulebook_version,
        "clinic": clinic,
        "total": str(decision.total) if decision.total is not None else None,
        "allowed_total": (
            str(decision.allowed_total) if decision.allowed_total is not None else None
        ),
        "lines": [_line(ln) for ln in decision.lines],
        "findings": [_finding(f, decision, rulebook) for f in decision.findings],
        "minutes": [
            {
                "discipline": m.discipline.value,
                "code": m.code,
                "timed": m.timed,
                "minutes": m.minutes,
                "units": m.units,
                "interventions": list(m.intervention_ids),
            }
            for m in decision.minutes
        ],
        "periods": [_period(iv, held) for iv in ivs],
        "explanation": list(decision.explanation),
    }
    return summary, body


def _line(ln: ChargeLine) -> dict[str, Any]:
    p = ln.price
    return {
        "key": line_key(ln),
        "code": ln.code,
        "units": ln.units,
        "modifiers": list(ln.modifiers),
        "discipline": ln.discipline.value,
        "minutes": ln.minutes,
        "method": ln.method,
        "interventions": list(ln.intervention_ids),
        "rule_refs": list(ln.rule_refs),
        "reasons": list(ln.reasons),
        "authorization": ln.authorization,
        "unit_price": str(p.unit_price) if p.unit_price is not None else None,
        "net": str(p.net) if p.net is not None else None,
        "allowed": str(p.allowed) if p.allowed is not None else None,
        "cdm": p.cdm_code,
        "price_steps": list(p.steps),
    }


def _finding(f: Finding, decision: Decision, rulebook: Rulebook) -> dict[str, Any]:
    rule = finding_source(f, decision, rulebook)
    who = "billing" if f.code in BILLING_FINDINGS else "clinician"
    return {
        "code": f.code.value,
        "severity": f.severity.value,
        "message": f.message,
        "interventions": list(f.intervention_ids),
        "line_code": f.line_code,
        "rule": (
            {"ref": rule.ref, "citation": rule.citation, "confidence": rule.confidence}
            if rule
            else None
        ),
        "fix": FIX.get(f.code)
        or (
            "The billing office decides."
            if who == "billing"
            else "Correct the documentation in the EMR, then re-run."
        ),
        "who": who,
        "releasable": f.code in RELEASABLE and f.severity is Severity.ERROR,
    }


def _period(iv: Any, held: frozenset[str]) -> dict[str, Any]:
    return {
        "id": iv.id,
        "code": iv.code,
        "start": iv.start.isoformat() if iv.start else None,
        "end": iv.end.isoformat() if iv.end else None,
        "minutes": _minutes(iv.start, iv.end, iv.minutes),
        "clinicians": [
            {
                "id": p.id,
                "discipline": p.discipline.value if p.discipline else None,
                "assistant": p.assistant,
            }
            for p in iv.performers
        ],
        "held": iv.id in held,
        "group": iv.group,
    }


def day_review(actions: Sequence[Action]) -> tuple[DayReview, bool]:
    """The day's decisions as the rules take them, and whether the day is held. A decision
    that cannot be read (a payload no form of the workbench makes) is left out."""
    reverted = {int(a.payload.get("action", 0)) for a in actions if a.action == "revert"}
    overrides: list[LineOverride] = []
    releases: list[Release] = []
    held = False
    for a in (a for a in actions if a.id not in reverted):
        try:
            if a.action == "override":
                overrides.append(_override(a.payload, a))
            elif a.action == "release":
                releases.append(Release(
                    code=F(a.payload["finding"]), reason=a.reason, by=a.user,
                    interventions=tuple(str(i) for i in a.payload.get("interventions") or ()),
                    ref=f"review:{a.id}"))  # fmt: skip
            elif a.action in ("hold", "unhold"):
                held = a.action == "hold"
        except (KeyError, ValueError, TypeError):
            continue
    return DayReview(overrides=tuple(overrides), releases=tuple(releases)), held


def _override(p: Mapping[str, Any], a: Action) -> LineOverride:
    new = p.get("new_modifiers")
    return LineOverride(
        code=str(p["code"]), discipline=Discipline(p["discipline"]),
        modifiers=tuple(str(m) for m in p.get("modifiers") or ()),
        units=int(p["units"]) if p.get("units") is not None else None,
        new_modifiers=tuple(str(m) for m in new) if new is not None else None,
        reason=a.reason, by=a.user, ref=f"review:{a.id}",
    )  # fmt: skip
