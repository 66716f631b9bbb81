"""``code_systems.toml``: every spelling of the code systems the adapter reads (OIDs, http and
https, the FHIR examples' URLs), normalised at parse to one canonical URI."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from adapter.errors import MappingError
from adapter.mappings.files import MappingsDir, entries, parse
from adapter.mappings.rows import CodeSystemRow, CodeSystemsFile

NAME = "code_systems.toml"
#: the canonical URI the parser compares with, by name: a site may add aliases, never move these
REQUIRED = {
    "CPT": "http://www.ama-assn.org/go/cpt",
    "HCPCS": "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
    "ICD-10-CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "NUCC": "http://nucc.org/provider-taxonomy",
    "SNOMED-CT": "http://snomed.info/sct",
    "SOPT": "https://nahdo.org/sopt",
}


def alias_key(system: str) -> str:
    """How a system URI is matched: case-insensitive, without surrounding space or a final /."""
    return system.strip().rstrip("/").lower()


def load_code_systems(mappings: MappingsDir) -> Mapping[str, str]:
    """Validate ``code_systems.toml``: (alias key of every spelling) -> canonical URI."""
    file = mappings.file(NAME)
    doc = parse(CodeSystemsFile, mappings.docs[NAME], file, "(file)")
    found: dict[str, str] = {}
    names: dict[str, str] = {}
    for label, row in entries(doc.system, CodeSystemRow, file, "system", lambda e: e.name):
        if row.name in REQUIRED and row.canonical != REQUIRED[row.name]:
            raise MappingError(
                file, label, f"the canonical URI of {row.name} is {REQUIRED[row.name]}"
            )
        names[row.name] = row.canonical
        for spelling in (row.canonical, *row.aliases):
            key = alias_key(spelling)
            if key in found and found[key] != row.canonical:
                raise MappingError(file, label, f"{spelling} is already an alias of {found[key]}")
            found[key] = row.canonical
    missing = sorted(set(REQUIRED) - set(names))
    if missing:
        raise MappingError(file, "(file)", f"no [[system]] for {', '.join(missing)}")
    return MappingProxyType(found)
