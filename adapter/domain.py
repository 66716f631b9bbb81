"""Plain, frozen domain types shared by the rules core and the shells around it.

Nothing here does I/O, reads a clock or knows about FHIR. The FHIR layer turns resources into a
``ServiceDay``; ``adapter.rules.evaluate`` turns a ``ServiceDay`` plus a ``Rulebook`` into a
``Decision``; the FHIR layer turns the ``Decision`` back into resources.

Every number in a ``Decision`` is explained: each ``ChargeLine`` carries the interventions, minutes,
unit method and rule entries (``rule_refs``) that produced it, and the ``Decision`` carries a
step-by-step ``explanation`` in plain words.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
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
    COVERAGE_MISSING = "coverage-missing"
    COVERAGE_TYPE_UNKNOWN = "coverage-type-unknown"


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
        FindingCode.COVERAGE_MISSING,
        FindingCode.COVERAGE_TYPE_UNKNOWN,
    }
)


# --------------------------------------------------------------------------------------------
# Input: one patient's documented therapy services for one date of service
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class PatientDay:
    """One patient's one date of service: the unit that is gathered, evaluated, locked, tagged
    and kept in the ledger. ``patient`` is the reference key (``Patient/id``).

    ``key`` (``<patient id>:<YYYY-MM-DD>``) is its one text form, in identifiers, tags and the
    store; ``from_key`` reads it back."""

    patient: str
    service_date: date

    @property
    def key(self) -> str:
        bare = self.patient.split("/", 1)[1] if "/" in self.patient else self.patient
        return f"{bare}:{self.service_date.isoformat()}"

    @classmethod
    def from_key(cls, key: str) -> PatientDay:
        patient, sep, dos = key.rpartition(":")
        if not sep or not patient:
            raise ValueError(f"{key!r} is not a patient-day key (<patient id>:<date>)")
        return cls(f"Patient/{patient}", date.fromisoformat(dos))

    @classmethod
    def of(cls, patient: str, service_date: str) -> PatientDay:
        """From a patient reference key and an ISO date."""
        return cls(patient, date.fromisoformat(service_date))


@dataclass(frozen=True, slots=True, kw_only=True)
class Clinician:
    """A performer. ``discipline`` None means the role did not say (the line cannot bill)."""

    id: str
    discipline: Discipline | None
    assistant: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Intervention:
    """One documented, completed therapy service (a FHIR ``Procedure``).

    ``start``/``end`` are timezone-aware. ``minutes`` is a documented duration for services
    without a time span (only some payer profiles accept it for timed codes).
    """

    id: str
    code: str
    code_source: CodeSource = CodeSource.CPT
    start: datetime | None = None
    end: datetime | None = None
    minutes: int | None = None
    performers: tuple[Clinician, ...] = ()
    encounter_id: str | None = None
    group: bool = False
    diagnosis: bool = False
    note: str = ""
    body_site: str | None = None
    time_error: str | None = None  # the documented time could not be read (e.g. no UTC offset)


@dataclass(frozen=True, slots=True, kw_only=True)
class EncounterContext:
    """The encounter an intervention belongs to: its period, diagnosis and participants."""

    id: str
    start: datetime | None = None
    end: datetime | None = None
    diagnosis: bool = False
    participants: tuple[Clinician, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class BusyPeriod:
    """A clinician's one-on-one service to *another* patient (for the concurrent check)."""

    clinician_id: str
    start: datetime
    end: datetime
    code: str


@dataclass(frozen=True, slots=True, kw_only=True)
class KxSpend:
    """Year-to-date allowed therapy spend per KX group; None means not known."""

    pt_slp: Decimal | None = None
    ot: Decimal | None = None

    def for_group(self, group: KxGroup) -> Decimal | None:
        return self.pt_slp if group is KxGroup.PT_SLP else self.ot


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceDay:
    """Everything the rules need to bill one patient's one date of service.

    ``evaluated_at`` is the moment of evaluation, passed in by the shell (the core reads no clock);
    None disables the future-time check. ``plan_of_care`` None means it was not looked up.
    ``coverage`` says whether ``payer`` came from the patient's coverage or is a default.
    """

    patient_id: str
    service_date: date
    payer: str
    interventions: tuple[Intervention, ...]
    encounters: tuple[EncounterContext, ...] = ()
    plan_of_care: bool | None = None
    kx_spend: KxSpend = field(default_factory=KxSpend)
    other_patient_sessions: tuple[BusyPeriod, ...] = ()
    evaluated_at: datetime | None = None
    coverage: CoverageStatus = CoverageStatus.KNOWN


# --------------------------------------------------------------------------------------------
# Output: the decision
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargeLine:
    """One billable CPT line: code, units, ordered modifiers and everything that produced it."""

    code: str
    units: int
    modifiers: tuple[str, ...]
    discipline: Discipline
    intervention_ids: tuple[str, ...]
    minutes: int
    method: str
    rule_refs: tuple[str, ...]
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """A documentation or billing problem, as a value. ``code`` is stable across releases."""

    code: FindingCode
    severity: Severity
    message: str
    intervention_ids: tuple[str, ...] = ()
    line_code: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeMinutes:
    """Minutes documented per discipline and code, and the units they were given."""

    discipline: Discipline
    code: str
    timed: bool
    minutes: int
    units: int
    intervention_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The outcome for one patient-day: lines, findings and the explanation of both."""

    patient_id: str
    service_date: date
    payer: str
    method: UnitMethod
    rulebook_version: str
    lines: tuple[ChargeLine, ...]
    findings: tuple[Finding, ...]
    minutes: tuple[CodeMinutes, ...]
    explanation: tuple[str, ...]

    @property
    def held_intervention_ids(self) -> frozenset[str]:
        """Interventions an error finding holds back from billing."""
        return frozenset(
            i for f in self.findings if f.severity is Severity.ERROR for i in f.intervention_ids
        )

    def explain(self) -> str:
        """The explanation as readable text."""
        return "\n".join(self.explanation)


# --------------------------------------------------------------------------------------------
# The rulebook: mappings/ validated into frozen data (built by adapter.mappings)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Provenance:
    """Where a rule entry comes from and when it applies (both ends inclusive)."""

    ref: str
    source: str
    confidence: str
    effective_from: date
    effective_to: date | None = None

    def in_effect(self, on: date) -> bool:
        return self.effective_from <= on and (self.effective_to is None or on <= self.effective_to)


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeEntry:
    code: str
    descriptor: str
    timed: bool
    kind: CodeKind
    disciplines: frozenset[Discipline]
    assistant_may_furnish: bool
    one_on_one: bool
    provenance: Provenance


@dataclass(frozen=True, slots=True, kw_only=True)
class TextMatch:
    phrase: str
    code: str
    provenance: Provenance


@dataclass(frozen=True, slots=True, kw_only=True)
class KxThreshold:
    year: int
    amount: Decimal
    provenance: Provenance


@dataclass(frozen=True, slots=True, kw_only=True)
class Substitution:
    from_code: str
    to_code: str
    provenance: Provenance


@dataclass(frozen=True, slots=True, kw_only=True)
class PayerProfile:
    id: str
    name: str
    method: UnitMethod
    pooling: Pooling
    discipline_modifiers: Mapping[Discipline, str]
    assistant_modifiers: Mapping[Discipline, str]
    assistant_special_rules: bool
    distinct_modifier: str
    region_modifier: str
    kx: bool
    kx_review_amount: Decimal | None
    kx_thresholds: tuple[KxThreshold, ...]
    minutes_without_times: Severity
    substitutions: tuple[Substitution, ...]
    bundled: Mapping[str, Provenance]
    provenance: Provenance

    def kx_threshold(self, year: int) -> KxThreshold | None:
        return next((t for t in self.kx_thresholds if t.year == year), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class PtpEdit:
    """An NCCI procedure-to-procedure pair. Indicator 0: never; 1: with a modifier; 9: n/a."""

    column1: str
    column2: str
    modifier_indicator: int
    distinct_by: str  # "interval" (therapy: separate time) or "region" (chiropractic)
    from_cms_file: bool
    provenance: Provenance


@dataclass(frozen=True, slots=True, kw_only=True)
class MueEdit:
    code: str
    max_units: int
    adjudication: str
    provenance: Provenance


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitThreshold:
    """A review threshold: more than ``max_units`` of ``code`` needs a justification."""

    code: str
    max_units: int
    payers: frozenset[str]  # empty: every payer
    with_codes: frozenset[str]  # non-empty: applies only when one of these is billed too
    provenance: Provenance


@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluationLimits:
    per_discipline_per_day: int
    disciplines: frozenset[Discipline]
    exclusive_with_evaluation: frozenset[str]
    provenance: Provenance


@dataclass(frozen=True, slots=True, kw_only=True)
class NoteRules:
    """Heuristics for 'note too vague to show skilled care' and 'units justified'."""

    min_words: int
    technique_terms: tuple[str, ...]
    response_terms: tuple[str, ...]
    justification_terms: tuple[str, ...]
    group_terms: tuple[str, ...]
    provenance: Provenance


@dataclass(frozen=True, slots=True, kw_only=True)
class RoleEntry:
    """A practitioner role code and the discipline it means."""

    system: str
    code: str
    discipline: Discipline
    assistant: bool
    provenance: Provenance


@dataclass(frozen=True, slots=True, kw_only=True)
class CoverageRule:
    """A Coverage.type coding -> payer profile rule (exact code or prefix)."""

    system: str
    prefix: str | None
    exact: str | None
    payer: str
    provenance: Provenance

    def matches(self, system: str | None, code: str | None) -> bool:
        if system != self.system or not isinstance(code, str):
            return False
        return code == self.exact if self.exact is not None else code.startswith(self.prefix or "")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConceptTarget:
    """A local/SNOMED CT code translated to a CPT code by a ConceptMap in mappings/."""

    code: str
    provenance: Provenance


@dataclass(frozen=True, slots=True, kw_only=True)
class IntakeRules:
    """How FHIR input maps to billing facts (roles, coverage, scope, concept maps)."""

    roles: Mapping[tuple[str, str], RoleEntry]
    coverage_rules: tuple[CoverageRule, ...]
    default_coverage_payer: str
    therapy_prefixes: tuple[str, ...]
    concept_map: Mapping[tuple[str, str], ConceptTarget]

    def in_scope(self, code: str) -> bool:
        return code.startswith(self.therapy_prefixes)

    def payer_for(self, system: str | None, code: str | None) -> tuple[str, str]:
        """The payer profile for a coverage type coding, and the rule ref that decided it."""
        for rule in self.coverage_rules:
            if rule.matches(system, code):
                return rule.payer, rule.provenance.ref
        return self.default_coverage_payer, "fhir:coverage:default"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rulebook:
    """All rules as validated, frozen data, stamped with a version on every output."""

    version: str
    codes: Mapping[str, tuple[CodeEntry, ...]]
    code_order: Mapping[str, int]
    text_matches: tuple[TextMatch, ...]
    payers: Mapping[str, PayerProfile]
    ptp: Mapping[tuple[str, str], tuple[PtpEdit, ...]]
    mue: Mapping[str, tuple[MueEdit, ...]]
    unit_thresholds: tuple[UnitThreshold, ...]
    evaluation_limits: EvaluationLimits
    notes: NoteRules
    intake: IntakeRules

    def code(self, code: str, on: date) -> CodeEntry | None:
        """The catalog entry for ``code`` in effect on ``on``."""
        return next((e for e in self.codes.get(code, ()) if e.provenance.in_effect(on)), None)

    def payer(self, payer_id: str) -> PayerProfile | None:
        return self.payers.get(payer_id)

    def ptp_edit(self, column1: str, column2: str, on: date) -> PtpEdit | None:
        """The pair edit in effect on ``on``.

        When an imported CMS file lists the pair at all, only the CMS file's rows count (so a
        deletion in the CMS file ends the curated edit too); otherwise the curated rows do.
        """
        edits = self.ptp.get((column1, column2), ())
        if any(e.from_cms_file for e in edits):
            edits = tuple(e for e in edits if e.from_cms_file)
        current = [e for e in edits if e.provenance.in_effect(on)]
        return max(current, key=lambda e: e.provenance.effective_from) if current else None

    def mue_edit(self, code: str, on: date) -> MueEdit | None:
        edits = [e for e in self.mue.get(code, ()) if e.provenance.in_effect(on)]
        return max(edits, key=lambda e: e.provenance.effective_from) if edits else None

    def order_of(self, code: str) -> int:
        return self.code_order.get(code, len(self.code_order))
