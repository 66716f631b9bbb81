"""``evaluate(day, rulebook) -> Decision``: the billing rules for one patient-day, pure.

The steps, in order, each explained in the decision, and the module each rule lives in:

1. resolve every intervention on its own: code (catalog, payer substitution, bundling:
   ``codes``), performers and discipline, documented time, group billed one-on-one,
   supervision (``resolve``); an error holds it. The note of each (``documentation``) and the
   day's diagnosis, coverage and plan of care (``documentation``);
2. timed services of different codes overlapping in time are held (minutes never count twice);
   a clinician with another patient at the same time (``overlaps``);
3. minutes per discipline and code: sessions add up, overlapping records of one code count once
   (``tally``);
4. units by the payer's method: CMS total-time per pool, or CPT/AMA per code; untimed: 1 unit
   (``allocate``, arithmetic in ``units``);
5. edits: evaluation limits, NCCI PTP pairs (distinct-service modifier only with separate
   documented intervals); a timed code an edit drops lends no minutes, so units are allocated
   again (``edits``); timed codes left without a unit (``allocate``); MUE caps (``edits``);
6. lines: GP/GO/GN, one distinct-service modifier, the CQ/CO split and the modifier order
   (``lines``, ``modifiers``); the payer's authorizations (``authorization``: a blocked line
   is held); prices (``money``); KX by the year's running total (``kx``); the billing office's
   overrides come between the lines and the authorizations, and its released holds (the
   clocks) hold nothing (``review``);
7. unit review thresholds (``edits``), nothing billable (``documentation``); the findings once
   each, sorted (``findings``).
"""

from __future__ import annotations

from adapter.domain import Decision, Intervention, PayerProfile, Rulebook, ServiceDay
from adapter.rules.allocate import unbilled_findings
from adapter.rules.authorization import authorize
from adapter.rules.certification import certification
from adapter.rules.documentation import day_findings, notes_of_day, nothing_billable
from adapter.rules.edits import mue, thresholds, units_and_edits
from adapter.rules.findings import dedupe, explain_findings
from adapter.rules.kx import apply_kx
from adapter.rules.lines import build_lines, explain_lines
from adapter.rules.money import price_lines
from adapter.rules.overlaps import concurrency, overlaps
from adapter.rules.progress import progress_reports
from adapter.rules.resolve import resolve_day
from adapter.rules.review import apply_overrides, release
from adapter.rules.tally import CodeOrder, code_minutes, tally


def evaluate(day: ServiceDay, rulebook: Rulebook) -> Decision:
    """Decide the billable lines and the findings for one patient's date of service."""
    payer = payer_of(day, rulebook)
    explanation = [header(day, payer, rulebook)]
    encounters = {e.id: e for e in day.encounters}
    interventions = interventions_of(day)
    order = CodeOrder(rulebook, payer)
    # 1. resolve, notes, day-level documentation
    resolved = resolve_day(interventions, day, payer, rulebook, encounters)
    findings = [*resolved.findings, *notes_of_day(interventions, rulebook.notes)]
    findings += day_findings(day, payer, interventions, encounters)
    # 2. overlaps and concurrency
    overlap_findings, held = overlaps(resolved.services)
    findings += overlap_findings
    findings += concurrency(resolved.services, day, rulebook)
    services = [s for s in resolved.services if s.id not in held]
    # 2b. the progress-report clock of each discipline treated (an error holds its services)
    progress_findings, late = progress_reports(services, day, rulebook, explanation)
    progress_findings, late = release(progress_findings, set(late), day.review)
    findings += progress_findings
    services = [s for s in services if s.id not in late]
    # 2c. the plan of care's certification (an error holds the discipline's services)
    cert_findings, uncertified = certification(services, day, rulebook, explanation)
    cert_findings, uncertified = release(cert_findings, set(uncertified), day.review)
    findings += cert_findings
    services = [s for s in services if s.id not in uncertified]
    # 3. minutes per discipline and code
    codes = tally(services, resolved.rule_refs)
    # 4-5. units, then edits (again while a timed code drops); MUE
    edit_findings, unit_notes = units_and_edits(codes, day, payer, rulebook, order)
    findings += edit_findings
    explanation += unit_notes
    findings += unbilled_findings(codes, order)
    findings += mue(codes, day, rulebook, explanation)
    # 6. lines; their prices and expected allowed amounts; KX by the year's running total
    lines, line_findings = build_lines(codes, payer, order, rulebook.modifiers)
    findings += line_findings
    # 6a. the billing office's overrides (units never above the rules'), before the money
    lines, review_findings = apply_overrides(lines, day.review, rulebook.modifiers)
    findings += review_findings
    lines, auth_findings = authorize(lines, day, payer, rulebook, explanation)
    findings += auth_findings
    money_notes: list[str] = []
    lines, money_findings = price_lines(lines, day.service_date, payer.id, rulebook.money,
                                        money_notes)  # fmt: skip
    findings += money_findings
    lines, kx_findings = apply_kx(lines, day, payer, rulebook.modifiers, money_notes)
    findings += kx_findings
    # 7. review thresholds, nothing billable; the final findings
    findings += thresholds(codes, day, payer, rulebook)
    findings += nothing_billable(lines, codes, services)
    explanation += explain_lines(lines)
    explanation += money_notes
    findings = dedupe(findings)
    explanation += explain_findings(findings)
    return Decision(
        patient_id=day.patient_id,
        service_date=day.service_date,
        payer=payer.id,
        method=payer.method,
        rulebook_version=rulebook.version,
        lines=tuple(lines),
        findings=tuple(findings),
        minutes=code_minutes(codes, order),
        explanation=tuple(explanation),
    )


def payer_of(day: ServiceDay, rulebook: Rulebook) -> PayerProfile:
    """The day's payer profile; an unknown one is a caller error."""
    payer = rulebook.payer(day.payer)
    if payer is None:
        raise ValueError(f"unknown payer profile {day.payer!r}; known: {sorted(rulebook.payers)}")
    return payer


def header(day: ServiceDay, payer: PayerProfile, rulebook: Rulebook) -> str:
    """The explanation's first line: the patient-day, payer profile and rulebook version."""
    return (
        f"{day.patient_id}, date of service {day.service_date}, payer profile "
        f"{payer.id} ({payer.name}), rulebook {rulebook.version}."
    )


def interventions_of(day: ServiceDay) -> list[Intervention]:
    """The day's interventions by id; ids must be unique."""
    interventions = sorted(day.interventions, key=lambda iv: iv.id)
    if len({iv.id for iv in interventions}) != len(interventions):
        raise ValueError("intervention ids must be unique within a service day")
    return interventions
