"""Therapy charge-capture adapter for FHIR R4 EMRs.

Public API (stable): load the rulebook, evaluate one patient-day, read the decision.
"""

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

__version__ = "0.1.0"

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
    "load_rulebook",
]
