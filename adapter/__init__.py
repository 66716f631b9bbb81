"""Therapy charge-capture adapter for FHIR R4 EMRs.

Public API (stable, see README "Library use"):

- ``load_rulebook(dir=None)``: the validated, versioned rules (``mappings/``);
- ``evaluate_bundle(bundle, rulebook, ...)``: a FHIR Bundle in, the transaction Bundle the adapter
  would write out (plus the decisions);
- ``explain_bundle(bundle, rulebook, ...)``: the explanation of every patient-day, as text;
- ``evaluate(day, rulebook)``: the pure rules core on domain objects, ``Decision.explain()``.
"""

from datetime import datetime
from typing import Any

from adapter.domain import (
    ChargeLine,
    Clinician,
    CodeSource,
    Decision,
    Discipline,
    EncounterContext,
    Finding,
    FindingCode,
    Intervention,
    KxSpend,
    Rulebook,
    ServiceDay,
    Severity,
)
from adapter.errors import AdapterError, MappingError
from adapter.fhir.build import BuildOptions
from adapter.mappings import load_rulebook
from adapter.pipeline import Options
from adapter.replay import evaluate_bundle as _evaluate
from adapter.rules import evaluate

__version__ = "0.1.0"


def evaluate_bundle(
    bundle: dict[str, Any],
    rulebook: Rulebook,
    *,
    payer: str | None = None,
    default_payer: str = "medicare",
    evaluated_at: datetime | None = None,
    billing_recipient: str | None = None,
) -> tuple[dict[str, Any], list[Decision]]:
    """Evaluate a FHIR R4 Bundle (or a single resource): the output transaction Bundle and the
    decision of every patient-day in it. ``payer`` forces a payer profile for every day."""
    options = Options(
        payer_override=payer,
        default_payer=default_payer,
        evaluated_at=evaluated_at,
        build=BuildOptions(
            agent=f"therapy-charge-adapter {__version__}", billing_recipient=billing_recipient
        ),
    )
    out, decisions, _ = _evaluate(bundle, rulebook, options)
    return out, decisions


def explain_bundle(bundle: dict[str, Any], rulebook: Rulebook, **kwargs: Any) -> str:
    """The explanation of every patient-day in a FHIR Bundle, as readable text."""
    _, decisions = evaluate_bundle(bundle, rulebook, **kwargs)
    return "\n\n".join(d.explain() for d in decisions)


__all__ = [
    "AdapterError",
    "ChargeLine",
    "Clinician",
    "CodeSource",
    "Decision",
    "Discipline",
    "EncounterContext",
    "Finding",
    "FindingCode",
    "Intervention",
    "KxSpend",
    "MappingError",
    "Rulebook",
    "ServiceDay",
    "Severity",
    "__version__",
    "evaluate",
    "evaluate_bundle",
    "explain_bundle",
    "load_rulebook",
]
