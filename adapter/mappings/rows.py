"""The shape of every mapping file and of every entry in it, as strict pydantic models.

A ``...File`` model checks a TOML file's top-level tables (unknown keys fail) and leaves each entry
as a plain table; a ``...Row`` model validates one entry (``[[code]]``, ``[[payer]]``, ...) and is
parsed one at a time by ``adapter.mappings.files.entries``, so an error names the entry it is in.
Every row is an ``EntryRow``: it carries ``source``, ``confidence`` and ``effective_from`` (and
optionally ``effective_to``), which become its ``RuleSource``.

Four models are validated *inside* another (``_Substitution``, ``_Bundled`` and ``_KxThreshold``
inside ``PayerRow``, ``_CmsFile`` inside ``Manifest``): pydantic puts their class names in its error
text ("Input should be a valid dictionary or instance of _Substitution"), which becomes the reason
of the ``MappingError``, so those four keep their names.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from adapter.domain import CodeKind, Discipline, KxGroup, Pooling, RuleSource, UnitMethod

Code = Annotated[str, Field(pattern=r"^[0-9A-Z][0-9]{3}[0-9A-Z]$")]
Confidence = Literal["HIGH", "MED", "LOW"]


class EntryRow(BaseModel):
    """What every entry carries: its source, its confidence and the dates it is in effect."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Annotated[str, Field(min_length=3)]
    confidence: Confidence
    effective_from: date
    effective_to: date | None = None

    @model_validator(mode="after")
    def _dates_in_order(self) -> EntryRow:
        """An entry cannot end before it starts."""
        if self.effective_to is not None and self.effective_to < self.effective_from:
            raise ValueError("effective_to is before effective_from")
        return self

    def rule_source(self, ref: str) -> RuleSource:
        """The entry's ``RuleSource``, stamped ``ref`` on the lines it produces."""
        return RuleSource(
            ref=ref,
            citation=self.source,
            confidence=self.confidence,
            effective_from=self.effective_from,
            effective_to=self.effective_to,
        )


# -- codes.toml -------------------------------------------------------------------------------


class CodeRow(EntryRow):
    """A ``[[code]]``: one CPT/HCPCS code and how it bills."""

    code: Code
    descriptor: Annotated[str, Field(min_length=3)]
    timed: bool
    kind: CodeKind
    disciplines: Annotated[list[Discipline], Field(min_length=1)]
    assistant_may_furnish: bool
    one_on_one: bool

    @model_validator(mode="after")
    def _evaluations_not_by_assistants(self) -> CodeRow:
        """Evaluations and re-evaluations are untimed and never furnished by an assistant."""
        if self.kind in (CodeKind.EVALUATION, CodeKind.REEVALUATION):
            if self.assistant_may_furnish:
                raise ValueError("evaluations are never furnished by assistants")
            if self.timed:
                raise ValueError("evaluations are untimed")
        return self


class TextMatchRow(EntryRow):
    """A ``[[text_match]]``: a lower-case phrase that names a code."""

    phrase: Annotated[str, Field(min_length=2)]
    code: Code

    @field_validator("phrase")
    @classmethod
    def _lower(cls, v: str) -> str:
        """Phrases are matched in lower case, so they are written in lower case."""
        if v != v.lower().strip():
            raise ValueError("phrase must be lower case without surrounding spaces")
        return v


class CodesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: list[dict[str, Any]]
    text_match: list[dict[str, Any]] = []


# -- payers.toml ------------------------------------------------------------------------------


class _Substitution(EntryRow):
    """A ``[[payer.substitution]]``: the payer wants ``to`` billed instead of ``from``."""

    from_: Annotated[Code, Field(alias="from")]
    to: Code


class _Bundled(EntryRow):
    """A ``[[payer.bundled]]``: a code the payer never pays separately; or a
    ``[[payer.unbundled]]``: a code bundled by default (``[[bundled]]``) that the payer pays."""

    code: Code


class _KxThreshold(EntryRow):
    """A ``[[payer.kx_threshold]]``: the year's therapy amount above which KX is needed."""

    year: Annotated[int, Field(ge=2000, le=2100)]
    amount: Annotated[Decimal, Field(gt=0)]


class PayerRow(EntryRow):
    """A ``[[payer]]``: a payer profile (unit method, modifiers, KX) with its nested tables."""

    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]
    name: str
    unit_method: UnitMethod
    timed_pooling: Pooling = Pooling.PER_DISCIPLINE
    discipline_modifiers: dict[Discipline, Literal["GP", "GO", "GN"]]
    assistant_modifiers: dict[Discipline, Literal["CQ", "CO"]]
    assistant_special_rules: bool
    distinct_modifier: Literal["XU", "59"]
    region_modifier: Literal["XS", "59"]
    kx: bool
    kx_review_amount: Annotated[Decimal, Field(gt=0)] | None = None
    kx_groups: dict[Discipline, KxGroup] = {}
    minutes_without_times: Literal["error", "warning"] = "error"
    authorization: Literal["allow", "warn", "block"] = "warn"
    authorization_required: bool = False
    benefit_year_start: Annotated[str, Field(pattern=r"^[0-9]{2}-[0-9]{2}$")] = "01-01"  # MM-DD
    substitution: list[_Substitution] = []
    bundled: list[_Bundled] = []
    unbundled: list[_Bundled] = []
    kx_threshold: list[_KxThreshold] = []

    @model_validator(mode="after")
    def _consistent(self) -> PayerRow:
        """Each modifier belongs to its discipline; KX needs one threshold per year listed."""
        expected = {Discipline.PT: "GP", Discipline.OT: "GO", Discipline.SLP: "GN"}
        for d, m in self.discipline_modifiers.items():
            if expected.get(d) != m:
                raise ValueError(f"discipline {d} must carry {expected.get(d)}, not {m}")
        for d, am in self.assistant_modifiers.items():
            if {Discipline.PT: "CQ", Discipline.OT: "CO"}.get(d) != am:
                raise ValueError(f"assistant modifier {am} does not belong to discipline {d}")
        if self.kx and not self.kx_threshold:
            raise ValueError("kx is true but no kx_threshold is listed")
        if self.kx and not self.kx_groups:
            raise ValueError("kx is true but no kx_groups are listed")
        years = [t.year for t in self.kx_threshold]
        if len(years) != len(set(years)):
            raise ValueError("kx_threshold lists a year twice")
        month, day = (int(part) for part in self.benefit_year_start.split("-"))
        try:
            date(2001, month, day)  # a day of every year (not 02-29)
        except ValueError:
            raise ValueError(
                f"benefit_year_start {self.benefit_year_start!r} is not a day of every year"
            ) from None
        both = sorted({b.code for b in self.bundled} & {u.code for u in self.unbundled})
        if both:
            raise ValueError(f"{', '.join(both)} is both bundled and unbundled")
        return self


class BundledRow(EntryRow):
    """A top-level ``[[bundled]]``: a code bundled for every payer profile by default."""

    code: Code


class PayersFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bundled: list[dict[str, Any]] = []
    payer: list[dict[str, Any]]


# -- ncci_ptp.toml ----------------------------------------------------------------------------


class PairRow(EntryRow):
    """A ``[[pair]]``: a curated NCCI procedure-to-procedure edit."""

    column1: Code
    column2: Code
    modifier_indicator: Literal[0, 1, 9]
    distinct_by: Literal["interval", "region"] = "interval"


class PairsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pair: list[dict[str, Any]] = []


# -- limits.toml ------------------------------------------------------------------------------


class EvaluationsRow(EntryRow):
    """The ``[evaluations]`` table: how many evaluations a day, and what they exclude."""

    per_discipline_per_day: Annotated[int, Field(ge=1)]
    disciplines: Annotated[list[Discipline], Field(min_length=1)]
    exclusive_with_evaluation: list[Code]


class UnitThresholdRow(EntryRow):
    """A ``[[unit_threshold]]``: a review threshold on the units of one code."""

    code: Code
    max_units: Annotated[int, Field(ge=1)]
    payers: list[str] = []
    with_codes: list[Code] = []


class LimitsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    evaluations: dict[str, Any]
    unit_threshold: list[dict[str, Any]] = []


# -- documentation.toml -----------------------------------------------------------------------


class NotesRow(EntryRow):
    """The ``[notes]`` table: the documentation heuristics' word count and term lists."""

    min_words: Annotated[int, Field(ge=0)]
    technique_terms: Annotated[list[str], Field(min_length=1)]
    response_terms: Annotated[list[str], Field(min_length=1)]
    justification_terms: Annotated[list[str], Field(min_length=1)]
    group_terms: Annotated[list[str], Field(min_length=1)]


class DocumentationFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    notes: dict[str, Any]


# -- modifiers.toml ----------------------------------------------------------------------------

Modifier = Annotated[str, Field(pattern=r"^[0-9A-Z]{2}$")]


class ModifierLineRow(EntryRow):
    """The ``[line]`` table: modifier order, distinct-service modifiers, modifiers a line holds."""

    order: Annotated[list[Modifier], Field(min_length=1)]
    distinct_service: list[Modifier]
    max_per_line: Annotated[int, Field(ge=1, le=4)]

    @model_validator(mode="after")
    def _consistent(self) -> ModifierLineRow:
        """``order`` lists each modifier once and every distinct-service modifier."""
        if len(set(self.order)) != len(self.order):
            raise ValueError("order lists a modifier twice")
        missing = sorted(set(self.distinct_service) - set(self.order))
        if missing:
            raise ValueError(f"distinct_service {', '.join(missing)} not in order")
        return self


class ModifiersFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    line: dict[str, Any]


# -- code_systems.toml -------------------------------------------------------------------------


class CodeSystemRow(EntryRow):
    """A ``[[system]]``: a code system's canonical URI and its other spellings."""

    name: Annotated[str, Field(pattern=r"^[A-Z][A-Za-z0-9-]*$")]
    canonical: Annotated[str, Field(pattern=r"^(https?://|urn:oid:)\S+$")]
    aliases: list[Annotated[str, Field(pattern=r"^(https?://|urn:oid:)\S+$")]] = []


class CodeSystemsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    system: list[dict[str, Any]]


# -- fhir.toml --------------------------------------------------------------------------------


class RoleRow(EntryRow):
    """A ``[[role]]``: a practitioner role code and the discipline it furnishes."""

    system: Annotated[str, Field(min_length=3)]
    code: Annotated[str, Field(min_length=1)]
    discipline: Discipline
    assistant: bool

    @model_validator(mode="after")
    def _assistants(self) -> RoleRow:
        """Only PT and OT assistants bill (with CQ/CO)."""
        if self.assistant and self.discipline not in (Discipline.PT, Discipline.OT):
            raise ValueError("only PT and OT have assistants that bill (CQ/CO)")
        return self


class CoverageTypeRow(EntryRow):
    """A ``[[coverage_type]]``: a Coverage.type code (by prefix or exactly) and its payer."""

    system: Annotated[str, Field(min_length=3)]
    prefix: str | None = None
    exact: str | None = None
    payer: str

    @model_validator(mode="after")
    def _one_matcher(self) -> CoverageTypeRow:
        """A coverage type matches by prefix or exactly, not both."""
        if (self.prefix is None) == (self.exact is None):
            raise ValueError("give exactly one of prefix or exact")
        return self


class ScopeRow(EntryRow):
    """The ``[scope]`` table: the CPT prefixes the adapter bills."""

    cpt_prefixes: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]


class CoverageRow(EntryRow):
    """The ``[coverage]`` table: the payer of a coverage no rule matches."""

    default_payer: str


class FhirFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    coverage: dict[str, Any]
    scope: dict[str, Any]
    role: list[dict[str, Any]]
    coverage_type: list[dict[str, Any]] = []


# -- rulebook.toml ----------------------------------------------------------------------------


class _CmsFile(BaseModel):
    """A ``[[cms_file]]``: a CMS quarterly PTP or MUE file to import, and the quarter it is for."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["ptp", "mue"]
    path: str
    effective_from: date
    effective_to: date | None = None
    source: Annotated[str, Field(min_length=3)]

    @model_validator(mode="after")
    def _dates_in_order(self) -> _CmsFile:
        """The quarter cannot end before it starts."""
        if self.effective_to is not None and self.effective_to < self.effective_from:
            raise ValueError("effective_to is before effective_from")
        return self


class Manifest(BaseModel):
    """``rulebook.toml``: the rulebook's version name and the CMS files it imports."""

    model_config = ConfigDict(extra="forbid")
    version: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")]
    cms_file: list[_CmsFile] = []
