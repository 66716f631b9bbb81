"""Therapy charge-capture adapter for FHIR R4 EMRs.

Public API (stable, see README "Library use"):

- ``load_rulebook(dir=None)``: the validated, versioned rules (``mappings/``);
- ``evaluate_bundle(bundle, rulebook, ...)``: a FHIR Bundle in, the transaction Bundle the adapter
  would write out (plus the decisions);
- ``explain_bundle(bundle, rulebook, ...)``: the explanation of every patient-day, as text;
- ``evaluate(day, rulebook)``: the pure rules core on domain objects, ``Decision.explain()``.
"""

from adapter.api import VERSION as __version__
from adapter.api import evaluate_bundle, explain_bundle
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
from adapter.mappings import load_rulebook
from adapter.rules import evaluate

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
