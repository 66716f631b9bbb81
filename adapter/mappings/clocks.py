"""``clocks.toml``: the compliance clocks' data (progress report types and counts, plans of
care, authorizations)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from adapter.domain import Discipline
from adapter.domain.clocks import (
    AuthorizationRules,
    CertificationRules,
    ClockRules,
    ProgressRules,
)
from adapter.errors import MappingError
from adapter.mappings.files import MappingsDir, entries, parse
from adapter.mappings.rows import EntryRow

CLOCKS = "clocks.toml"


class _Type(EntryRow):
    system: str = Field(min_length=3)
    code: str = Field(min_length=1)
    discipline: Literal["PT", "OT", "SLP", ""]


class _Progress(EntryRow):
    warn_from: int = Field(ge=1, le=30)
    error_from: int = Field(ge=2, le=31)
    type: list[dict[str, object]] = Field(default_factory=list)


class _Category(EntryRow):
    system: str = Field(min_length=3)
    code: str = Field(min_length=1)
    discipline: Literal["PT", "OT", "SLP"]


class _Certification(EntryRow):
    convention: Literal["author", "provenance", "off"]
    days_to_certify: int = Field(ge=1, le=90)
    max_days: int = Field(ge=1, le=366)
    category: list[dict[str, object]] = Field(default_factory=list)


class _Authorization(EntryRow):
    visits_left: int = Field(ge=0, le=100)
    units_left: int = Field(ge=0, le=1000)
    days_left: int = Field(ge=0, le=366)
    visit_units: list[str] = Field(default_factory=list)
    discipline: list[dict[str, object]] = Field(default_factory=list)


class _ClocksFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    progress_report: dict[str, object] | None = None
    certification: dict[str, object] | None = None
    authorization: dict[str, object] | None = None


def load_clocks(mappings: MappingsDir) -> ClockRules:
    if CLOCKS not in mappings.docs:
        return ClockRules()
    file = mappings.file(CLOCKS)
    doc = parse(_ClocksFile, mappings.docs[CLOCKS], file, "(file)")
    return ClockRules(
        certification=_certification(doc, file),
        progress=_progress(doc, file),
        authorization=_authorization(doc, file),
    )


def _authorization(doc: _ClocksFile, file: str) -> AuthorizationRules:
    """``[authorization]``; no table: authorizations are read, never warned about running
    out (their numbers still reach the claim, and a payer profile still judges exceeding)."""
    if doc.authorization is None:
        return AuthorizationRules()
    auth = parse(_Authorization, doc.authorization, file, "[authorization]")
    kinds = entries(auth.discipline, _Category, file, "authorization.discipline",
                    lambda c: f"{c.system}|{c.code}")  # fmt: skip
    return AuthorizationRules(
        disciplines={f"{c.system}|{c.code}": Discipline(c.discipline) for _, c in kinds},
        visit_units=frozenset(u.strip().lower() for u in auth.visit_units if u.strip()),
        visits_left=auth.visits_left,
        units_left=auth.units_left,
        days_left=auth.days_left,
        source=auth.rule_source("clocks:authorization"),
    )


def _certification(doc: _ClocksFile, file: str) -> CertificationRules:
    """``[certification]``; ``convention = "off"`` (a site that does not record certification
    in FHIR) or no table: the clock is not kept."""
    if doc.certification is None:
        return CertificationRules(convention="off")
    cert = parse(_Certification, doc.certification, file, "[certification]")
    if cert.convention == "off":
        return CertificationRules(convention="off")
    cats = entries(cert.category, _Category, file, "certification.category",
                   lambda c: f"{c.system}|{c.code}")  # fmt: skip
    return CertificationRules(
        convention=cert.convention,
        categories={f"{c.system}|{c.code}": Discipline(c.discipline) for _, c in cats},
        days_to_certify=cert.days_to_certify,
        max_days=cert.max_days,
        source=cert.rule_source("clocks:certification"),
    )


def _progress(doc: _ClocksFile, file: str) -> ProgressRules:
    """``[progress_report]``; no table: the clock is not kept."""
    if doc.progress_report is None:
        return ProgressRules()
    progress = parse(_Progress, doc.progress_report, file, "[progress_report]")
    if progress.error_from <= progress.warn_from:
        raise MappingError(file, "[progress_report]", "error_from must be after warn_from")
    types = entries(progress.type, _Type, file, "progress_report.type",
                    lambda t: f"{t.system}|{t.code}")  # fmt: skip
    return ProgressRules(
        types={
            f"{t.system}|{t.code}": Discipline(t.discipline) if t.discipline else None
            for _, t in types
        },
        warn_from=progress.warn_from,
        error_from=progress.error_from,
        source=progress.rule_source("clocks:progress-report"),
    )
