"""Documentation findings that can be judged from one patient-day (domain.md §5), pure.

``resolve`` turns each documented intervention into a billable ``Service`` or holds it with an
error finding; ``overlaps``, ``concurrency`` and ``note_findings`` add the day-level findings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from adapter.domain import (
    CodeEntry,
    CodeKind,
    CodeSource,
    Discipline,
    EncounterContext,
    Finding,
    FindingCode,
    Intervention,
    NoteRules,
    PayerProfile,
    Rulebook,
    ServiceDay,
    Severity,
)
from adapter.rules.timeline import Span, overlap_seconds

ERR, WARN, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO


def finding(
    code: FindingCode,
    severity: Severity,
    message: str,
    ids: Iterable[str] = (),
    line_code: str | None = None,
) -> Finding:
    return Finding(
        code=code,
        severity=severity,
        message=message,
        intervention_ids=tuple(sorted(set(ids))),
        line_code=line_code,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Service:
    """A documented intervention that passed the per-intervention checks."""

    iv: Intervention
    code: str  # after payer substitution
    entry: CodeEntry
    discipline: Discipline
    by_therapist: bool  # a therapist (not only an assistant) performed it
    span: Span | None
    documented_minutes: int | None  # minutes documented without a span

    @property
    def id(self) -> str:
        return self.iv.id

    @property
    def performer_ids(self) -> frozenset[str]:
        return frozenset(p.id for p in self.iv.performers)


@dataclass(frozen=True, slots=True, kw_only=True)
class Resolution:
    service: Service | None  # None: held (error) or not billable (bundled)
    findings: tuple[Finding, ...]
    rule_refs: tuple[str, ...]


def _mentions(text: str, terms: Iterable[str]) -> bool:
    low = text.lower()
    return any(t in low for t in terms)


def is_group(iv: Intervention, notes: NoteRules) -> bool:
    return iv.group or _mentions(iv.note, notes.group_terms)


def resolve(
    iv: Intervention,
    day: ServiceDay,
    payer: PayerProfile,
    rulebook: Rulebook,
    encounters: Mapping[str, EncounterContext],
) -> Resolution:
    """Check one intervention on its own; return it as a billable ``Service`` or hold it."""
    out: list[Finding] = []
    refs: list[str] = []
    ids = (iv.id,)
    held = False

    # -- code -----------------------------------------------------------------------------
    code = iv.code
    entry = rulebook.code(code, day.service_date)
    if entry is None:
        out.append(
            finding(
                FindingCode.UNKNOWN_CODE,
                ERR,
                f"code {code} is not a therapy code in effect on {day.service_date}",
                ids,
            )
        )
        return Resolution(service=None, findings=tuple(out), rule_refs=())
    refs.append(entry.source.ref)
    if iv.code_source is CodeSource.TEXT:
        out.append(
            finding(
                FindingCode.CODE_FROM_TEXT,
                WARN,
                f"code {code} was suggested from the procedure's text; a person must confirm it",
                ids,
            )
        )
    for sub in payer.substitutions:
        if sub.from_code == code and sub.source.in_effect(day.service_date):
            new_entry = rulebook.code(sub.to_code, day.service_date)
            if new_entry is None:
                break
            out.append(
                finding(
                    FindingCode.CODE_SUBSTITUTED,
                    INFO,
                    f"{payer.name} does not accept {code}: reported as {sub.to_code}",
                    ids,
                    sub.to_code,
                )
            )
            refs += [sub.source.ref, new_entry.source.ref]
            code, entry = sub.to_code, new_entry
            break
    bundled = payer.bundled.get(code)
    if bundled is not None and bundled.in_effect(day.service_date):
        out.append(
            finding(
                FindingCode.CODE_BUNDLED,
                INFO,
                f"{code} is bundled for {payer.name} and never paid separately: documented only",
                ids,
                code,
            )
        )
        return Resolution(service=None, findings=tuple(out), rule_refs=tuple(refs))

    # -- performers and discipline -----------------------------------------------------------
    discipline: Discipline | None = None
    by_therapist = False
    if not iv.performers:
        out.append(finding(FindingCode.NO_PERFORMER, ERR, "no performer is documented", ids))
        held = True
    else:
        known = [p for p in iv.performers if p.discipline is not None]
        unknown = [p.id for p in iv.performers if p.discipline is None]
        disciplines = {p.discipline for p in known}
        if not known:
            out.append(
                finding(
                    FindingCode.NO_DISCIPLINE,
                    ERR,
                    "no performer has a known discipline (PT, OT or SLP role)",
                    ids,
                )
            )
            held = True
        elif len(disciplines) > 1:
            out.append(
                finding(
                    FindingCode.MIXED_DISCIPLINES,
                    ERR,
                    "performers of different disciplines ("
                    + ", ".join(sorted(str(d) for d in disciplines))
                    + ") on one procedure: document each discipline's part separately",
                    ids,
                )
            )
            held = True
        else:
            discipline = known[0].discipline
            by_therapist = any(not p.assistant for p in known)
            if unknown:
                out.append(
                    finding(
                        FindingCode.NO_DISCIPLINE,
                        ERR,
                        f"{len(unknown)} performer(s) without a discipline (PT, OT or SLP role): "
                        "document their role or remove them from the procedure",
                        ids,
                    )
                )
                held = True
    if discipline is not None and discipline not in entry.disciplines:
        out.append(
            finding(
                FindingCode.DISCIPLINE_MISMATCH,
                ERR,
                f"{code} is not billable under a {discipline} plan of care",
                ids,
            )
        )
        held = True
    if discipline is not None and not by_therapist and not entry.assistant_may_furnish:
        out.append(
            finding(
                FindingCode.ASSISTANT_NOT_PERMITTED,
                ERR,
                f"{code} may not be furnished by an assistant alone",
                ids,
            )
        )
        held = True

    # -- time ---------------------------------------------------------------------------------
    span: Span | None = None
    documented_minutes: int | None = None
    encounter = encounters.get(iv.encounter_id) if iv.encounter_id else None
    if iv.time_error is not None:
        out.append(
            finding(
                FindingCode.TIME_INVALID,
                ERR,
                f"the documented time cannot be read: {iv.time_error}",
                ids,
            )
        )
        held = True
    elif iv.start is not None and iv.end is not None:
        if iv.end < iv.start:
            out.append(
                finding(FindingCode.TIME_INVERTED, ERR, "end time is before start time", ids)
            )
            held = True
        else:
            span = (iv.start, iv.end)
            if day.evaluated_at is not None and iv.end > day.evaluated_at:
                out.append(
                    finding(FindingCode.TIME_IN_FUTURE, ERR, "end time is in the future", ids)
                )
                held = True
            if iv.start.date() != day.service_date:
                out.append(
                    finding(
                        FindingCode.TIME_OFF_SERVICE_DATE,
                        ERR,
                        f"starts on {iv.start.date()}, not on the date of service "
                        f"{day.service_date}",
                        ids,
                    )
                )
                held = True
            if (
                encounter is not None
                and encounter.start is not None
                and encounter.start.date() != iv.start.date()
                and encounter.start <= iv.start
                and (encounter.end is None or iv.end <= encounter.end)
            ):
                out.append(
                    finding(
                        FindingCode.DATE_DIFFERS_FROM_ENCOUNTER,
                        WARN,
                        f"the procedure's local date {iv.start.date()} differs from its "
                        f"encounter's {encounter.start.date()}: check the time zone of the times",
                        ids,
                    )
                )
            if encounter is not None and (
                (encounter.start is not None and iv.start < encounter.start)
                or (encounter.end is not None and iv.end > encounter.end)
            ):
                out.append(
                    finding(
                        FindingCode.TIME_OUTSIDE_ENCOUNTER,
                        ERR,
                        "documented time lies outside the encounter's period",
                        ids,
                    )
                )
                held = True
    elif entry.timed:
        if iv.minutes is not None and iv.minutes >= 0:
            documented_minutes = iv.minutes
            severity = payer.minutes_without_times
            out.append(
                finding(
                    FindingCode.MINUTES_WITHOUT_TIMES,
                    severity,
                    f"{iv.minutes} min documented without start and end times: overlaps and "
                    "separate intervals cannot be verified",
                    ids,
                )
            )
            held = held or severity is ERR
        else:
            out.append(
                finding(
                    FindingCode.TIME_MISSING,
                    ERR,
                    f"{code} is a timed code but start and end times are not both documented",
                    ids,
                )
            )
            held = True
    elif iv.minutes is not None and iv.minutes >= 0:
        documented_minutes = iv.minutes

    # -- group session billed one-on-one ---------------------------------------------------------
    if entry.one_on_one and is_group(iv, rulebook.notes):
        out.append(
            finding(
                FindingCode.GROUP_BILLED_ONE_ON_ONE,
                ERR,
                f"{code} is a one-on-one code but the service was delivered in a group: "
                "bill 97150 instead",
                ids,
            )
        )
        held = True

    # -- supervision --------------------------------------------------------------------------
    if discipline is not None and not by_therapist:
        supervised = encounter is not None and any(
            p.discipline is discipline and not p.assistant for p in encounter.participants
        )
        if not supervised:
            out.append(
                finding(
                    FindingCode.ASSISTANT_UNSUPERVISED,
                    WARN,
                    f"assistant service without a supervising {discipline} therapist on the "
                    "encounter",
                    ids,
                )
            )

    if held or discipline is None:
        return Resolution(service=None, findings=tuple(out), rule_refs=tuple(refs))
    return Resolution(
        service=Service(
            iv=iv,
            code=code,
            entry=entry,
            discipline=discipline,
            by_therapist=by_therapist,
            span=span,
            documented_minutes=documented_minutes,
        ),
        findings=tuple(out),
        rule_refs=tuple(refs),
    )


def overlaps(services: Iterable[Service]) -> tuple[list[Finding], set[str]]:
    """Timed services of one patient overlapping in time.

    Different codes at once: an error on both (the minutes would count twice); both are held.
    The same code at once (two clinicians, or duplicate documentation): counted once, info.
    """
    timed = sorted((s for s in services if s.entry.timed and s.span), key=lambda s: s.id)
    out: list[Finding] = []
    held: set[str] = set()
    for i, a in enumerate(timed):
        for b in timed[i + 1 :]:
            assert a.span is not None and b.span is not None
            secs = overlap_seconds(a.span, b.span)
            if secs <= 0:
                continue
            mins = secs / 60
            if a.code == b.code and a.discipline is b.discipline:
                out.append(
                    finding(
                        FindingCode.SAME_CODE_OVERLAP,
                        INFO,
                        f"two {a.code} records overlap by {mins:g} min: those minutes count once",
                        (a.id, b.id),
                        a.code,
                    )
                )
            else:
                out.append(
                    finding(
                        FindingCode.OVERLAPPING_SERVICES,
                        ERR,
                        f"{a.code} and {b.code} overlap by {mins:g} min; a patient-minute cannot "
                        "be billed twice: correct the times",
                        (a.id, b.id),
                    )
                )
                held |= {a.id, b.id}
    return out, held


def concurrency(services: Iterable[Service], day: ServiceDay, rulebook: Rulebook) -> list[Finding]:
    """The same clinician with another patient at the same time, both in one-on-one codes."""
    out: list[Finding] = []
    for s in sorted(services, key=lambda s: s.id):
        if not s.entry.timed or s.span is None:
            continue
        for busy in day.other_patient_sessions:
            other = rulebook.code(busy.code, day.service_date)
            if busy.clinician_id not in s.performer_ids or other is None or not other.timed:
                continue
            secs = overlap_seconds(s.span, (busy.start, busy.end))
            if secs > 0:
                out.append(
                    finding(
                        FindingCode.CONCURRENT_PATIENTS,
                        WARN,
                        f"clinician {busy.clinician_id} documented one-on-one {busy.code} with "
                        f"another patient for {secs / 60:g} min during this {s.code}",
                        (s.id,),
                        s.code,
                    )
                )
    return out


def note_findings(iv: Intervention, notes: NoteRules) -> list[Finding]:
    """Note missing, or too vague to show skilled care (no technique or no response)."""
    text = iv.note.strip()
    if not text:
        return [
            finding(
                FindingCode.NOTE_MISSING, WARN, "no note: skilled care is not documented", (iv.id,)
            )
        ]
    missing = []
    if len(text.split()) < notes.min_words:
        missing.append(f"fewer than {notes.min_words} words")
    if not _mentions(text, notes.technique_terms):
        missing.append("no technique or intervention described")
    if not _mentions(text, notes.response_terms):
        missing.append("no patient response described")
    if missing:
        return [
            finding(
                FindingCode.NOTE_VAGUE,
                WARN,
                "note may not show skilled care: " + "; ".join(missing),
                (iv.id,),
            )
        ]
    return []


def has_justification(ivs: Iterable[Intervention], notes: NoteRules) -> bool:
    return any(_mentions(iv.note, notes.justification_terms) for iv in ivs)


def is_evaluation(entry: CodeEntry) -> bool:
    return entry.kind in (CodeKind.EVALUATION, CodeKind.REEVALUATION)
