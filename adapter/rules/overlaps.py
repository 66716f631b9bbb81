"""Time conflicts on the day: a patient's timed services overlapping each other, and a clinician
with another patient at the same time (pure)."""

from __future__ import annotations

from collections.abc import Iterable

from adapter.domain import Finding, FindingCode, Rulebook, ServiceDay
from adapter.rules.findings import ERR, INFO, WARN, finding
from adapter.rules.tally import ResolvedService
from adapter.rules.timeline import overlap_seconds


def overlaps(services: Iterable[ResolvedService]) -> tuple[list[Finding], set[str]]:
    """Timed services of one patient overlapping in time, and the ids held for it.

    Different codes at once: an error on both (the minutes would count twice); both are held.
    The same code at once counts once (the union of the minutes): by two clinicians treating
    together, info; by the same clinician (duplicate documentation), a warning to fix the note.
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
            f = overlap_finding(a, b, secs / 60)
            out.append(f)
            if f.code is FindingCode.OVERLAPPING_SERVICES:
                held |= {a.id, b.id}
    return out, held


def overlap_finding(a: ResolvedService, b: ResolvedService, mins: float) -> Finding:
    """Same code and discipline: the minutes count once; else an error that holds both.

    domain.md §5: the same clinician documenting one code twice over overlapping times is a
    warning asking to fix the note (a clinician on both records). Different clinicians on one
    code at once (PT and PTA, two PTs) are one patient-minute per minute (§1, MCPM §20.3) and,
    for CQ/CO, time together is the therapist's (§3): nothing to fix, info.
    """
    if a.code == b.code and a.discipline is b.discipline:
        same = sorted(a.performer_ids & b.performer_ids)
        if same:
            return finding(
                FindingCode.SAME_CODE_OVERLAP,
                WARN,
                f"{', '.join(same)} documented {a.code} twice over overlapping times "
                f"({mins:g} min overlap): those minutes count once; fix the note so that each "
                "minute is documented once",
                (a.id, b.id),
                a.code,
            )
        return finding(
            FindingCode.SAME_CODE_OVERLAP,
            INFO,
            f"two {a.code} records overlap by {mins:g} min: those minutes count once",
            (a.id, b.id),
            a.code,
        )
    return finding(
        FindingCode.OVERLAPPING_SERVICES,
        ERR,
        f"{a.code} and {b.code} overlap by {mins:g} min; a patient-minute cannot "
        "be billed twice: correct the times",
        (a.id, b.id),
    )


def concurrency(
    services: Iterable[ResolvedService], day: ServiceDay, rulebook: Rulebook
) -> list[Finding]:
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
