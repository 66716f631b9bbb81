"""The billing office's decisions on a day, as the rules take them (the shell reads them from
its store and passes them in, like the history): lines overridden and holds released. Each
carries who made it, why, and the reference of the stored decision (``review:<id>``), which
the line's ``rule_refs`` and the explanation carry on."""

from __future__ import annotations

from dataclasses import dataclass

from adapter.domain.terms import Discipline, FindingCode

#: the holds a person may release: the administrative clocks, where the proof may sit outside
#: the EMR (a certification on paper, an authorization given by phone). A hold on the
#: documentation itself (times, overlaps, codes, performers) is fixed in the EMR, never here.
RELEASABLE = frozenset({
    FindingCode.PROGRESS_REPORT_MISSING, FindingCode.PLAN_UNCERTIFIED,
    FindingCode.PLAN_CERTIFIED_LATE, FindingCode.AUTHORIZATION_EXCEEDED,
    FindingCode.AUTHORIZATION_MISSING,
})  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class LineOverride:
    """A line's units or modifiers set by a person. The line is the one the rules give with
    ``code``, ``discipline`` and ``modifiers`` (as they computed them); ``units`` at most the
    rules' (an override never bills more than the documentation supports: that is fixed in the
    EMR), 0 leaves the line out; ``new_modifiers`` in place of the rules' (KX is still the
    rules'). ``modifiers`` are the line's before KX (which the rules add after)."""

    code: str
    discipline: Discipline
    modifiers: tuple[str, ...]
    units: int | None = None
    new_modifiers: tuple[str, ...] | None = None
    reason: str
    by: str
    ref: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Release:
    """An administrative hold released: the finding of ``code`` on exactly these
    ``interventions`` (as the person saw it) stays, as a warning naming who released it and
    why, and holds nothing. The same finding on other services (documented later, another
    discipline) is not released."""

    code: FindingCode
    interventions: tuple[str, ...]
    reason: str
    by: str
    ref: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DayReview:
    overrides: tuple[LineOverride, ...] = ()
    releases: tuple[Release, ...] = ()

    def released(self, code: FindingCode, interventions: tuple[str, ...]) -> Release | None:
        """The release of the finding ``code`` on ``interventions`` (all of them released
        together), if any."""
        if code not in RELEASABLE:
            return None
        mine = set(interventions)
        return next((r for r in self.releases if r.code is code and mine
                     and mine <= set(r.interventions)), None)  # fmt: skip
