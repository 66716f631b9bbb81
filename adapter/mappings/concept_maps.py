"""FHIR ConceptMaps (``conceptmap-*.json`` in the mappings directory) that translate a site's
local procedure codes to CPT/HCPCS billing codes."""

from __future__ import annotations

import json
from collections.abc import Container, Mapping
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any

from adapter.domain import ConceptTarget, RuleSource
from adapter.errors import MappingError
from adapter.mappings.codes import require_code
from adapter.mappings.files import MappingsDir

CPT_SYSTEM = "http://www.ama-assn.org/go/cpt"
HCPCS_SYSTEM = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
BILLABLE_EQUIVALENCE = frozenset({"equivalent", "equal"})
#: looser equivalences: the target is a suggestion a person must confirm (code-from-text)
SUGGESTED_EQUIVALENCE = frozenset({"wider", "narrower", "relatedto", "inexact", "subsumes",
                                   "specializes"})  # fmt: skip


def load_concept_maps(
    mappings: MappingsDir, codes: Container[str]
) -> Mapping[tuple[str, str], ConceptTarget]:
    """Read every ``conceptmap-*.json`` in name order, adding each to the fingerprint before it is
    read: (source system, local code) -> target. Each target must be a code of ``codes.toml``,
    and no local code may be mapped by two maps."""
    concept_map: dict[tuple[str, str], ConceptTarget] = {}
    for path in sorted(mappings.root.glob("conceptmap-*.json")):
        mappings.fingerprint.add(path.name, path)
        for key, target in read_concept_map(path).items():
            require_code(codes, target.code, str(path), f"element {key[1]}")
            if key in concept_map:
                raise MappingError(str(path), f"element {key[1]}", "already mapped by another map")
            concept_map[key] = target
    return MappingProxyType(concept_map)


def read_concept_map(path: Path) -> dict[tuple[str, str], ConceptTarget]:
    """Read a FHIR ConceptMap (JSON) whose targets are CPT codes.

    Required: ``resourceType`` ConceptMap, ``status`` active, ``date`` (the day it takes effect);
    per group a ``source`` system and the CPT ``target`` system; per target a code, an
    ``equivalence`` of equivalent/equal (billed) or a looser one (narrower, wider, related-to, …:
    billed only as a suggestion a person confirms; unmatched/disjoint are refused) and a
    ``comment`` naming its source.
    """
    file = str(path)
    doc = _read_json(path)
    effective = _effective_date(doc, file)
    out: dict[tuple[str, str], ConceptTarget] = {}
    for g, group in enumerate(doc.get("group") or [], start=1):
        source = _group_source(group, file, f"group #{g}")
        for element in group.get("element") or []:
            code, t = _element_target(element, file, f"group #{g} element {element.get('code')}")
            out[(source, code)] = ConceptTarget(
                code=t["code"],
                suggested=t["equivalence"] in SUGGESTED_EQUIVALENCE,
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


def _read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``, which must be a ConceptMap."""
    file = str(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MappingError(file, "(file)", f"not readable JSON: {err}") from None
    if not isinstance(doc, dict) or doc.get("resourceType") != "ConceptMap":
        raise MappingError(file, "(file)", "resourceType must be ConceptMap")
    return doc


def _effective_date(doc: dict[str, Any], file: str) -> date:
    """The day an active map takes effect (its ``date``, of which only the day counts)."""
    if doc.get("status") != "active":
        raise MappingError(file, "status", "must be active (draft or retired maps do not bill)")
    try:
        return date.fromisoformat(str(doc.get("date", ""))[:10])
    except ValueError:
        raise MappingError(file, "date", "required: the date the map takes effect") from None


def _group_source(group: Any, file: str, where: str) -> str:
    """A group's source system; its target system must be CPT or HCPCS."""
    source: str = group.get("source")
    if not source:
        raise MappingError(file, where, "source system is required")
    if group.get("target") not in (CPT_SYSTEM, HCPCS_SYSTEM):
        raise MappingError(file, where, f"target must be {CPT_SYSTEM} or {HCPCS_SYSTEM}")
    return source


def _element_target(element: Any, file: str, where: str) -> tuple[str, dict[str, Any]]:
    """An element's local code and its one target, which must be billable and cite a source."""
    code: str = element.get("code")
    targets = element.get("target") or []
    if not code or len(targets) != 1:
        raise MappingError(file, where, "needs a code and exactly one target")
    t: dict[str, Any] = targets[0]
    if t.get("equivalence") not in BILLABLE_EQUIVALENCE | SUGGESTED_EQUIVALENCE:
        raise MappingError(
            file, where, f"equivalence {t.get('equivalence')!r} cannot bill: use equivalent"
        )
    if not t.get("code") or not t.get("comment"):
        raise MappingError(file, where, "target needs a code and a comment (its source)")
    return code, t
