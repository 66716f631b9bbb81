"""Importers for CMS's quarterly NCCI files, read as published.

* **Practitioner PTP edits** (``ccipra-v…-f1.txt`` … ``-f4.txt``): tab-delimited text. A few lines
  of copyright notice and titles come first; the header row starts with ``Column 1``; each data row
  is ``column 1, column 2, prior-to-1996 flag ('*' or blank), effective date (YYYYMMDD), deletion
  date (YYYYMMDD or '*' for none), modifier indicator (0, 1, 9), rationale``. A deletion date is
  the first day the edit no longer applies.
* **Practitioner MUE values** (``MCR_MUE_PractitionerServices_…csv``): comma-separated. A
  copyright line may come first; the header row starts with ``HCPCS/CPT Code``; each data row is
  ``code, MUE value, adjudication indicator, rationale``. The file carries no dates: the quarter
  it belongs to is given by the caller.

Both raise ``MappingError`` naming the file, the line and the reason; they never skip a data row
silently. Rows for codes the adapter does not know are imported too (they cost nothing).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

from adapter.domain import MueEdit, PtpEdit, RuleSource
from adapter.errors import MappingError

_CODE = re.compile(r"^[0-9A-Z][0-9]{3}[0-9A-Z]$")
_UNITS = re.compile(r"^[0-9]+$")
_CHIROPRACTIC = frozenset({"98940", "98941", "98942", "98943"})


def _yyyymmdd(value: str, file: str, line: str, what: str) -> date:
    """``value`` as a CMS YYYYMMDD date; a ``MappingError`` naming ``what`` if it is not one."""
    try:
        return datetime.strptime(value.strip(), "%Y%m%d").date()
    except ValueError:
        raise MappingError(file, line, f"{what} {value!r} is not a YYYYMMDD date") from None


def _cms_source(ref: str, source: str, rationale: str, start: date, end: date | None) -> RuleSource:
    """A CMS file row's rule source: the file's citation with the row's rationale, HIGH."""
    return RuleSource(
        ref=ref,
        citation=f"{source}; rationale: {rationale}" if rationale else source,
        confidence="HIGH",
        effective_from=start,
        effective_to=end,
    )


def read_ptp_file(path: Path, *, source: str) -> Iterator[PtpEdit]:
    """Yield every PTP edit in a CMS practitioner PTP file (tab-delimited)."""
    file = str(path)
    header_seen = False
    with path.open(encoding="latin-1", newline="") as fh:
        for n, raw in enumerate(fh, start=1):
            line = f"line {n}"
            cells = [c.strip() for c in raw.rstrip("\r\n").split("\t")]
            if not header_seen:
                if cells and cells[0].lower().replace(" ", "") == "column1":
                    header_seen = True
                continue
            if not any(cells):
                continue
            if not _CODE.match(cells[0]):
                # title or notice lines between header and data (CMS repeats a sub-header)
                if any(_CODE.match(c) for c in cells[:2]):
                    raise MappingError(file, line, f"column 1 {cells[0]!r} is not a code")
                continue
            if len(cells) < 6:
                raise MappingError(
                    file, line, f"expected at least 6 tab-separated fields, got {len(cells)}"
                )
            col1, col2, _pre1996, eff, deleted, indicator = cells[:6]
            rationale = cells[6] if len(cells) > 6 else ""
            if not _CODE.match(col2):
                raise MappingError(file, line, f"column 2 {col2!r} is not a code")
            start = _yyyymmdd(eff, file, line, "effective date")
            end: date | None = None
            if deleted not in ("*", ""):
                end = _yyyymmdd(deleted, file, line, "deletion date") - timedelta(days=1)
            if indicator not in ("0", "1", "9"):
                raise MappingError(file, line, f"modifier indicator {indicator!r} is not 0, 1 or 9")
            if end is not None and end < start:
                continue  # deleted on the day it took effect: never in force
            yield PtpEdit(
                column1=col1,
                column2=col2,
                modifier_indicator=int(indicator),
                distinct_by="region" if col1 in _CHIROPRACTIC else "interval",
                from_cms_file=True,
                source=_cms_source(
                    f"ncci-file:{path.name}:{col1}/{col2}", source, rationale, start, end
                ),
            )
    if not header_seen:
        raise MappingError(file, "(header)", "no 'Column 1' header row: not a CMS PTP file")


def read_mue_file(
    path: Path, *, source: str, effective_from: date, effective_to: date | None = None
) -> Iterator[MueEdit]:
    """Yield every MUE value in a CMS practitioner MUE file (CSV)."""
    file = str(path)
    header_seen = False
    seen: set[str] = set()
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
        for n, row in enumerate(csv.reader(fh), start=1):
            line = f"line {n}"
            cells = [c.strip() for c in row]
            if not header_seen:
                if cells and cells[0].upper().startswith("HCPCS"):
                    header_seen = True
                continue
            if not any(cells):
                continue
            if len(cells) < 3:
                raise MappingError(file, line, f"expected at least 3 fields, got {len(cells)}")
            code, value, adjudication = cells[:3]
            rationale = cells[3] if len(cells) > 3 else ""
            if not _CODE.match(code):
                raise MappingError(file, line, f"{code!r} is not a HCPCS/CPT code")
            if not _UNITS.match(value):
                raise MappingError(file, line, f"MUE value {value!r} is not a whole number")
            if code in seen:
                raise MappingError(file, line, f"code {code} is listed twice")
            seen.add(code)
            yield MueEdit(
                code=code,
                max_units=int(value),
                adjudication=adjudication,
                source=_cms_source(
                    f"mue-file:{path.name}:{code}", source, rationale, effective_from, effective_to
                ),
            )
    if not header_seen:
        raise MappingError(file, "(header)", "no 'HCPCS/CPT Code' header row: not a CMS MUE file")
