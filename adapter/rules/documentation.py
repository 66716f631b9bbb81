"""Documentation findings that can be judged from one patient-day (domain.md §5), pure.

Per intervention: the note is missing or too vague to show skilled care. Per day: no diagnosis,
no or untyped coverage, no plan of care, nothing billable. ``has_justification`` tells whether a
note justifies units over a review threshold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from adapter.domain import (
    ChargeLine,
    CoverageStatus,
    EncounterContext,
    Finding,
    FindingCode,
    Intervention,
    NoteRules,
    PayerProfile,
    ServiceDay,
)
from adapter.rules.findings import WARN, finding
from adapter.rules.tally import ResolvedService, Tallies


def mentions(text: str, terms: Iterable[str]) -> bool:
    """Whether the text contains one of the terms (case-insensitive substring)."""
    low = text.lower()
    return any(t in low for t in terms)


def notes_of_day(interventions: Iterable[Intervention], notes: NoteRules) -> list[Finding]:
    """The note findings of every intervention of the day."""
    return [f for iv in interventions for f in note_findings(iv, notes)]


def note_findings(iv: Intervention, notes: NoteRules) -> list[Finding]:
    """Note missing, or too vague to show skilled care (no technique or no response)."""
    text = iv.note.strip()
    if not text:
        return [
            finding(
                FindingCode.NOTE_MISSING, WARN, "no note: skilled care is not documented", (iv.id,)
            )
        ]
    missing = []
    if len(text.split()) < notes.min_words:
        missing.append(f"fewer than {notes.min_words} words")
    if not mentions(text, notes.technique_terms):
        missing.append("no technique or intervention described")
    if not mentions(text, notes.response_terms):
        missing.append("no patient response described")
    if missing:
        return [
            finding(
                FindingCode.NOTE_VAGUE,
                WARN,
                "note may not show skilled care: " + "; ".join(missing),
                (iv.id,),
            )
        ]
    return []


def has_justification(ivs: Iterable[Intervention], notes: NoteRules) -> bool:
    """Whether one of the notes gives a justification (for units over a review threshold)."""
    return any(mentions(iv.note, notes.justification_terms) for iv in ivs)


def day_findings(
    day: ServiceDay,
    payer: PayerProfile,
    interventions: Sequence[Intervention],
    encounters: Mapping[str, EncounterContext],
) -> list[Finding]:
    """The day-level documentation warnings: diagnosis, coverage, plan of care."""
    return [
        *no_diagnosis(interventions, encounters),
        *coverage(day, payer, interventions),
        *plan_of_care(day, interventions),
    ]


def no_diagnosis(
    interventions: Iterable[Intervention], encounters: Mapping[str, EncounterContext]
) -> list[Finding]:
    """No diagnosis on the procedure or on its encounter: medical necessity is not shown."""
    no_dx = [
        iv.id
        for iv in interventions
        if not iv.diagnosis and not _encounter_has_diagnosis(iv, encounters)
    ]
    if not no_dx:
        return []
    return [
        finding(
            FindingCode.NO_DIAGNOSIS,
            WARN,
            "no diagnosis (reason) on the procedure or its encounter: medical necessity "
            "is not shown",
            no_dx,
        )
    ]


def _encounter_has_diagnosis(iv: Intervention, encounters: Mapping[str, EncounterContext]) -> bool:
    """The intervention's encounter is known and carries a diagnosis."""
    encounter = encounters.get(iv.encounter_id) if iv.encounter_id is not None else None
    return encounter is not None and encounter.diagnosis


def coverage(
    day: ServiceDay, payer: PayerProfile, interventions: Sequence[Intervention]
) -> list[Finding]:
    """No active coverage, or one without a payment type: billed under the default profile."""
    if not interventions:
        return []
    if day.coverage is CoverageStatus.MISSING:
        return [
            finding(
                FindingCode.COVERAGE_MISSING,
                WARN,
                f"no active coverage found for the date of service: billed under the default "
                f"profile {payer.id}; confirm the payer",
                (iv.id for iv in interventions),
            )
        ]
    if day.coverage is CoverageStatus.UNTYPED:
        return [
            finding(
                FindingCode.COVERAGE_TYPE_UNKNOWN,
                WARN,
                f"the active coverage has no Source of Payment Typology type: billed under the "
                f"default profile {payer.id}; confirm the payer",
                (iv.id for iv in interventions),
            )
        ]
    return []


def plan_of_care(day: ServiceDay, interventions: Sequence[Intervention]) -> list[Finding]:
    """No active plan of care (CarePlan) on the date of service (None: not looked up)."""
    if day.plan_of_care is not False or not interventions:
        return []
    return [
        finding(
            FindingCode.NO_PLAN_OF_CARE,
            WARN,
            "no active plan of care (CarePlan) for the patient on the date of service",
            (iv.id for iv in interventions),
        )
    ]


def nothing_billable(
    lines: Sequence[ChargeLine], codes: Tallies, services: Iterable[ResolvedService]
) -> list[Finding]:
    """Therapy was documented (some code counted) but the day has no line."""
    if lines or not codes:
        return []
    return [
        finding(
            FindingCode.NOTHING_BILLABLE,
            WARN,
            "therapy was documented but nothing is billable for this day: check the "
            "minutes and the findings",
            (s.id for s in services),
        )
    ]
