"""Reading CodeableConcepts: a procedure's code as CPT/HCPCS (directly, by a ConceptMap in
``mappings/``, or suggested by a text match), ICD-10-CM diagnoses, and the text of a concept."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapter.domain import CodeSource, Rulebook
from adapter.fhir import codes
from adapter.fhir.refs import Resource, as_list


def codings(concept: Any) -> list[Resource]:
    """The codings of a CodeableConcept."""
    if not isinstance(concept, dict):
        return []
    return [c for c in as_list(concept.get("coding")) if isinstance(c, dict)]


def coding_keys(value: Any, rulebook: Rulebook) -> list[str]:
    """``system|code`` of every coding of a CodeableConcept (or of a repeating element's
    concepts), the system as ``code_systems.toml`` spells it: the keys ``mappings/`` tables
    use."""
    canonical = rulebook.intake.canonical
    found = concepts(value) if isinstance(value, list) else [value]
    return [f"{canonical(c.get('system'))}|{c.get('code')}" for v in found for c in codings(v)]


def concepts(value: Any) -> list[Resource]:
    """The CodeableConcepts of a repeating element."""
    return [c for c in as_list(value) if isinstance(c, dict)]


def texts(concept: Any) -> list[str]:
    """A concept's ``text`` and its codings' ``display``s."""
    if not isinstance(concept, dict):
        return []
    out = [concept["text"]] if isinstance(concept.get("text"), str) else []
    out += [c["display"] for c in codings(concept) if isinstance(c.get("display"), str)]
    return out


@dataclass(frozen=True, slots=True)
class ResolvedCode:
    """A procedure's billing code, where it came from, and the mapping entry that gave it
    (the ConceptMap element or the text-match phrase; None for a CPT/HCPCS coding)."""

    code: str
    source: CodeSource
    rule_ref: str | None


def resolve_code(procedure: Resource, rulebook: Rulebook) -> ResolvedCode | None:
    """CPT/HCPCS coding first, then a ConceptMap translation, then a text match (suggestion)."""
    concept = procedure.get("code")
    found = codings(concept)
    canonical = rulebook.intake.canonical
    for c in found:
        if canonical(c.get("system")) in (codes.CPT, codes.HCPCS) and isinstance(
            c.get("code"), str
        ):
            return ResolvedCode(
                code=c["code"].strip().upper(), source=CodeSource.CPT, rule_ref=None
            )
    for c in found:
        key = (str(canonical(c.get("system"))), str(c.get("code")))
        target = rulebook.intake.concept_map.get(key)
        if target is not None:
            source = CodeSource.SUGGESTED if target.suggested else CodeSource.CONCEPT_MAP
            return ResolvedCode(code=target.code, source=source, rule_ref=target.source.ref)
    lowered = [t.lower() for t in texts(concept)]
    for match in sorted(rulebook.text_matches, key=lambda m: (-len(m.phrase), m.phrase)):
        if any(match.phrase in t for t in lowered):
            return ResolvedCode(code=match.code, source=CodeSource.TEXT, rule_ref=match.source.ref)
    return None


def documented_code(procedure: Resource) -> str | None:
    """The procedure's first coding as ``system|code`` (for a finding about a code no mapping
    translates); None when it has none."""
    for c in codings(procedure.get("code")):
        if isinstance(c.get("code"), str):
            return f"{c.get('system') or '(no system)'}|{c['code']}"
    return None


def is_therapy(code: ResolvedCode | None, rulebook: Rulebook) -> bool:
    """A code of the catalog, or inside the therapy ranges of ``mappings/fhir.toml``."""
    return code is not None and (code.code in rulebook.codes or rulebook.intake.in_scope(code.code))


def has_diagnosis(resource: Resource, rulebook: Rulebook, *fields: str) -> bool:
    """Whether any of ``fields`` documents a diagnosis (an ICD-10-CM ``reasonCode``, however its
    system is spelled, or any entry of a reference list such as ``reasonReference`` or
    ``diagnosis``)."""
    canonical = rulebook.intake.canonical
    for name in fields:
        value = resource.get(name)
        if name == "reasonCode":
            if any(
                canonical(c.get("system")) == codes.ICD10CM
                for rc in concepts(value)
                for c in codings(rc)
            ):
                return True
        elif isinstance(value, list) and value:
            return True
    return False


def icd_codings(resource: Resource, rulebook: Rulebook) -> list[Resource]:
    """ICD-10-CM codings on a resource's reasonCode, with the canonical system."""
    canonical = rulebook.intake.canonical
    return [
        {
            "system": codes.ICD10CM,
            "code": c["code"],
            **({"display": c["display"]} if "display" in c else {}),
        }
        for rc in concepts(resource.get("reasonCode"))
        for c in codings(rc)
        if canonical(c.get("system")) == codes.ICD10CM and isinstance(c.get("code"), str)
    ]
