"""The progress-report clock (BPM Ch. 15 §220.3.C; ``domain.md`` §7): a progress report at least
once every 10 treatment days per discipline, written by the therapist, never an assistant.

A treatment day is a date of service with billed services of the discipline; the count starts
again after each progress report of the discipline (or of no particular discipline) by a
therapist, and after each day with an evaluation or re-evaluation of the discipline (today's
included). The day being evaluated is treatment day ``n`` since the last one: ``warn_from`` (8)
up to the day before ``error_from`` warn that the report is due; ``error_from`` (11) and after are
an error that holds the day's services of the discipline. The earlier treatment days and the
reports are the shell's history (``ServiceDay.treatment_days``, ``ServiceDay.progress_reports``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from adapter.domain import Discipline, Finding, FindingCode, ProgressReport, Rulebook, ServiceDay
from adapter.rules.codes import is_evaluation
from adapter.rules.findings import ERR, WARN, finding
from adapter.rules.tally import ResolvedService

CLOCKED = (Discipline.PT, Discipline.OT, Discipline.SLP)


def progress_reports(
    services: Sequence[ResolvedService],
    day: ServiceDay,
    rulebook: Rulebook,
    explanation: list[str],
) -> tuple[list[Finding], set[str]]:
    """Findings on the progress-report clock of each discipline treated today, and the services
    an error holds."""
    rules = rulebook.clocks.progress
    if rules.source is None:
        return [], set()
    findings: list[Finding] = []
    held: set[str] = set()
    for discipline in CLOCKED:
        today = [s for s in services if s.discipline is discipline]
        if not today:
            continue
        if any(is_evaluation(s.entry) for s in today):
            explanation.append(f"Progress report ({discipline}): evaluated today, the count starts")
            continue
        last, ignored = _last_report(day.progress_reports, discipline, day.service_date)
        earlier = [
            d for d in day.treatment_days.get(discipline, ()) if d < day.service_date
            and (last is None or d > last.date)
        ]  # fmt: skip
        n = len(set(earlier)) + 1
        since = f"since the {last.kind} of {last.date}" if last else "with no report on record"
        note = f"treatment day {n} {since}" + (
            f" (not counted: {', '.join(ignored)}, by an assistant)" if ignored else ""
        )
        explanation.append(f"Progress report ({discipline}): {note} [{rules.source.ref}].")
        ids = [s.id for s in today]
        if n >= rules.error_from:
            findings.append(
                finding(FindingCode.PROGRESS_REPORT_MISSING, ERR,
                        f"{discipline} {note}: a progress report is required at least every "
                        f"{rules.error_from - 1} treatment days; the day's {discipline} services "
                        "are held until the therapist writes it", ids)
            )  # fmt: skip
            held.update(ids)
        elif n >= rules.warn_from:
            left = rules.error_from - n
            findings.append(
                finding(FindingCode.PROGRESS_REPORT_DUE, WARN,
                        f"{discipline} {note}: a progress report by the therapist is due "
                        f"within {left} more treatment day(s)", ids)
            )  # fmt: skip
    return findings, held


def _last_report(
    reports: Sequence[ProgressReport], discipline: Discipline, on: date
) -> tuple[ProgressReport | None, list[str]]:
    """The latest report of the discipline (or of none in particular) by a therapist on or
    before ``on``; and the assistants' reports since, which do not count."""
    mine = [r for r in reports if r.date <= on and r.discipline in (discipline, None)]
    valid = [r for r in mine if not r.by_assistant]
    last = max(valid, key=lambda r: r.date, default=None)
    ignored = [r.ref or str(r.date) for r in mine
               if r.by_assistant and (last is None or r.date > last.date)]  # fmt: skip
    return last, ignored
