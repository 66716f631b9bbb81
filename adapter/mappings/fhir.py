"""``fhir.toml``: the FHIR intake conventions (practitioner roles, coverage types, the default
payer, the codes in scope), together with the ConceptMaps, as the rulebook's ``IntakeRules``."""

from __future__ import annotations

from collections.abc import Container, Mapping
from types import MappingProxyType

from adapter.domain import CoverageRule, IntakeRules, RoleEntry
from adapter.errors import MappingError
from adapter.mappings.code_systems import alias_key, load_code_systems
from adapter.mappings.concept_maps import load_concept_maps
from adapter.mappings.files import MappingsDir, entries, parse
from adapter.mappings.rows import CoverageRow, CoverageTypeRow, FhirFile, RoleRow, ScopeRow

NAME = "fhir.toml"


def load_fhir(mappings: MappingsDir, codes: Container[str], payers: Container[str]) -> IntakeRules:
    """Validate ``code_systems.toml``, then ``fhir.toml`` in the order roles, coverage types,
    ``[coverage]``, ``[scope]``, then read the ConceptMaps. Every system named is stored by its
    canonical URI."""
    systems = load_code_systems(mappings)
    file = mappings.file(NAME)
    doc = parse(FhirFile, mappings.docs[NAME], file, "(file)")
    roles = _roles(doc, file, systems)
    coverage_rules = _coverage_rules(doc, file, payers, systems)
    cov = parse(CoverageRow, doc.coverage, file, "[coverage]")
    if cov.default_payer not in payers:
        raise MappingError(file, "[coverage]", f"payer {cov.default_payer} is unknown")
    scope = parse(ScopeRow, doc.scope, file, "[scope]")
    concept_map = load_concept_maps(mappings, codes)
    return IntakeRules(
        roles=MappingProxyType(roles),
        coverage_rules=coverage_rules,
        default_coverage_payer=cov.default_payer,
        therapy_prefixes=tuple(scope.cpt_prefixes),
        concept_map=MappingProxyType(
            {(_canon(systems, s), c): t for (s, c), t in concept_map.items()}
        ),
        systems=systems,
    )


def _canon(systems: Mapping[str, str], system: str) -> str:
    return systems.get(alias_key(system), system)


def _roles(
    doc: FhirFile, file: str, systems: Mapping[str, str]
) -> dict[tuple[str, str], RoleEntry]:
    """The ``[[role]]`` entries by (canonical system, code), one per role code."""
    roles = {}
    role_rows = entries(doc.role, RoleRow, file, "role", lambda e: f"{e.system}|{e.code}")
    for _label, r in role_rows:
        system = _canon(systems, r.system)
        roles[(system, r.code)] = RoleEntry(
            system=system,
            code=r.code,
            discipline=r.discipline,
            assistant=r.assistant,
            source=r.rule_source(f"fhir:role:{r.code}"),
        )
    return roles


def _coverage_rules(
    doc: FhirFile, file: str, payers: Container[str], systems: Mapping[str, str]
) -> tuple[CoverageRule, ...]:
    """The ``[[coverage_type]]`` entries in file order, each naming a payer of ``payers.toml``."""
    coverage_rules = []
    coverage_rows = entries(
        doc.coverage_type,
        CoverageTypeRow,
        file,
        "coverage_type",
        lambda e: f"{e.system}|{e.prefix}|{e.exact}",
    )
    for label, ct in coverage_rows:
        if ct.payer not in payers:
            raise MappingError(file, label, f"payer {ct.payer} is not in payers.toml")
        coverage_rules.append(
            CoverageRule(
                system=_canon(systems, ct.system),
                prefix=ct.prefix,
                exact=ct.exact,
                payer=ct.payer,
                source=ct.rule_source(f"fhir:coverage:{ct.exact or ct.prefix}"),
            )
        )
    return tuple(coverage_rules)
