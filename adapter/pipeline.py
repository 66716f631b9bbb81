"""The one place that wires intake -> parse -> evaluate -> build.

Every source (replay today; webhook and polling later) hands a patient-day's completed Procedures
and a ``Lookup`` for their context to ``process_day`` and gets back the decision and the
transaction entries to write.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from adapter.domain import Decision, Rulebook
from adapter.fhir.build import BuildOptions, build_day
from adapter.fhir.parse import Lookup, ParsedDay, service_day
from adapter.rules import evaluate


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """Choices that shape a run: payer selection, evaluation time and what gets written."""

    payer_override: str | None = None
    default_payer: str = "medicare"
    evaluated_at: datetime | None = None
    build: BuildOptions = field(default_factory=BuildOptions)


@dataclass(frozen=True, slots=True)
class DayResult:
    parsed: ParsedDay
    decision: Decision | None  # None: nothing on the day was therapy
    entries: list[dict[str, Any]]


def process_day(
    procedures: Sequence[dict[str, Any]],
    lookup: Lookup,
    rulebook: Rulebook,
    *,
    patient: str,
    service_date: str,
    options: Options,
) -> DayResult:
    parsed = service_day(
        procedures,
        lookup,
        rulebook,
        patient=patient,
        service_date=service_date,
        payer_override=options.payer_override,
        default_payer=options.default_payer,
        evaluated_at=options.evaluated_at,
    )
    if not parsed.day.interventions:
        return DayResult(parsed, None, [])
    decision = evaluate(parsed.day, rulebook)
    return DayResult(parsed, decision, build_day(decision, parsed.facts, options.build))
