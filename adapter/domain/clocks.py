"""The compliance clocks as data (``domain.md`` §7): which documents are progress reports, and
the treatment-day counts that warn and hold; plans of care; payers' authorizations."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from adapter.domain.source import RuleSource
from adapter.domain.terms import Discipline


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressReport:
    """A documented progress report (or an evaluation, which starts the count again)."""

    date: date
    discipline: Discipline | None  # None: a report of no particular discipline
    by_assistant: bool = False  # an assistant's report does not count (BPM Ch. 15 §220.3.C)
    ref: str = ""  # what documents it (DocumentReference/…, or the evaluation's line)
    kind: str = "report"  # report | evaluation


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressRules:
    """``clocks.toml`` ``[progress_report]``: the report document types (``system|code`` ->
    the discipline they are for, None for any) and the treatment-day counts."""

    types: Mapping[str, Discipline | None] = field(default_factory=dict)
    warn_from: int = 8  # the first treatment day since the last report that warns
    error_from: int = 11  # the first that is an error (its lines held)
    source: RuleSource | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanOfCare:
    """An active plan of care covering the date of service, as the certification clock reads
    it: its discipline (None: any), its period, and when the physician/NPP certified it."""

    ref: str
    discipline: Discipline | None
    start: date | None
    end: date | None
    certified_on: date | None  # None: not certified (not signed) yet
    delayed_reason: bool = False  # a documented reason for a late certification
    #: the later certifications (recertifications), by date
    recertifications: tuple[date, ...] = ()
    #: the date the plan was changed significantly (it needs a new certification)
    changed_on: date | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificationRules:
    """``clocks.toml`` ``[certification]``: how a site documents certification and the days."""

    convention: str = "author"  # author: CarePlan.author on CarePlan.created; provenance:
    # a Provenance signature targeting the plan; off: not kept
    categories: Mapping[str, Discipline] = field(default_factory=dict)  # system|code -> discipline
    days_to_certify: int = 30
    max_days: int = 90
    source: RuleSource | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Authorization:
    """One grant of a payer's authorization (prior authorization) for the patient: visits
    and/or units of a discipline or of one code, within a date range.

    ``code`` set: the units of that CPT/HCPCS code (of any discipline unless ``discipline``);
    ``code`` None: the services of ``discipline`` (None: of every discipline). A count None is
    not limited (a grant with neither only says which number to report)."""

    number: str  # the payer's authorization number (Claim.insurance.preAuthRef)
    ref: str  # what documents it: ClaimResponse/<id> (item n), or <file>:<line>
    discipline: Discipline | None = None
    code: str | None = None
    start: date | None = None
    end: date | None = None
    visits: int | None = None
    units: int | None = None
    payer: str | None = None  # the payer profile it is for (None: the day's, whichever)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitsOnDay:
    """The units an earlier day billed for a code of a discipline (the shell's history, for
    the authorization counters)."""

    date: date
    discipline: Discipline
    code: str
    units: int
    #: the authorization numbers they were billed under (empty: none known then)
    authorizations: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorizationRules:
    """``clocks.toml`` ``[authorization]``: how a ClaimResponse names a discipline and a visit
    count, and when a grant is running out."""

    #: a productOrService coding (``system|code``) that means a discipline's services
    disciplines: Mapping[str, Discipline] = field(default_factory=dict)
    #: Quantity codes/units that count visits (anything else counts units)
    visit_units: frozenset[str] = frozenset()
    visits_left: int = 2  # warn when this many visits or fewer are left after the day
    units_left: int = 10  # warn when fewer units than this are left after the day
    days_left: int = 7  # warn from this many days before the grant's end
    source: RuleSource | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockRules:
    progress: ProgressRules = field(default_factory=ProgressRules)
    certification: CertificationRules = field(default_factory=CertificationRules)
    authorization: AuthorizationRules = field(default_factory=AuthorizationRules)
