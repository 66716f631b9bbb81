"""Plain, frozen domain types shared by the rules core and the shells around it.

Nothing here does I/O, reads a clock or knows about FHIR. The FHIR layer turns resources into a
``ServiceDay`` (``day``); ``adapter.rules.evaluate`` turns a ``ServiceDay`` plus a ``Rulebook``
(``rulebook``) into a ``Decision`` (``decision``); the FHIR layer turns the ``Decision`` back into
resources. ``terms`` holds the shared vocabulary (disciplines, severities, finding codes).
"""

from adapter.domain.day import (
    BusyPeriod,
    Clinician,
    EncounterContext,
    Intervention,
    KxSpend,
    PatientDay,
    ServiceDay,
)
from adapter.domain.decision import ChargeLine, CodeMinutes, Decision, Finding
from adapter.domain.rulebook import (
    CodeEntry,
    ConceptTarget,
    CoverageRule,
    EvaluationLimits,
    IntakeRules,
    KxThreshold,
    ModifierRules,
    MueEdit,
    NoteRules,
    PayerProfile,
    PtpEdit,
    RoleEntry,
    Rulebook,
    RuleSource,
    Substitution,
    TextMatch,
    UnitThreshold,
)
from adapter.domain.terms import (
    BILLING_FINDINGS,
    CodeKind,
    CodeSource,
    CoverageStatus,
    Discipline,
    FindingCode,
    KxGroup,
    Pooling,
    Severity,
    UnitMethod,
)

__all__ = [
    "BILLING_FINDINGS",
    "BusyPeriod",
    "ChargeLine",
    "Clinician",
    "CodeEntry",
    "CodeKind",
    "CodeMinutes",
    "CodeSource",
    "ConceptTarget",
    "CoverageRule",
    "CoverageStatus",
    "Decision",
    "Discipline",
    "EncounterContext",
    "EvaluationLimits",
    "Finding",
    "FindingCode",
    "IntakeRules",
    "Intervention",
    "KxGroup",
    "KxSpend",
    "KxThreshold",
    "ModifierRules",
    "MueEdit",
    "NoteRules",
    "PatientDay",
    "PayerProfile",
    "Pooling",
    "PtpEdit",
    "RoleEntry",
    "RuleSource",
    "Rulebook",
    "ServiceDay",
    "Severity",
    "Substitution",
    "TextMatch",
    "UnitMethod",
    "UnitThreshold",
]
