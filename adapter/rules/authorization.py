"""Payers' authorizations (``domain.md`` §7; payer practice): a payer authorises a number of
visits and/or units of a discipline (or of one code) within a date range. The counters reset
with the payer profile's benefit year.

For each grant covering the date of service that today's lines fall under (a code's grant for
that code's lines, a discipline's for the discipline's, a grant of neither for every line):
- visits: today is visit ``n``, the earlier days in the window (from the later of the grant's
  start and the benefit year's) that billed a line in its scope, plus one (a day billed under
  other authorizations only does not count against it); beyond the authorised visits it is
  exceeded; of several grants of one scope the day is under the first that still has room;
- units: the window's earlier units under it plus today's; beyond the authorised units it is
  exceeded;
- exceeded: the payer profile's ``authorization`` says what it is: ``allow`` (info), ``warn``
  (a warning) or ``block`` (an error: the lines under the grant are held);
- running out (``clocks.toml [authorization]``): ``visits_left`` or fewer visits left after
  today, fewer than ``units_left`` units, or ``days_left`` days or fewer to its last day: a
  warning for the billing office to ask for more in time.
A line no grant covers today: when a grant for it ended (or starts later), or the profile
requires an authorization, it is ``authorization-missing`` (a warning; the profile's severity
when it is required). Every line under a grant carries its number (``Claim.insurance.preAuthRef``).
The earlier days' units are the shell's history (``ServiceDay.unit_history``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta

from adapter.domain import (
    Authorization,
    ChargeLine,
    Finding,
    FindingCode,
    PayerProfile,
    Rulebook,
    ServiceDay,
    UnitsOnDay,
)
from adapter.rules.findings import ERR, INFO, WARN, finding
from adapter.rules.review import release

_BEYOND = {"allow": INFO, "warn": WARN, "block": ERR}


@dataclass(frozen=True, slots=True)
class _Use:
    """What a grant has used, the day included."""

    since: date
    visit: int  # today's visit number under it
    units: int  # units used, today's included


def authorize(
    lines: Sequence[ChargeLine],
    day: ServiceDay,
    payer: PayerProfile,
    rulebook: Rulebook,
    explanation: list[str],
) -> tuple[list[ChargeLine], list[Finding]]:
    """The lines, each with the numbers of the authorizations it is under (those an exceeded
    or missing authorization blocks left out), and the findings."""
    grants = [g for g in day.authorizations if g.payer in (None, payer.id)]
    if not lines or (not grants and not payer.authorization_required):
        return list(lines), []
    today = day.service_date
    current = sorted((g for g in grants if _covers(g, today)), key=_specific)
    start = benefit_year_start(today, payer.benefit_year_start)
    clock = rulebook.clocks.authorization.source
    ref = f"[{payer.source.ref}" + (f"; {clock.ref}]" if clock else "]")
    findings: list[Finding] = []
    held: set[int] = set()
    chosen: list[Authorization] = []
    # grants of one scope (the same code and discipline) compete: the day is under the first
    # that still has room (the earliest to end); grants of different scopes all apply
    scopes = list(dict.fromkeys((g.code, g.discipline) for g in current))
    for scope in scopes:
        rivals = [g for g in current if (g.code, g.discipline) == scope]
        mine = [i for i, ln in enumerate(lines) if _under(rivals[0], ln)]
        if not mine:
            continue
        today_lines = [lines[i] for i in mine]
        uses = [(g, usage(g, today_lines, day.unit_history, today, start)) for g in rivals]
        grant, use = next(((g, u) for g, u in uses if _room(g, u)), uses[0])
        chosen.append(grant)
        explanation.append(f"Authorization {_describe(grant)}: {_counts(grant, use)} {ref}.")
        judged, _ = release(_judge(grant, use, today_lines, today, payer=payer,
                                   rulebook=rulebook), set(), day.review)  # fmt: skip
        for f in judged:
            findings.append(f)
            if f.severity is ERR:
                held.update(mine)
    out: list[ChargeLine] = []
    for i, ln in enumerate(lines):
        under = [g for g in chosen if _under(g, ln)]
        if not under:
            missing = _missing(ln, grants, today, payer)
            if missing is not None:
                released, _ = release([missing], set(), day.review)
                findings += released
                if released[0].severity is ERR:
                    held.add(i)
        if i not in held:
            out.append(replace(ln, authorization=under[0].number,
                               authorizations=tuple(sorted({g.number for g in under})))
                       if under else ln)  # fmt: skip
    return out, findings


def _room(grant: Authorization, use: _Use) -> bool:
    """Whether the day fits in the grant."""
    return (grant.visits is None or use.visit <= grant.visits) and (
        grant.units is None or use.units <= grant.units
    )


def benefit_year_start(on: date, month_day: tuple[int, int]) -> date:
    """The first day of the benefit year ``on`` is in."""
    month, day = month_day
    this_year = date(on.year, month, day)
    return this_year if this_year <= on else date(on.year - 1, month, day)


def usage(
    grant: Authorization,
    today_lines: Sequence[ChargeLine],
    history: Sequence[UnitsOnDay],
    today: date,
    year_start: date,
) -> _Use:
    """The grant's visits and units used, from the later of its start and the benefit year's
    start up to today (today's lines under it included)."""
    since = max(grant.start or year_start, year_start)
    earlier = [
        u for u in history
        if since <= u.date < today and _matches(grant, u.code, u.discipline)
        # billed under other authorizations only: not this one's (none known then: counted)
        and (not u.authorizations or grant.number in u.authorizations)
    ]  # fmt: skip
    return _Use(
        since=since,
        visit=len({u.date for u in earlier}) + 1,
        units=sum(u.units for u in earlier) + sum(ln.units for ln in today_lines),
    )


def _covers(grant: Authorization, on: date) -> bool:
    return (grant.start is None or grant.start <= on) and (grant.end is None or on <= grant.end)


def _matches(grant: Authorization, code: str, discipline: object) -> bool:
    """Whether a code of a discipline is in the grant's scope (``*``: a code not known, which
    counts: an earlier day is never left out of a count for want of its codes)."""
    return (grant.code is None or code in (grant.code, "*")) and (
        grant.discipline is None or grant.discipline == discipline
    )


def _under(grant: Authorization, line: ChargeLine) -> bool:
    return _matches(grant, line.code, line.discipline)


def _specific(grant: Authorization) -> tuple[bool, bool, date, str, str]:
    """A code's grant before a discipline's before one of neither; then the earliest end."""
    return (grant.code is None, grant.discipline is None, grant.end or date.max, grant.number,
            grant.ref)  # fmt: skip


def _scope(grant: Authorization) -> str:
    if grant.code:
        return f"{grant.code}" + (f" ({grant.discipline})" if grant.discipline else "")
    return f"{grant.discipline} services" if grant.discipline else "therapy services"


def _describe(grant: Authorization) -> str:
    period = f"{grant.start or '…'} to {grant.end or '…'}"
    return f"{grant.number} ({_scope(grant)}, {period}, {grant.ref})"


def _counts(grant: Authorization, use: _Use) -> str:
    parts = []
    if grant.visits is not None:
        parts.append(f"visit {use.visit} of {grant.visits}")
    if grant.units is not None:
        parts.append(f"{use.units} of {grant.units} units used")
    counted = ", ".join(parts) or "no visits or units limited"
    return f"{counted} since {use.since}"


def _judge(
    grant: Authorization,
    use: _Use,
    lines: Sequence[ChargeLine],
    today: date,
    *,
    payer: PayerProfile,
    rulebook: Rulebook,
) -> list[Finding]:
    """Exceeded (the profile's severity), else running out (a warning)."""
    ids = sorted({i for ln in lines for i in ln.intervention_ids})
    beyond = []
    if grant.visits is not None and use.visit > grant.visits:
        beyond.append(f"today is visit {use.visit} of {grant.visits} authorized")
    if grant.units is not None and use.units > grant.units:
        beyond.append(f"{use.units} units used of {grant.units} authorized")
    if beyond:
        severity = _BEYOND[payer.authorization]
        act = {
            ERR: "the lines under it are held until the payer authorizes more",
            WARN: "ask the payer to extend it before billing",
            INFO: f"payer profile {payer.id} allows it",
        }[severity]
        return [finding(FindingCode.AUTHORIZATION_EXCEEDED, severity,
                        f"authorization {grant.number} for {_scope(grant)} is exceeded: "
                        f"{'; '.join(beyond)} since {use.since}; {act}", ids)]  # fmt: skip
    rules = rulebook.clocks.authorization
    if rules.source is None:
        return []
    low = []
    if grant.visits is not None and grant.visits - use.visit <= rules.visits_left:
        left = grant.visits - use.visit
        low.append(f"{left} visit(s) left after today" if left else "today is the last visit")
    if grant.units is not None and grant.units - use.units < rules.units_left:
        low.append(f"{grant.units - use.units} unit(s) left")
    if grant.end is not None and grant.end - today <= timedelta(days=rules.days_left):
        low.append(f"it ends {grant.end} ({(grant.end - today).days} day(s) left)")
    if not low:
        return []
    return [finding(FindingCode.AUTHORIZATION_RUNNING_OUT, WARN,
                    f"authorization {grant.number} for {_scope(grant)} is running out: "
                    f"{'; '.join(low)}; ask the payer to extend it in time", ids)]  # fmt: skip


def _missing(
    line: ChargeLine, grants: Sequence[Authorization], today: date, payer: PayerProfile
) -> Finding | None:
    """A line no grant covers today: one for it ended or starts later (a warning, the
    profile's severity when it requires one), or none at all where the profile requires one."""
    other = sorted((g for g in grants if _under(g, line)), key=lambda g: (g.end or date.max, g.ref))
    if not other and not payer.authorization_required:
        return None
    severity = _BEYOND[payer.authorization] if payer.authorization_required else WARN
    if other:
        g = other[-1]
        when = f"ended {g.end}" if g.end is not None and g.end < today else f"starts {g.start}"
        text = (f"no authorization covers {line.code} ({line.discipline}) on {today}: "
                f"authorization {g.number} for {_scope(g)} {when}")  # fmt: skip
    else:
        text = (f"no authorization on file for {line.code} ({line.discipline}) on {today}, and "
                f"payer profile {payer.id} requires one")  # fmt: skip
    act = {
        ERR: "the line is held until one is on file",
        WARN: "obtain one from the payer before billing",
        INFO: f"payer profile {payer.id} allows billing without one",
    }[severity]
    return finding(FindingCode.AUTHORIZATION_MISSING, severity, f"{text}; {act}",
                   line.intervention_ids, line_code=line.code)  # fmt: skip
