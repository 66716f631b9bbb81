"""``resolve``: one documented intervention on its own, turned into a billable service or held.

Its steps, in order: the code (catalog, payer substitution, bundling: ``codes``); the performers
and the discipline; the documented time; a group session billed one-on-one; supervision of an
assistant. An error finding in any step holds the intervention (no line comes from it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from adapter.domain import (
    CodeEntry,
    CodeKind,
    Discipline,
    EncounterContext,
    Finding,
    FindingCode,
    Intervention,
    PayerProfile,
    Rulebook,
    ServiceDay,
)
from adapter.rules.codes import is_group, resolve_code
from adapter.rules.findings import ERR, WARN, finding
from adapter.rules.tally import ResolvedService
from adapter.rules.timeline import Span


@dataclass(frozen=True, slots=True, kw_only=True)
class Resolution:
    """The outcome for one intervention, with its findings and the refs of its code."""

    service: ResolvedService | None  # None: held (error) or not billable (bundled)
    findings: tuple[Finding, ...]
    rule_refs: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedDay:
    """The day's billable services, the refs of each one's code, and the findings of all."""

    services: tuple[ResolvedService, ...]
    rule_refs: Mapping[str, tuple[str, ...]]  # service id -> refs of its code
    findings: tuple[Finding, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """The findings of one step and whether they hold the intervention."""

    findings: tuple[Finding, ...] = ()
    held: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Performed:
    """Who performed it: the one discipline (None: not known) and whether a therapist took part."""

    discipline: Discipline | None
    by_therapist: bool
    check: Check


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    """The documented time: a span, or minutes documented without one."""

    span: Span | None = None
    documented_minutes: int | None = None
    check: Check = Check()


def resolve_day(
    interventions: Sequence[Intervention],
    day: ServiceDay,
    payer: PayerProfile,
    rulebook: Rulebook,
    encounters: Mapping[str, EncounterContext],
) -> ResolvedDay:
    """Resolve every intervention of the day, in the given order."""
    resolutions = [resolve(iv, day, payer, rulebook, encounters) for iv in interventions]
    services = tuple(r.service for r in resolutions if r.service is not None)
    refs = {r.service.id: r.rule_refs for r in resolutions if r.service is not None}
    findings = tuple(f for r in resolutions for f in r.findings)
    return ResolvedDay(services=services, rule_refs=refs, findings=findings)


def resolve(
    iv: Intervention,
    day: ServiceDay,
    payer: PayerProfile,
    rulebook: Rulebook,
    encounters: Mapping[str, EncounterContext],
) -> Resolution:
    """Check one intervention on its own; return it as a billable service or hold it."""
    step = resolve_code(iv, day.service_date, payer, rulebook)
    if step.entry is None:
        return Resolution(service=None, findings=step.findings, rule_refs=step.rule_refs)
    code, entry = step.code, step.entry
    encounter = encounters.get(iv.encounter_id) if iv.encounter_id else None
    who = performers(iv, code, entry)
    time = timing(iv, code, entry, day, payer=payer, encounter=encounter)
    group = group_billed_one_on_one(iv, code, entry, rulebook, who=who, on=day.service_date)
    checks = (who.check, time.check, group)
    findings = (
        *step.findings,
        *(f for c in checks for f in c.findings),
        *supervision(iv, who, encounter),
    )
    if who.discipline is None or any(c.held for c in checks):
        return Resolution(service=None, findings=findings, rule_refs=step.rule_refs)
    service = ResolvedService(
        iv=iv,
        code=code,
        entry=entry,
        discipline=who.discipline,
        by_therapist=who.by_therapist,
        span=time.span,
        documented_minutes=time.documented_minutes,
    )
    return Resolution(service=service, findings=findings, rule_refs=step.rule_refs)


def performers(iv: Intervention, code: str, entry: CodeEntry) -> Performed:
    """The discipline of the performers, then whether the code allows it and an assistant."""
    who = discipline_of(iv)
    if who.discipline is None:
        return who
    ids = (iv.id,)
    out = list(who.check.findings)
    held = who.check.held
    if who.discipline not in entry.disciplines:
        out.append(
            finding(
                FindingCode.DISCIPLINE_MISMATCH,
                ERR,
                f"{code} is not billable under a {who.discipline} plan of care",
                ids,
                line_code=code,
            )
        )
        held = True
    if not who.by_therapist and not entry.assistant_may_furnish:
        out.append(
            finding(
                FindingCode.ASSISTANT_NOT_PERMITTED,
                ERR,
                f"{code} may not be furnished by an assistant alone",
                ids,
                line_code=code,
            )
        )
        held = True
    check = Check(findings=tuple(out), held=held)
    return Performed(discipline=who.discipline, by_therapist=who.by_therapist, check=check)


def discipline_of(iv: Intervention) -> Performed:
    """One performer at least, every performer with a known discipline, and only one discipline."""
    ids = (iv.id,)
    if not iv.performers:
        no_one = finding(FindingCode.NO_PERFORMER, ERR, "no performer is documented", ids)
        return Performed(discipline=None, by_therapist=False, check=_held(no_one))
    known = [p for p in iv.performers if p.discipline is not None]
    unknown = [p.id for p in iv.performers if p.discipline is None]
    disciplines = {p.discipline for p in known}
    if not known:
        none_known = finding(
            FindingCode.NO_DISCIPLINE,
            ERR,
            "no performer has a known discipline (PT, OT or SLP role)",
            ids,
        )
        return Performed(discipline=None, by_therapist=False, check=_held(none_known))
    if len(disciplines) > 1:
        mixed = finding(
            FindingCode.MIXED_DISCIPLINES,
            ERR,
            "performers of different disciplines ("
            + ", ".join(sorted(str(d) for d in disciplines))
            + ") on one procedure: document each discipline's part separately",
            ids,
        )
        return Performed(discipline=None, by_therapist=False, check=_held(mixed))
    discipline = known[0].discipline
    by_therapist = any(not p.assistant for p in known)
    check = Check()
    if unknown:
        check = _held(
            finding(
                FindingCode.NO_DISCIPLINE,
                ERR,
                f"{len(unknown)} performer(s) without a discipline (PT, OT or SLP role): "
                "document their role or remove them from the procedure",
                ids,
            )
        )
    return Performed(discipline=discipline, by_therapist=by_therapist, check=check)


def timing(
    iv: Intervention,
    code: str,
    entry: CodeEntry,
    day: ServiceDay,
    *,
    payer: PayerProfile,
    encounter: EncounterContext | None,
) -> Timing:
    """The documented time: readable, a valid span, or minutes where the code and payer allow."""
    if iv.time_error is not None:
        unreadable = finding(
            FindingCode.TIME_INVALID,
            ERR,
            f"the documented time cannot be read: {iv.time_error}",
            (iv.id,),
        )
        return Timing(check=_held(unreadable))
    if iv.start is not None and iv.end is not None:
        return span_checks(iv, iv.start, iv.end, day, encounter)
    if entry.timed:
        return minutes_for_timed(iv, code, payer)
    if iv.minutes is not None and iv.minutes >= 0:
        return Timing(documented_minutes=iv.minutes)
    return Timing()


def span_checks(
    iv: Intervention,
    start: datetime,
    end: datetime,
    day: ServiceDay,
    encounter: EncounterContext | None,
) -> Timing:
    """A span ends after it starts, not in the future, and starts on the date of service."""
    ids = (iv.id,)
    if end < start:
        inverted = finding(FindingCode.TIME_INVERTED, ERR, "end time is before start time", ids)
        return Timing(check=_held(inverted))
    out: list[Finding] = []
    held = False
    if day.evaluated_at is not None and end > day.evaluated_at:
        out.append(finding(FindingCode.TIME_IN_FUTURE, ERR, "end time is in the future", ids))
        held = True
    if start.date() != day.service_date:
        out.append(
            finding(
                FindingCode.TIME_OFF_SERVICE_DATE,
                ERR,
                f"starts on {start.date()}, not on the date of service {day.service_date}",
                ids,
            )
        )
        held = True
    if encounter is not None:
        in_encounter = encounter_checks(iv, start, end, encounter)
        out += in_encounter.findings
        held = held or in_encounter.held
    return Timing(span=(start, end), check=Check(findings=tuple(out), held=held))


def encounter_checks(
    iv: Intervention, start: datetime, end: datetime, encounter: EncounterContext
) -> Check:
    """The span lies within its encounter's period; a different local date warns of time zones."""
    ids = (iv.id,)
    out: list[Finding] = []
    if (
        encounter.start is not None
        and encounter.start.date() != start.date()
        and encounter.start <= start
        and (encounter.end is None or end <= encounter.end)
    ):
        out.append(
            finding(
                FindingCode.DATE_DIFFERS_FROM_ENCOUNTER,
                WARN,
                f"the procedure's local date {start.date()} differs from its "
                f"encounter's {encounter.start.date()}: check the time zone of the times",
                ids,
            )
        )
    if (encounter.start is not None and start < encounter.start) or (
        encounter.end is not None and end > encounter.end
    ):
        out.append(
            finding(
                FindingCode.TIME_OUTSIDE_ENCOUNTER,
                ERR,
                "documented time lies outside the encounter's period",
                ids,
            )
        )
        return Check(findings=tuple(out), held=True)
    return Check(findings=tuple(out))


def minutes_for_timed(iv: Intervention, code: str, payer: PayerProfile) -> Timing:
    """A timed code needs start and end; documented minutes alone as the payer's profile says."""
    ids = (iv.id,)
    if iv.minutes is not None and iv.minutes >= 0:
        severity = payer.minutes_without_times
        untimed = finding(
            FindingCode.MINUTES_WITHOUT_TIMES,
            severity,
            f"{iv.minutes} min documented without start and end times: overlaps and "
            "separate intervals cannot be verified",
            ids,
        )
        check = Check(findings=(untimed,), held=severity is ERR)
        return Timing(documented_minutes=iv.minutes, check=check)
    missing = finding(
        FindingCode.TIME_MISSING,
        ERR,
        f"{code} is a timed code but start and end times are not both documented",
        ids,
    )
    return Timing(check=_held(missing))


def group_billed_one_on_one(
    iv: Intervention,
    code: str,
    entry: CodeEntry,
    rulebook: Rulebook,
    *,
    who: Performed,
    on: date,
) -> Check:
    """A one-on-one code cannot bill a service delivered in a group: the catalog's group code
    for the discipline (``kind = "group"`` in ``codes.toml``, 97150 for PT and OT) can."""
    if not (entry.one_on_one and is_group(iv, rulebook.notes)):
        return Check()
    group_codes = rulebook.codes_of_kind(CodeKind.GROUP, on, who.discipline)
    instead = " or ".join(group_codes) if group_codes else "the group code"
    return _held(
        finding(
            FindingCode.GROUP_BILLED_ONE_ON_ONE,
            ERR,
            f"{code} is a one-on-one code but the service was delivered in a group: "
            f"bill {instead} instead",
            (iv.id,),
            line_code=code,
        )
    )


def supervision(
    iv: Intervention, who: Performed, encounter: EncounterContext | None
) -> list[Finding]:
    """An assistant alone needs a supervising therapist of the discipline on the encounter."""
    if who.discipline is None or who.by_therapist:
        return []
    supervised = encounter is not None and any(
        p.discipline is who.discipline and not p.assistant for p in encounter.participants
    )
    if supervised:
        return []
    return [
        finding(
            FindingCode.ASSISTANT_UNSUPERVISED,
            WARN,
            f"assistant service without a supervising {who.discipline} therapist on the encounter",
            (iv.id,),
        )
    ]


def _held(f: Finding) -> Check:
    """One error finding that holds the intervention."""
    return Check(findings=(f,), held=True)
