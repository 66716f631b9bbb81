"""The plan-of-care certification clock (BPM Ch. 15 §220.1.3; ``domain.md`` §7), per discipline:
the plan is certified (signed, dated) by a physician or NPP within ``days_to_certify`` (30) of
the first treatment under it; a later certification needs a documented reason; the plan is
recertified at least every ``max_days`` (90).

For each discipline treated today, the plan covering the date for that discipline (or for any):
- not certified yet: a warning up to the deadline (first treatment + 30 days), an error after it
  (the day's services of the discipline held) unless a reason for the delay is documented;
- certified after the deadline without a documented reason: an error (held);
- today later than ``max_days`` after the latest certification: recertification (a new
  signature, a new ``created``) is due, an error (held);
- changed significantly (``changed_on``) after the latest certification: a new certification
  is due, a warning for ``days_to_certify`` after the change, an error after.
The first treatment under the plan is the earliest of the shell's earlier treatment days of the
discipline on or after the plan's start, or today.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from adapter.domain import (
    Discipline,
    Finding,
    FindingCode,
    PlanOfCare,
    Rulebook,
    ServiceDay,
    Severity,
)
from adapter.rules.findings import ERR, WARN, finding
from adapter.rules.tally import ResolvedService

CLOCKED = (Discipline.PT, Discipline.OT, Discipline.SLP)


def certification(
    services: Sequence[ResolvedService],
    day: ServiceDay,
    rulebook: Rulebook,
    explanation: list[str],
) -> tuple[list[Finding], set[str]]:
    """Findings on the certification of each treated discipline's plan, and the services an
    error holds."""
    rules = rulebook.clocks.certification
    if rules.source is None or not day.plans:
        return [], set()
    findings: list[Finding] = []
    held: set[str] = set()
    for discipline in CLOCKED:
        ids = [s.id for s in services if s.discipline is discipline]
        plan = _plan_for(day.plans, discipline)
        if not ids or plan is None:
            continue
        start = plan.start or day.service_date
        earlier = [
            d for d in day.treatment_days.get(discipline, ()) if start <= d < day.service_date
        ]
        first = min([*earlier, day.service_date])
        deadline = first + timedelta(days=rules.days_to_certify)
        ref = f"[{rules.source.ref}]"
        found = _judge(plan, discipline, first, deadline, today=day.service_date,
                       max_days=rules.max_days)  # fmt: skip
        if found is None:
            explanation.append(
                f"Certification ({discipline}): {plan.ref} certified {plan.certified_on}, first "
                f"treatment {first} {ref}."
            )
            continue
        code, severity, text = found
        explanation.append(f"Certification ({discipline}): {text} {ref}.")
        findings.append(finding(code, severity, text, ids))
        if severity is ERR:
            held.update(ids)
    return findings, held


def _plan_for(plans: Sequence[PlanOfCare], discipline: Discipline) -> PlanOfCare | None:
    """The discipline's own plan first, else one for any discipline (the latest start)."""
    for wanted in (discipline, None):
        mine = [p for p in plans if p.discipline is wanted]
        if mine:
            return max(mine, key=lambda p: (p.start or date.min, p.ref))
    return None


def _judge(
    plan: PlanOfCare, discipline: Discipline, first: date, deadline: date, *, today: date,
    max_days: int,
) -> tuple[FindingCode, Severity, str] | None:  # fmt: skip
    """What is wrong with the plan's certification today (None: nothing)."""
    # the certification in force today: the latest signed on or before it (a recertification
    # signed later does not cover the days it lapsed)
    signed = [d for d in (plan.certified_on, *plan.recertifications) if d is not None]
    latest = max([d for d in signed if d <= today], default=plan.certified_on)
    if latest is not None and today > latest + timedelta(days=max_days):
        later = [d for d in signed if d > today]
        return (FindingCode.PLAN_RECERTIFICATION_DUE, ERR,
                f"the {discipline} plan of care {plan.ref} was last certified {latest}: "
                f"past {max_days} days, the physician/NPP must recertify it before more is "
                "billed" + (f" (recertified only on {min(later)}: the days between are not "
                            "covered)" if later else ""))  # fmt: skip
    if plan.certified_on is None:
        if today <= deadline:
            return (FindingCode.PLAN_UNCERTIFIED, WARN,
                    f"the {discipline} plan of care {plan.ref} is not certified yet: the "
                    f"physician/NPP must sign it by {deadline} (30 days after the first "
                    f"treatment {first}), {(deadline - today).days} day(s) left")  # fmt: skip
        severity = WARN if plan.delayed_reason else ERR
        return (FindingCode.PLAN_UNCERTIFIED, severity,
                f"the {discipline} plan of care {plan.ref} is still not certified "
                f"{(today - first).days} days after the first treatment {first} (due {deadline})"
                + ("; a reason for the delay is documented" if plan.delayed_reason else
                   ": services are held until it is signed"))  # fmt: skip
    if plan.certified_on > deadline and not plan.delayed_reason:
        return (FindingCode.PLAN_CERTIFIED_LATE, ERR,
                f"the {discipline} plan of care {plan.ref} was certified {plan.certified_on}, "
                f"after {deadline} (30 days from the first treatment {first}), with no reason "
                "documented for the delay")  # fmt: skip
    return _changed(plan, discipline, max(signed, default=None), today,
                    days_to_certify=(deadline - first).days)  # fmt: skip


def _changed(
    plan: PlanOfCare, discipline: Discipline, latest: date | None, today: date, *,
    days_to_certify: int,
) -> tuple[FindingCode, Severity, str] | None:  # fmt: skip
    """A significant change since the latest certification needs a new one: a warning up to
    ``days_to_certify`` after the change, an error after."""
    if (
        plan.changed_on is None
        or today < plan.changed_on
        or (latest is not None and latest >= plan.changed_on)
    ):
        return None
    due = plan.changed_on + timedelta(days=days_to_certify)
    severity = WARN if today <= due else ERR
    return (FindingCode.PLAN_RECERTIFICATION_DUE, severity,
            f"the {discipline} plan of care {plan.ref} changed significantly on "
            f"{plan.changed_on}, after its certification of {latest}: the physician/NPP must "
            f"certify it again by {due}"
            + (": services are held until then" if severity is ERR else ""))  # fmt: skip
