"""NCCI edits: the curated PTP pairs of ``ncci_ptp.toml`` and the CMS quarterly PTP/MUE files
that ``rulebook.toml`` lists (read by ``adapter.mappings.cms_files``, fingerprinted as read)."""

from __future__ import annotations

from collections.abc import Container, Mapping
from types import MappingProxyType
from typing import NamedTuple

from adapter.domain import MueEdit, PtpEdit
from adapter.errors import MappingError
from adapter.mappings.cms_files import read_mue_file, read_ptp_file
from adapter.mappings.codes import require_code
from adapter.mappings.files import MANIFEST, MappingsDir, entries, parse
from adapter.mappings.rows import Manifest, PairRow, PairsFile

NAME = "ncci_ptp.toml"


class NcciEdits(NamedTuple):
    """What the NCCI edits contribute to the rulebook."""

    ptp: Mapping[tuple[str, str], tuple[PtpEdit, ...]]  # (column 1, column 2): curated first
    mue: Mapping[str, tuple[MueEdit, ...]]


def load_ncci(mappings: MappingsDir, manifest: Manifest, codes: Container[str]) -> NcciEdits:
    """Validate the curated pairs, then import the CMS files in manifest order, adding their
    PTP edits after the curated ones."""
    ptp = _curated_pairs(mappings, codes)
    mue: dict[str, list[MueEdit]] = {}
    _import_cms_files(mappings, manifest, ptp, mue)
    return NcciEdits(
        ptp=MappingProxyType({k: tuple(v) for k, v in ptp.items()}),
        mue=MappingProxyType({k: tuple(v) for k, v in mue.items()}),
    )


def _curated_pairs(
    mappings: MappingsDir, codes: Container[str]
) -> dict[tuple[str, str], list[PtpEdit]]:
    """The ``[[pair]]`` entries of ``ncci_ptp.toml`` by (column 1, column 2): both codes known and
    different; duplicates if the same pair starts on the same day."""
    file = mappings.file(NAME)
    doc = parse(PairsFile, mappings.docs[NAME], file, "(file)")
    ptp: dict[tuple[str, str], list[PtpEdit]] = {}
    pair_rows = entries(
        doc.pair, PairRow, file, "pair", lambda e: f"{e.column1}/{e.column2}@{e.effective_from}"
    )
    for row_label, pr in pair_rows:
        label = f"{row_label} ({pr.column1}/{pr.column2})"
        require_code(codes, pr.column1, file, label)
        require_code(codes, pr.column2, file, label)
        if pr.column1 == pr.column2:
            raise MappingError(file, label, "column1 and column2 are the same code")
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
    return ptp


def _import_cms_files(
    mappings: MappingsDir,
    manifest: Manifest,
    ptp: dict[tuple[str, str], list[PtpEdit]],
    mue: dict[str, list[MueEdit]],
) -> None:
    """Read each ``[[cms_file]]`` of the manifest (a path relative to the mappings directory),
    adding its edits to ``ptp`` or ``mue`` and its bytes to the fingerprint (under the path as
    written). Fails on the first file that is missing or not as CMS publishes it."""
    for n, cf in enumerate(manifest.cms_file, start=1):
        path = (mappings.root / cf.path).resolve()
        label = f"[[cms_file]] #{n} ({cf.path})"
        if not path.is_file():
            raise MappingError(mappings.file(MANIFEST), label, "file not found")
        mappings.fingerprint.add(cf.path, path)
        if cf.kind == "ptp":
            for edit in read_ptp_file(path, source=cf.source):
                ptp.setdefault((edit.column1, edit.column2), []).append(edit)
        else:
            for m in read_mue_file(
                path,
                source=cf.source,
                effective_from=cf.effective_from,
                effective_to=cf.effective_to,
            ):
                mue.setdefault(m.code, []).append(m)
