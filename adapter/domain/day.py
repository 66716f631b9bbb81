"""Input: one patient's documented therapy services for one date of service.

The FHIR layer turns resources into a ``ServiceDay``; the rules core judges it. Times are
timezone-aware; ``None`` means not documented.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from adapter.domain.clocks import Authorization, PlanOfCare, ProgressReport, UnitsOnDay
from adapter.domain.review import DayReview
from adapter.domain.terms import CodeSource, CoverageStatus, Discipline, KxGroup

_PATIENT = re.compile(r"Patient/(?!\.+\Z)[A-Za-z0-9\-.]{1,64}")  # FHIR's id rule (fullmatch)


@dataclass(frozen=True, slots=True, order=True)
class PatientDay:
    """One patient's one date of service: the unit that is gathered, evaluated, locked, tagged
    and kept in the ledger. ``patient`` is the reference key (``Patient/id``).

    ``key`` (``<patient id>:<YYYY-MM-DD>``) is its one text form, in identifiers, tags and the
    store; ``from_key`` reads it back."""

    patient: str
    service_date: date

    def __post_init__(self) -> None:
        if not _PATIENT.fullmatch(self.patient):
            raise ValueError(f"a patient-day is a Patient's, not {self.patient!r}")

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
    code_ref: str | None = None  # the mapping entry that gave the code (ConceptMap, text match)
    start: datetime | None = None
    end: datetime | None = None
    minutes: int | None = None
    performers: tuple[Clinician, ...] = ()
    encounter_id: str | None = None
    group: bool = False
    diagnosis: bool = False
    note: str = ""
    #: every documented body site, each as its codings (``system|code``) and its lowercased text
    #: and displays: two services share a region when they share one of these
    body_sites: tuple[str, ...] = ()
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


ZERO = Decimal("0.00")


@dataclass(frozen=True, slots=True, kw_only=True)
class KxSpend:
    """Allowed therapy amounts of a calendar year per KX group; None means not known."""

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
    #: the opening balance of the year's allowed amounts per KX group (spend outside the
    #: adapter's ledger: other providers, days before it was installed); None: not known
    kx_spend: KxSpend = field(default_factory=KxSpend)
    #: the patient's progress reports up to the date of service, and the evaluations of the
    #: earlier treatment days (which start the count again; the shell's history)
    progress_reports: tuple[ProgressReport, ...] = ()
    #: the active plans of care covering the date (the certification clock)
    plans: tuple[PlanOfCare, ...] = ()
    #: the patient's earlier treatment days per discipline (dates of service with billed lines;
    #: the shell's history, from its ledger or the input in date order)
    treatment_days: Mapping[Discipline, tuple[date, ...]] = field(default_factory=dict)
    #: the payer's authorizations for the patient (ClaimResponse, the site's file)
    authorizations: tuple[Authorization, ...] = ()
    #: the units the patient's earlier days billed (the shell's history, for the counters)
    unit_history: tuple[UnitsOnDay, ...] = ()
    #: treatment visits a week the plan of care schedules (CarePlan activity timing; the most
    #: of its activities), for the KX forecast; None: not scheduled
    planned_visits_per_week: Decimal | None = None
    #: the allowed amounts of the adapter's own lines on earlier days of the year (its ledger)
    kx_prior: KxSpend = field(default_factory=lambda: KxSpend(pt_slp=ZERO, ot=ZERO))
    other_patient_sessions: tuple[BusyPeriod, ...] = ()
    evaluated_at: datetime | None = None
    coverage: CoverageStatus = CoverageStatus.KNOWN
    #: the billing office's overrides and released holds for the day (the shell's store)
    review: DayReview = field(default_factory=DayReview)
