"""The rulebook: ``mappings/`` validated into frozen data (built by ``adapter.mappings``).

Every entry carries its ``RuleSource``: the reference stamped on the lines it produces, the
citation, the confidence and the dates it is in effect.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from adapter.domain.clocks import ClockRules
from adapter.domain.money import MoneyRules
from adapter.domain.source import RuleSource
from adapter.domain.terms import CodeKind, Discipline, KxGroup, Pooling, Severity, UnitMethod

__all__ = [
    "ClockRules",
    "MoneyRules",
    "RuleSource",
]  # re-exported: defined apart so money.py can use them


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeEntry:
    code: str
    descriptor: str
    timed: bool
    kind: CodeKind
    disciplines: frozenset[Discipline]
    assistant_may_furnish: bool
    one_on_one: bool
    source: RuleSource


@dataclass(frozen=True, slots=True, kw_only=True)
class TextMatch:
    phrase: str
    code: str
    source: RuleSource


@dataclass(frozen=True, slots=True, kw_only=True)
class KxThreshold:
    year: int
    amount: Decimal
    source: RuleSource


@dataclass(frozen=True, slots=True, kw_only=True)
class Substitution:
    from_code: str
    to_code: str
    source: RuleSource


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
    kx_groups: Mapping[Discipline, KxGroup]  # the KX group each discipline's spend counts in
    minutes_without_times: Severity
    substitutions: tuple[Substitution, ...]
    bundled: Mapping[str, RuleSource]  # the file's defaults and the payer's own: documented only
    unbundled: Mapping[str, RuleSource]  # default-bundled codes this payer pays (opt-out)
    source: RuleSource
    #: beyond an authorization: "allow" (noted), "warn" or "block" (the lines held)
    authorization: str = "warn"
    authorization_required: bool = False  # services without an authorization are flagged
    benefit_year_start: tuple[int, int] = (1, 1)  # (month, day): the counters start again

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
    source: RuleSource


@dataclass(frozen=True, slots=True, kw_only=True)
class MueEdit:
    code: str
    max_units: int
    adjudication: str
    source: RuleSource


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitThreshold:
    """A review threshold: more than ``max_units`` of ``code`` needs a justification."""

    code: str
    max_units: int
    payers: frozenset[str]  # empty: every payer
    with_codes: frozenset[str]  # non-empty: applies only when one of these is billed too
    source: RuleSource


@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluationLimits:
    per_discipline_per_day: int
    disciplines: frozenset[Discipline]
    exclusive_with_evaluation: frozenset[str]
    source: RuleSource


@dataclass(frozen=True, slots=True, kw_only=True)
class NoteRules:
    """Heuristics for 'note too vague to show skilled care' and 'units justified'."""

    min_words: int
    technique_terms: tuple[str, ...]
    response_terms: tuple[str, ...]
    justification_terms: tuple[str, ...]
    group_terms: tuple[str, ...]
    source: RuleSource


@dataclass(frozen=True, slots=True, kw_only=True)
class ModifierRules:
    """How modifiers go on a line: their order, the distinct-service ones, and the most a line
    holds (``mappings/modifiers.toml``)."""

    order: tuple[str, ...]
    distinct_service: frozenset[str]
    max_per_line: int
    source: RuleSource

    def rank(self, modifier: str) -> tuple[int, str]:
        """Where a modifier goes on a line (one not in ``order`` after all, by name)."""
        return (self.order.index(modifier) if modifier in self.order else len(self.order), modifier)


@dataclass(frozen=True, slots=True, kw_only=True)
class RoleEntry:
    """A practitioner role code and the discipline it means."""

    system: str
    code: str
    discipline: Discipline
    assistant: bool
    source: RuleSource


@dataclass(frozen=True, slots=True, kw_only=True)
class CoverageRule:
    """A Coverage.type coding -> payer profile rule (exact code or prefix)."""

    system: str
    prefix: str | None
    exact: str | None
    payer: str
    source: RuleSource

    def matches(self, system: str | None, code: str | None) -> bool:
        if system != self.system or not isinstance(code, str):
            return False
        return code == self.exact if self.exact is not None else code.startswith(self.prefix or "")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConceptTarget:
    """A local/SNOMED CT code translated to a CPT code by a ConceptMap in mappings/.
    ``suggested``: a looser equivalence (narrower, wider, related-to): billed only as a
    suggestion a person confirms."""

    code: str
    source: RuleSource
    suggested: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class IntakeRules:
    """How FHIR input maps to billing facts (roles, coverage, scope, concept maps)."""

    roles: Mapping[tuple[str, str], RoleEntry]
    coverage_rules: tuple[CoverageRule, ...]
    default_coverage_payer: str
    therapy_prefixes: tuple[str, ...]
    concept_map: Mapping[tuple[str, str], ConceptTarget]
    systems: Mapping[str, str]  # alias key (lower case, no final /) -> canonical system URI

    def canonical(self, system: object) -> str | None:
        """A coding's system as its canonical URI (unknown systems as written)."""
        if not isinstance(system, str):
            return None
        return self.systems.get(system.strip().rstrip("/").lower(), system)

    def in_scope(self, code: str) -> bool:
        return code.startswith(self.therapy_prefixes)


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
    modifiers: ModifierRules
    intake: IntakeRules
    money: MoneyRules = field(default_factory=MoneyRules)
    clocks: ClockRules = field(default_factory=ClockRules)

    def code(self, code: str, on: date) -> CodeEntry | None:
        """The catalog entry for ``code`` in effect on ``on``."""
        return next((e for e in self.codes.get(code, ()) if e.source.in_effect(on)), None)

    def codes_of_kind(
        self, kind: CodeKind, on: date, discipline: Discipline | None = None
    ) -> tuple[str, ...]:
        """The catalog's codes of ``kind`` in effect on ``on`` (for ``discipline``, when given),
        in catalog order."""
        found = [
            code
            for code in self.code_order
            if (e := self.code(code, on)) is not None
            and e.kind is kind
            and (discipline is None or discipline in e.disciplines)
        ]
        return tuple(found)

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
        current = [e for e in edits if e.source.in_effect(on)]
        return max(current, key=lambda e: e.source.effective_from) if current else None

    def mue_edit(self, code: str, on: date) -> MueEdit | None:
        edits = [e for e in self.mue.get(code, ()) if e.source.in_effect(on)]
        return max(edits, key=lambda e: e.source.effective_from) if edits else None

    def order_of(self, code: str) -> int:
        return self.code_order.get(code, len(self.code_order))
