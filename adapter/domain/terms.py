"""The vocabulary of billing decisions: disciplines, severities, methods and the stable finding
codes. Plain enums; nothing here does I/O or knows about FHIR."""

from __future__ import annotations

from enum import StrEnum


class Discipline(StrEnum):
    """The plan of care a service belongs to (DC: chiropractic, only for NCCI edits)."""

    PT = "PT"
    OT = "OT"
    SLP = "SLP"
    DC = "DC"


class Severity(StrEnum):
    """Errors hold the affected line; warnings bill it and ask for a fix; info only explains."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class UnitMethod(StrEnum):
    """How timed minutes become 15-minute units."""

    CMS = "cms"  # total-time method, MCPM Ch. 5 §20.2
    AMA = "ama"  # CPT per-code method


class Pooling(StrEnum):
    """Whether the CMS total is formed per discipline (separate plans of care) or over all."""

    PER_DISCIPLINE = "per_discipline"
    POOLED = "pooled"


class CodeSource(StrEnum):
    """Where an intervention's code came from. Text matches must be confirmed by a person."""

    CPT = "cpt"
    CONCEPT_MAP = "concept_map"
    TEXT = "text"
    SUGGESTED = "suggested"  # a ConceptMap target looser than equivalent: confirmed by a person
    UNMAPPED = "unmapped"  # therapy documented with a code no mapping translates: never billed


class CodeKind(StrEnum):
    TREATMENT = "treatment"
    MODALITY = "modality"
    EVALUATION = "evaluation"
    REEVALUATION = "reevaluation"
    GROUP = "group"
    TEST = "test"
    MANIPULATION = "manipulation"


class CoverageStatus(StrEnum):
    """How the payer profile was chosen."""

    KNOWN = "known"  # from the patient's active Coverage (or forced by the caller)
    MISSING = "missing"  # no active Coverage: the configured default profile
    UNTYPED = "untyped"  # a Coverage without a Source of Payment Typology code: the default


class KxGroup(StrEnum):
    """The two Medicare therapy KX thresholds: PT and SLP combined; OT separate."""

    PT_SLP = "PT_SLP"
    OT = "OT"


class FindingCode(StrEnum):
    """Stable finding codes. Values never change once released; new ones may be added."""

    UNKNOWN_CODE = "unknown-code"
    CODE_UNMAPPED = "code-unmapped"
    CODE_FROM_TEXT = "code-from-text"
    CODE_SUBSTITUTED = "code-substituted"
    CODE_BUNDLED = "code-bundled"
    NO_PERFORMER = "no-performer"
    NO_DISCIPLINE = "no-discipline"
    MIXED_DISCIPLINES = "mixed-disciplines"
    DISCIPLINE_MISMATCH = "discipline-mismatch"
    ASSISTANT_NOT_PERMITTED = "assistant-not-permitted"
    ASSISTANT_UNSUPERVISED = "assistant-unsupervised"
    TIME_MISSING = "time-missing"
    TIME_INVALID = "time-invalid"
    MINUTES_WITHOUT_TIMES = "minutes-without-times"
    TIME_INVERTED = "time-inverted"
    TIME_IN_FUTURE = "time-in-future"
    TIME_OUTSIDE_ENCOUNTER = "time-outside-encounter"
    TIME_OFF_SERVICE_DATE = "time-off-service-date"
    DATE_DIFFERS_FROM_ENCOUNTER = "date-differs-from-encounter"
    MODIFIER_LIMIT = "modifier-limit"
    UNDER_8_MINUTES = "under-8-minutes"
    NO_UNIT_LEFT = "no-unit-left"
    NOTHING_BILLABLE = "nothing-billable"
    SAME_CODE_OVERLAP = "same-code-overlap"
    OVERLAPPING_SERVICES = "overlapping-services"
    CONCURRENT_PATIENTS = "concurrent-patients"
    GROUP_BILLED_ONE_ON_ONE = "group-billed-one-on-one"
    NO_DIAGNOSIS = "no-diagnosis"
    NOTE_MISSING = "note-missing"
    NOTE_VAGUE = "note-vague"
    NO_PLAN_OF_CARE = "no-plan-of-care"
    UNITS_OVER_THRESHOLD = "units-over-threshold"
    MUE_EXCEEDED = "mue-exceeded"
    EVALUATION_LIMIT = "evaluation-limit"
    EVALUATION_EXCLUSIVE = "evaluation-exclusive"
    NCCI_NOT_ALLOWED = "ncci-not-allowed"
    NCCI_NOT_DISTINCT = "ncci-not-distinct"
    NCCI_DISTINCT = "ncci-distinct"
    KX_APPLIED = "kx-applied"
    KX_REVIEW = "kx-targeted-review"
    KX_SPEND_UNKNOWN = "kx-spend-unknown"
    KX_THRESHOLD_UNKNOWN = "kx-threshold-unknown"
    KX_FORECAST = "kx-forecast"
    COVERAGE_MISSING = "coverage-missing"
    COVERAGE_TYPE_UNKNOWN = "coverage-type-unknown"
    NO_PRICE = "no-price"
    PROGRESS_REPORT_DUE = "progress-report-due"
    PROGRESS_REPORT_MISSING = "progress-report-missing"
    PLAN_UNCERTIFIED = "plan-uncertified"
    PLAN_CERTIFIED_LATE = "plan-certified-late"
    PLAN_RECERTIFICATION_DUE = "plan-recertification-due"
    AUTHORIZATION_MISSING = "authorization-missing"
    AUTHORIZATION_EXCEEDED = "authorization-exceeded"
    AUTHORIZATION_RUNNING_OUT = "authorization-running-out"
    REVIEW_OVERRIDE = "review-override"  # a person set a line's units or modifiers
    REVIEW_RELEASED = "review-released"  # a person released an administrative hold
    REVIEW_STALE = "review-stale"  # an override matches no line any more (the day changed)
    REVIEW_REFUSED = "review-refused"  # an override the rules cannot apply (more units, …)


#: Who must act on a finding: the clinician (fix the documentation) or the billing office.
BILLING_FINDINGS = frozenset(
    {
        FindingCode.CODE_SUBSTITUTED,
        FindingCode.CODE_BUNDLED,
        FindingCode.MUE_EXCEEDED,
        FindingCode.NCCI_DISTINCT,
        FindingCode.KX_APPLIED,
        FindingCode.KX_REVIEW,
        FindingCode.KX_SPEND_UNKNOWN,
        FindingCode.KX_THRESHOLD_UNKNOWN,
        FindingCode.KX_FORECAST,
        FindingCode.COVERAGE_MISSING,
        FindingCode.NO_PRICE,
        FindingCode.COVERAGE_TYPE_UNKNOWN,
        FindingCode.AUTHORIZATION_MISSING,
        FindingCode.AUTHORIZATION_EXCEEDED,
        FindingCode.AUTHORIZATION_RUNNING_OUT,
        FindingCode.REVIEW_OVERRIDE,
        FindingCode.REVIEW_RELEASED,
        FindingCode.REVIEW_STALE,
        FindingCode.REVIEW_REFUSED,
    }
)
