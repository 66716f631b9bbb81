"""Load and validate ``mappings/`` into a frozen, versioned ``Rulebook``.

Each file is TOML with a vocabulary comment at its top; every entry carries ``source``,
``confidence`` and ``effective_from`` (and optionally ``effective_to``). Validation is strict:
unknown keys, unknown codes, bad dates or duplicate entries fail with a ``MappingError`` naming
the file, the entry and the reason. CMS quarterly PTP/MUE files listed in ``rulebook.toml`` are
imported as published (see ``adapter.mappings.cms_files``).

The version stamped on every output is ``<manifest version>+<hash of the mapping files>``, so
two outputs with the same version were produced by byte-identical rules.

The modules, one job each:

* ``files``: reading the directory's TOML files and fingerprinting their bytes; validating a
  table or an array of tables into rows, and the ``MappingError`` text when one fails
* ``rows``: the pydantic models of every file and entry
* one loader per file, called by ``load_rulebook`` in this order (the first error found is the
  one reported): ``codes``, ``payers``, ``ncci`` (``ncci_ptp.toml`` and the CMS files of the
  manifest), ``limits``, ``documentation``, ``modifiers``, ``fhir`` (with the ConceptMaps of
  ``concept_maps``)
* ``cms_files``: the importers for CMS's quarterly PTP and MUE files
"""

from __future__ import annotations

import sys
from pathlib import Path

from adapter.domain import Rulebook
from adapter.mappings.clocks import load_clocks
from adapter.mappings.codes import load_codes
from adapter.mappings.concept_maps import CPT_SYSTEM, HCPCS_SYSTEM
from adapter.mappings.documentation import load_documentation
from adapter.mappings.fhir import load_fhir
from adapter.mappings.files import FILES, MANIFEST, parse, read_mappings_dir
from adapter.mappings.limits import load_limits
from adapter.mappings.modifiers import load_modifiers
from adapter.mappings.money import load_money
from adapter.mappings.ncci import load_ncci
from adapter.mappings.payers import load_payers
from adapter.mappings.rows import Manifest

__all__ = ["CPT_SYSTEM", "DEFAULT_MAPPINGS_DIR", "FILES", "HCPCS_SYSTEM", "load_rulebook"]


def _default_mappings_dir() -> Path:
    """The repository's mappings/ (source or editable install), else the copy a wheel install
    puts under ``<prefix>/share/therapy-charge-adapter/mappings``."""
    beside = Path(__file__).resolve().parents[2] / "mappings"
    if (beside / "rulebook.toml").is_file():
        return beside
    return Path(sys.prefix) / "share" / "therapy-charge-adapter" / "mappings"


DEFAULT_MAPPINGS_DIR = _default_mappings_dir()


def load_rulebook(directory: Path | str | None = None) -> Rulebook:
    """Load, validate and freeze the rulebook in ``directory`` (default: the shipped mappings)."""
    root = Path(directory) if directory is not None else DEFAULT_MAPPINGS_DIR
    mappings = read_mappings_dir(root)
    manifest = parse(Manifest, mappings.docs[MANIFEST], mappings.file(MANIFEST), "(manifest)")
    codes = load_codes(mappings)
    payers = load_payers(mappings, codes.codes)
    ncci = load_ncci(mappings, manifest, codes.codes)
    limits = load_limits(mappings, codes.codes, payers)
    notes = load_documentation(mappings)
    modifiers = load_modifiers(mappings, payers)
    intake = load_fhir(mappings, codes.codes, payers)
    money = load_money(mappings, set(payers))
    clocks = load_clocks(mappings)
    return Rulebook(
        version=f"{manifest.version}+{mappings.fingerprint.short()}",
        codes=codes.codes,
        code_order=codes.order,
        text_matches=codes.text_matches,
        payers=payers,
        ptp=ncci.ptp,
        mue=ncci.mue,
        unit_thresholds=limits.unit_thresholds,
        evaluation_limits=limits.evaluations,
        notes=notes,
        modifiers=modifiers,
        intake=intake,
        money=money,
        clocks=clocks,
    )
