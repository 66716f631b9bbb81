"""The working types of one evaluation: a resolved service, and the tally of one discipline + code.

``tally`` groups the day's services per (discipline, code) and counts their minutes; ``CodeOrder``
gives the configured order of the tallies and their names in the explanation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from adapter.domain import (
    CodeEntry,
    CodeMinutes,
    Discipline,
    Intervention,
    PayerProfile,
    Pooling,
    Rulebook,
)
from adapter.rules import timeline
from adapter.rules.timeline import Span

Key = tuple[Discipline, str]
DISCIPLINE_ORDER = {d: n for n, d in enumerate(Discipline)}


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedService:
    """A documented intervention that passed the per-intervention checks (``resolve``)."""

    iv: Intervention
    code: str  # after payer substitution
    entry: CodeEntry
    discipline: Discipline
    by_therapist: bool  # a therapist (not only an assistant) performed it
    span: Span | None
    documented_minutes: int | None  # minutes documented without a span

    @property
    def id(self) -> str:
        """The intervention's id."""
        return self.iv.id

    @property
    def performer_ids(self) -> frozenset[str]:
        """The ids of its performers."""
        return frozenset(p.id for p in self.iv.performers)


@dataclass(slots=True)
class CodeTally:
    """Working state for one discipline + code on the day (mutated by units, edits and lines)."""

    key: Key
    services: list[ResolvedService]
    timed: bool
    minutes: int = 0
    therapist_minutes: int = 0
    assistant_minutes: int = 0
    assistant_minutes_unknown: bool = False
    units: int = 0
    zero_reason: str = "under 8 min"
    unit_reason: str = ""
    dropped: bool = False
    modifiers: set[str] = field(default_factory=set)
    refs: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def code(self) -> str:
        """The code (after payer substitution)."""
        return self.key[1]

    @property
    def discipline(self) -> Discipline:
        """The plan of care the code is billed under."""
        return self.key[0]

    @property
    def ids(self) -> tuple[str, ...]:
        """The ids of its interventions, sorted."""
        return tuple(sorted(s.id for s in self.services))

    @property
    def billed(self) -> bool:
        """It has units and no edit dropped it."""
        return self.units > 0 and not self.dropped


Tallies = dict[Key, CodeTally]


@dataclass(frozen=True, slots=True)
class CodeOrder:
    """The configured order of codes (then discipline) and how a tally is named in the text."""

    rulebook: Rulebook
    payer: PayerProfile

    def rank(self, key: Key) -> tuple[int, str]:
        """Rank by the rulebook's code order, then the discipline (the tie-break of CMS units)."""
        return (self.rulebook.order_of(key[1]) * 10 + DISCIPLINE_ORDER[key[0]], key[1])

    def label(self, key: Key) -> str:
        """The code, with its discipline when the payer pools the disciplines' minutes."""
        return key[1] if self.payer.pooling is not Pooling.POOLED else f"{key[1]} ({key[0]})"

    def ranked(self, tallies: Iterable[CodeTally]) -> list[CodeTally]:
        """The tallies in rank order (the order of lines, minutes and findings by code)."""
        return sorted(tallies, key=lambda c: self.rank(c.key))


def tally(services: Iterable[ResolvedService], rule_refs: Mapping[str, tuple[str, ...]]) -> Tallies:
    """Group the services per (discipline, code), count the minutes, collect the code refs."""
    codes: Tallies = {}
    for s in services:
        key = (s.discipline, s.code)
        if key not in codes:
            codes[key] = CodeTally(key=key, services=[], timed=s.entry.timed)
        codes[key].services.append(s)
    for c in codes.values():
        count_minutes(c)
        c.refs += sorted({r for s in c.services for r in rule_refs[s.id]})
    return codes


def count_minutes(c: CodeTally) -> None:
    """Minutes of one code: sessions add up, overlapping records count once.

    Time a therapist and an assistant spend together counts as the therapist's; the assistant's
    minutes are only those furnished independently (for CQ/CO).
    """
    spans = [s.span for s in c.services if s.span]
    th_spans = [s.span for s in c.services if s.span and s.by_therapist]
    as_spans = timeline.subtract([s.span for s in c.services if s.span and not s.by_therapist],
                                 th_spans)  # fmt: skip
    documented_th = sum(s.documented_minutes or 0 for s in c.services if s.by_therapist)
    documented_as = sum(s.documented_minutes or 0 for s in c.services if not s.by_therapist)
    c.minutes = timeline.minutes(spans) + documented_th + documented_as
    c.assistant_minutes = timeline.minutes(as_spans) + documented_as
    c.therapist_minutes = c.minutes - c.assistant_minutes
    c.assistant_minutes_unknown = any(
        not s.by_therapist and s.span is None and s.documented_minutes is None for s in c.services
    )


def billed_by_code(codes: Tallies) -> dict[str, list[CodeTally]]:
    """The billed tallies per code (one per discipline that bills it)."""
    by_code: dict[str, list[CodeTally]] = defaultdict(list)
    for c in codes.values():
        if c.billed:
            by_code[c.code].append(c)
    return by_code


def code_minutes(codes: Tallies, order: CodeOrder) -> tuple[CodeMinutes, ...]:
    """The minutes and billed units of every tally, in rank order (the decision's ``minutes``)."""
    return tuple(
        CodeMinutes(
            discipline=c.discipline,
            code=c.code,
            timed=c.timed,
            minutes=c.minutes,
            units=c.units if not c.dropped else 0,
            intervention_ids=c.ids,
        )
        for c in order.ranked(codes.values())
    )
