"""Load and validate ``mappings/`` into a frozen, versioned ``Rulebook``.

Each file is TOML with a vocabulary comment at its top; every entry carries ``source``,
``confidence`` and ``effective_from`` (and optionally ``effective_to``). Validation is strict:
unknown keys, unknown codes, bad dates or duplicate entries fail with a ``MappingError`` naming
the file, the entry and the reason. CMS quarterly PTP/MUE files listed in ``rulebook.toml`` are
imported as published (see ``adapter.mappings.cms_files``).

The version stamped on every output is ``<manifest version>+<hash of the mapping files>``, so
two outputs with the same version were produced by byte-identical rules.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping
from datetime import date
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from adapter.domain import (
    CodeEntry,
    CodeKind,
    ConceptTarget,
    CoverageRule,
    Discipline,
    EvaluationLimits,
    IntakeRules,
    KxThreshold,
    MueEdit,
    NoteRules,
    PayerProfile,
    Pooling,
    PtpEdit,
    RoleEntry,
    Rulebook,
    RuleSource,
    Severity,
    Substitution,
    TextMatch,
    UnitMethod,
    UnitThreshold,
)
from adapter.errors import MappingError
from adapter.mappings import cms_files


def _default_mappings_dir() -> Path:
    """The repository's mappings/ (source or editable install), else the copy a wheel install
    puts under ``<prefix>/share/therapy-charge-adapter/mappings``."""
    beside = Path(__file__).resolve().parents[2] / "mappings"
    if (beside / "rulebook.toml").is_file():
        return beside
    return Path(sys.prefix) / "share" / "therapy-charge-adapter" / "mappings"


DEFAULT_MAPPINGS_DIR = _default_mappings_dir()
FILES = ("rulebook.toml", "codes.toml", "payers.toml", "ncci_ptp.toml", "limits.toml",
         "documentation.toml", "fhir.toml")  # fmt: skip
CPT_SYSTEM = "http://www.ama-assn.org/go/cpt"
HCPCS_SYSTEM = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
BILLABLE_EQUIVALENCE = frozenset({"equivalent", "equal"})

Code = Annotated[str, Field(pattern=r"^[0-9A-Z][0-9]{3}[0-9A-Z]$")]
Confidence = Literal["HIGH", "MED", "LOW"]


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Annotated[str, Field(min_length=3)]
    confidence: Confidence
    effective_from: date
    effective_to: date | None = None

    @model_validator(mode="after")
    def _dates_in_order(self) -> _Entry:
        if self.effective_to is not None and self.effective_to < self.effective_from:
            raise ValueError("effective_to is before effective_from")
        return self

    def rule_source(self, ref: str) -> RuleSource:
        return RuleSource(
            ref=ref,
            citation=self.source,
            confidence=self.confidence,
            effective_from=self.effective_from,
            effective_to=self.effective_to,
        )


class _Code(_Entry):
    code: Code
    descriptor: Annotated[str, Field(min_length=3)]
    timed: bool
    kind: CodeKind
    disciplines: Annotated[list[Discipline], Field(min_length=1)]
    assistant_may_furnish: bool
    one_on_one: bool

    @model_validator(mode="after")
    def _evaluations_not_by_assistants(self) -> _Code:
        if self.kind in (CodeKind.EVALUATION, CodeKind.REEVALUATION):
            if self.assistant_may_furnish:
                raise ValueError("evaluations are never furnished by assistants")
            if self.timed:
                raise ValueError("evaluations are untimed")
        return self


class _TextMatch(_Entry):
    phrase: Annotated[str, Field(min_length=2)]
    code: Code

    @field_validator("phrase")
    @classmethod
    def _lower(cls, v: str) -> str:
        if v != v.lower().strip():
            raise ValueError("phrase must be lower case without surrounding spaces")
        return v


class _CodesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: list[dict[str, Any]]
    text_match: list[dict[str, Any]] = []


class _Substitution(_Entry):
    from_: Annotated[Code, Field(alias="from")]
    to: Code


class _Bundled(_Entry):
    code: Code


class _KxThreshold(_Entry):
    year: Annotated[int, Field(ge=2000, le=2100)]
    amount: Annotated[Decimal, Field(gt=0)]


class _Payer(_Entry):
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
    minutes_without_times: Literal["error", "warning"] = "error"
    substitution: list[_Substitution] = []
    bundled: list[_Bundled] = []
    kx_threshold: list[_KxThreshold] = []

    @model_validator(mode="after")
    def _consistent(self) -> _Payer:
        expected = {Discipline.PT: "GP", Discipline.OT: "GO", Discipline.SLP: "GN"}
        for d, m in self.discipline_modifiers.items():
            if expected.get(d) != m:
                raise ValueError(f"discipline {d} must carry {expected.get(d)}, not {m}")
        for d, am in self.assistant_modifiers.items():
            if {Discipline.PT: "CQ", Discipline.OT: "CO"}.get(d) != am:
                raise ValueError(f"assistant modifier {am} does not belong to discipline {d}")
        if self.kx and not self.kx_threshold:
            raise ValueError("kx is true but no kx_threshold is listed")
        years = [t.year for t in self.kx_threshold]
        if len(years) != len(set(years)):
            raise ValueError("kx_threshold lists a year twice")
        return self


class _PayersFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payer: list[dict[str, Any]]


class _Pair(_Entry):
    column1: Code
    column2: Code
    modifier_indicator: Literal[0, 1, 9]
    distinct_by: Literal["interval", "region"] = "interval"


class _PairsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pair: list[dict[str, Any]] = []


class _Evaluations(_Entry):
    per_discipline_per_day: Annotated[int, Field(ge=1)]
    disciplines: Annotated[list[Discipline], Field(min_length=1)]
    exclusive_with_evaluation: list[Code]


class _UnitThreshold(_Entry):
    code: Code
    max_units: Annotated[int, Field(ge=1)]
    payers: list[str] = []
    with_codes: list[Code] = []


class _LimitsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    evaluations: dict[str, Any]
    unit_threshold: list[dict[str, Any]] = []


class _Notes(_Entry):
    min_words: Annotated[int, Field(ge=0)]
    technique_terms: Annotated[list[str], Field(min_length=1)]
    response_terms: Annotated[list[str], Field(min_length=1)]
    justification_terms: Annotated[list[str], Field(min_length=1)]
    group_terms: Annotated[list[str], Field(min_length=1)]


class _DocumentationFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    notes: dict[str, Any]


class _Role(_Entry):
    system: Annotated[str, Field(min_length=3)]
    code: Annotated[str, Field(min_length=1)]
    discipline: Discipline
    assistant: bool

    @model_validator(mode="after")
    def _assistants(self) -> _Role:
        if self.assistant and self.discipline not in (Discipline.PT, Discipline.OT):
            raise ValueError("only PT and OT have assistants that bill (CQ/CO)")
        return self


class _CoverageType(_Entry):
    system: Annotated[str, Field(min_length=3)]
    prefix: str | None = None
    exact: str | None = None
    payer: str

    @model_validator(mode="after")
    def _one_matcher(self) -> _CoverageType:
        if (self.prefix is None) == (self.exact is None):
            raise ValueError("give exactly one of prefix or exact")
        return self


class _Scope(_Entry):
    cpt_prefixes: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]


class _Coverage(_Entry):
    default_payer: str


class _FhirFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    coverage: dict[str, Any]
    scope: dict[str, Any]
    role: list[dict[str, Any]]
    coverage_type: list[dict[str, Any]] = []


class _CmsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["ptp", "mue"]
    path: str
    effective_from: date
    effective_to: date | None = None
    source: Annotated[str, Field(min_length=3)]

    @model_validator(mode="after")
    def _dates_in_order(self) -> _CmsFile:
        if self.effective_to is not None and self.effective_to < self.effective_from:
            raise ValueError("effective_to is before effective_from")
        return self


class _Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")]
    cms_file: list[_CmsFile] = []


M = TypeVar("M", bound=BaseModel)


def _reason(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        parts.append(f"{loc}: {e['msg']}" if loc else str(e["msg"]))
    return "; ".join(parts)


def _parse(model: type[M], data: Any, file: str, entry: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise MappingError(file, entry, _reason(err)) from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MappingError(str(path), "(file)", "missing") from None
    except (OSError, UnicodeDecodeError) as err:
        raise MappingError(str(path), "(file)", f"unreadable: {err}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise MappingError(str(path), "(file)", f"not valid TOML: {err}") from None


def _entries(
    raw: Iterable[dict[str, Any]], model: type[M], file: str, table: str, key: Callable[[Any], str]
) -> list[tuple[str, M]]:
    out: list[tuple[str, M]] = []
    for n, item in enumerate(raw, start=1):
        label = f"[[{table}]] #{n}"
        if isinstance(item, dict):
            ident = item.get("code") or item.get("id") or item.get("phrase")
            if ident:
                label += f" ({ident})"
        out.append((label, _parse(model, item, file, label)))
    seen: dict[str, str] = {}
    for label, entry in out:
        k = key(entry)
        if k in seen:
            raise MappingError(file, label, f"duplicate of {seen[k]}")
        seen[k] = label
    return out


def load_rulebook(directory: Path | str | None = None) -> Rulebook:
    """Load, validate and freeze the rulebook in ``directory`` (default: the shipped mappings)."""
    root = Path(directory) if directory is not None else DEFAULT_MAPPINGS_DIR
    if not root.is_dir():
        raise MappingError(str(root), "(directory)", "not a directory")
    digest = hashlib.sha256()
    docs: dict[str, dict[str, Any]] = {}
    for name in FILES:
        path = root / name
        docs[name] = _read_toml(path)
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")

    def f(name: str) -> str:
        return str(root / name)

    manifest = _parse(_Manifest, docs["rulebook.toml"], f("rulebook.toml"), "(manifest)")

    # -- codes --------------------------------------------------------------------------------
    codes_doc = _parse(_CodesFile, docs["codes.toml"], f("codes.toml"), "(file)")

    def overlap_key(e: Any) -> str:
        return f"{e.code}@{e.effective_from}"

    code_rows = _entries(codes_doc.code, _Code, f("codes.toml"), "code", overlap_key)
    codes: dict[str, list[CodeEntry]] = {}
    order: dict[str, int] = {}
    for label, c in code_rows:
        for other in codes.get(c.code, []):
            if _overlaps(other.source, c.effective_from, c.effective_to):
                raise MappingError(f("codes.toml"), label, "effective dates overlap another entry")
        codes.setdefault(c.code, []).append(
            CodeEntry(
                code=c.code,
                descriptor=c.descriptor,
                timed=c.timed,
                kind=c.kind,
                disciplines=frozenset(c.disciplines),
                assistant_may_furnish=c.assistant_may_furnish,
                one_on_one=c.one_on_one,
                source=c.rule_source(f"codes:{c.code}"),
            )
        )
        order.setdefault(c.code, len(order))

    def known(code: str, file: str, label: str) -> None:
        if code not in codes:
            raise MappingError(file, label, f"code {code} is not in codes.toml")

    text_rows = _entries(
        codes_doc.text_match, _TextMatch, f("codes.toml"), "text_match", lambda e: e.phrase
    )
    text_matches = []
    for label, t in text_rows:
        known(t.code, f("codes.toml"), label)
        text_matches.append(
            TextMatch(phrase=t.phrase, code=t.code, source=t.rule_source(f"text:{t.phrase}"))
        )

    # -- payers -------------------------------------------------------------------------------
    payers_doc = _parse(_PayersFile, docs["payers.toml"], f("payers.toml"), "(file)")
    payers: dict[str, PayerProfile] = {}
    for label, p in _entries(payers_doc.payer, _Payer, f("payers.toml"), "payer", lambda e: e.id):
        for s in p.substitution:
            known(s.from_, f("payers.toml"), label)
            known(s.to, f("payers.toml"), label)
        for b in p.bundled:
            known(b.code, f("payers.toml"), label)
        payers[p.id] = PayerProfile(
            id=p.id,
            name=p.name,
            method=p.unit_method,
            pooling=p.timed_pooling,
            discipline_modifiers=MappingProxyType(dict(p.discipline_modifiers)),
            assistant_modifiers=MappingProxyType(dict(p.assistant_modifiers)),
            assistant_special_rules=p.assistant_special_rules,
            distinct_modifier=p.distinct_modifier,
            region_modifier=p.region_modifier,
            kx=p.kx,
            kx_review_amount=p.kx_review_amount,
            kx_thresholds=tuple(
                KxThreshold(
                    year=t.year,
                    amount=t.amount,
                    source=t.rule_source(f"payer:{p.id}:kx:{t.year}"),
                )
                for t in p.kx_threshold
            ),
            minutes_without_times=Severity(p.minutes_without_times),
            substitutions=tuple(
                Substitution(
                    from_code=s.from_,
                    to_code=s.to,
                    source=s.rule_source(f"payer:{p.id}:substitution:{s.from_}"),
                )
                for s in p.substitution
            ),
            bundled=MappingProxyType(
                {b.code: b.rule_source(f"payer:{p.id}:bundled:{b.code}") for b in p.bundled}
            ),
            source=p.rule_source(f"payer:{p.id}"),
        )

    # -- NCCI PTP pairs (curated + imported) ----------------------------------------------------
    pairs_doc = _parse(_PairsFile, docs["ncci_ptp.toml"], f("ncci_ptp.toml"), "(file)")
    ptp: dict[tuple[str, str], list[PtpEdit]] = {}
    pair_rows = _entries(
        pairs_doc.pair,
        _Pair,
        f("ncci_ptp.toml"),
        "pair",
        lambda e: f"{e.column1}/{e.column2}@{e.effective_from}",
    )
    for row_label, pr in pair_rows:
        label = f"{row_label} ({pr.column1}/{pr.column2})"
        known(pr.column1, f("ncci_ptp.toml"), label)
        known(pr.column2, f("ncci_ptp.toml"), label)
        if pr.column1 == pr.column2:
            raise MappingError(f("ncci_ptp.toml"), label, "column1 and column2 are the same code")
        ptp.setdefault((pr.column1, pr.column2), []).append(
            PtpEdit(
                column1=pr.column1,
                column2=pr.column2,
                modifier_indicator=pr.modifier_indicator,
                distinct_by=pr.distinct_by,
                from_cms_file=False,
                source=pr.rule_source(f"ncci:{pr.column1}/{pr.column2}"),
            )
        )

    mue: dict[str, list[MueEdit]] = {}
    for n, cf in enumerate(manifest.cms_file, start=1):
        path = (root / cf.path).resolve()
        label = f"[[cms_file]] #{n} ({cf.path})"
        if not path.is_file():
            raise MappingError(f("rulebook.toml"), label, "file not found")
        digest.update(cf.path.encode() + b"\0" + path.read_bytes() + b"\0")
        if cf.kind == "ptp":
            for edit in cms_files.read_ptp_file(path, source=cf.source):
                ptp.setdefault((edit.column1, edit.column2), []).append(edit)
        else:
            for m in cms_files.read_mue_file(
                path,
                source=cf.source,
                effective_from=cf.effective_from,
                effective_to=cf.effective_to,
            ):
                mue.setdefault(m.code, []).append(m)

    # -- limits ------------------------------------------------------------------------------
    limits_doc = _parse(_LimitsFile, docs["limits.toml"], f("limits.toml"), "(file)")
    ev = _parse(_Evaluations, limits_doc.evaluations, f("limits.toml"), "[evaluations]")
    for code in ev.exclusive_with_evaluation:
        known(code, f("limits.toml"), "[evaluations]")
    evaluation_limits = EvaluationLimits(
        per_discipline_per_day=ev.per_discipline_per_day,
        disciplines=frozenset(ev.disciplines),
        exclusive_with_evaluation=frozenset(ev.exclusive_with_evaluation),
        source=ev.rule_source("limits:evaluations"),
    )
    thresholds = []
    threshold_rows = _entries(
        limits_doc.unit_threshold,
        _UnitThreshold,
        f("limits.toml"),
        "unit_threshold",
        lambda e: f"{e.code}/{sorted(e.payers)}/{sorted(e.with_codes)}@{e.effective_from}",
    )
    for label, ut in threshold_rows:
        known(ut.code, f("limits.toml"), label)
        for code in ut.with_codes:
            known(code, f("limits.toml"), label)
        for pid in ut.payers:
            if pid not in payers:
                raise MappingError(f("limits.toml"), label, f"payer {pid} is not in payers.toml")
        ref = f"limits:unit_threshold:{ut.code}>{ut.max_units}"
        if ut.with_codes:
            ref += "+with:" + ",".join(sorted(ut.with_codes))
        thresholds.append(
            UnitThreshold(
                code=ut.code,
                max_units=ut.max_units,
                payers=frozenset(ut.payers),
                with_codes=frozenset(ut.with_codes),
                source=ut.rule_source(ref),
            )
        )

    # -- documentation heuristics --------------------------------------------------------------
    doc_doc = _parse(
        _DocumentationFile, docs["documentation.toml"], f("documentation.toml"), "(file)"
    )
    nr = _parse(_Notes, doc_doc.notes, f("documentation.toml"), "[notes]")
    notes = NoteRules(
        min_words=nr.min_words,
        technique_terms=tuple(t.lower() for t in nr.technique_terms),
        response_terms=tuple(t.lower() for t in nr.response_terms),
        justification_terms=tuple(t.lower() for t in nr.justification_terms),
        group_terms=tuple(t.lower() for t in nr.group_terms),
        source=nr.rule_source("documentation:notes"),
    )

    # -- FHIR intake conventions and concept maps ---------------------------------------------
    fhir_doc = _parse(_FhirFile, docs["fhir.toml"], f("fhir.toml"), "(file)")
    roles = {}
    role_rows = _entries(
        fhir_doc.role, _Role, f("fhir.toml"), "role", lambda e: f"{e.system}|{e.code}"
    )
    for _label, r in role_rows:
        roles[(r.system, r.code)] = RoleEntry(
            system=r.system,
            code=r.code,
            discipline=r.discipline,
            assistant=r.assistant,
            source=r.rule_source(f"fhir:role:{r.code}"),
        )
    coverage_rules = []
    coverage_rows = _entries(
        fhir_doc.coverage_type,
        _CoverageType,
        f("fhir.toml"),
        "coverage_type",
        lambda e: f"{e.system}|{e.prefix}|{e.exact}",
    )
    for label, ct in coverage_rows:
        if ct.payer not in payers:
            raise MappingError(f("fhir.toml"), label, f"payer {ct.payer} is not in payers.toml")
        coverage_rules.append(
            CoverageRule(
                system=ct.system,
                prefix=ct.prefix,
                exact=ct.exact,
                payer=ct.payer,
                source=ct.rule_source(f"fhir:coverage:{ct.exact or ct.prefix}"),
            )
        )
    cov = _parse(_Coverage, fhir_doc.coverage, f("fhir.toml"), "[coverage]")
    if cov.default_payer not in payers:
        raise MappingError(f("fhir.toml"), "[coverage]", f"payer {cov.default_payer} is unknown")
    scope = _parse(_Scope, fhir_doc.scope, f("fhir.toml"), "[scope]")
    concept_map: dict[tuple[str, str], ConceptTarget] = {}
    for path in sorted(root.glob("conceptmap-*.json")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        for key, target in _read_concept_map(path).items():
            known(target.code, str(path), f"element {key[1]}")
            if key in concept_map:
                raise MappingError(str(path), f"element {key[1]}", "already mapped by another map")
            concept_map[key] = target
    intake = IntakeRules(
        roles=MappingProxyType(roles),
        coverage_rules=tuple(coverage_rules),
        default_coverage_payer=cov.default_payer,
        therapy_prefixes=tuple(scope.cpt_prefixes),
        concept_map=MappingProxyType(concept_map),
    )

    return Rulebook(
        version=f"{manifest.version}+{digest.hexdigest()[:12]}",
        codes=_freeze({k: tuple(v) for k, v in codes.items()}),
        code_order=MappingProxyType(order),
        text_matches=tuple(text_matches),
        payers=MappingProxyType(payers),
        ptp=_freeze({k: tuple(v) for k, v in ptp.items()}),
        mue=_freeze({k: tuple(v) for k, v in mue.items()}),
        unit_thresholds=tuple(thresholds),
        evaluation_limits=evaluation_limits,
        notes=notes,
        intake=intake,
    )


def _read_concept_map(path: Path) -> dict[tuple[str, str], ConceptTarget]:
    """Read a FHIR ConceptMap (JSON) whose targets are CPT codes.

    Required: ``resourceType`` ConceptMap, ``status`` active, ``date`` (the day it takes effect);
    per group a ``source`` system and the CPT ``target`` system; per target a code, an
    ``equivalence`` of equivalent/equal (anything looser cannot bill) and a ``comment`` naming its
    source.
    """
    file = str(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MappingError(file, "(file)", f"not readable JSON: {err}") from None
    if not isinstance(doc, dict) or doc.get("resourceType") != "ConceptMap":
        raise MappingError(file, "(file)", "resourceType must be ConceptMap")
    if doc.get("status") != "active":
        raise MappingError(file, "status", "must be active (draft or retired maps do not bill)")
    try:
        effective = date.fromisoformat(str(doc.get("date", ""))[:10])
    except ValueError:
        raise MappingError(file, "date", "required: the date the map takes effect") from None
    out: dict[tuple[str, str], ConceptTarget] = {}
    for g, group in enumerate(doc.get("group") or [], start=1):
        source, target_system = group.get("source"), group.get("target")
        where = f"group #{g}"
        if not source:
            raise MappingError(file, where, "source system is required")
        if target_system not in (CPT_SYSTEM, HCPCS_SYSTEM):
            raise MappingError(file, where, f"target must be {CPT_SYSTEM} or {HCPCS_SYSTEM}")
        for element in group.get("element") or []:
            code = element.get("code")
            where = f"group #{g} element {code}"
            targets = element.get("target") or []
            if not code or len(targets) != 1:
                raise MappingError(file, where, "needs a code and exactly one target")
            t = targets[0]
            if t.get("equivalence") not in BILLABLE_EQUIVALENCE:
                raise MappingError(
                    file, where, f"equivalence {t.get('equivalence')!r} cannot bill: use equivalent"
                )
            if not t.get("code") or not t.get("comment"):
                raise MappingError(file, where, "target needs a code and a comment (its source)")
            out[(source, code)] = ConceptTarget(
                code=t["code"],
                source=RuleSource(
                    ref=f"conceptmap:{doc.get('id', path.stem)}:{code}",
                    citation=t["comment"],
                    confidence="MED",
                    effective_from=effective,
                ),
            )
    if not out:
        raise MappingError(file, "group", "maps no codes")
    return out


K = TypeVar("K")
V = TypeVar("V")


def _freeze(d: dict[K, V]) -> Mapping[K, V]:
    return MappingProxyType(d)


def _overlaps(p: RuleSource, start: date, end: date | None) -> bool:
    return (p.effective_to is None or start <= p.effective_to) and (
        end is None or p.effective_from <= end
    )
