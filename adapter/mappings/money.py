"""``money.toml`` and the files it names: the site's chargemaster, CMS's Physician Fee Schedule
files for the site's locality, commercial contract rates (``domain.md`` §6).

File formats (every error is a ``MappingError`` naming the file, the line and the reason; no
data row is skipped silently):

* **Chargemaster** (CSV, the columns sites export; ``#`` lines are comments): header
  ``cdm_code,code,modifier,description,unit_price,effective_from,effective_to,department,
  discipline``; ``modifier``, ``effective_to``, ``department`` and ``discipline`` may be empty.
  Two rows for one code and modifier whose dates overlap are refused.
* **PPRRVU** (CMS's national relative value file, ``PPRRVU<yy>_<QTR>.csv`` in the ``RVU<yy>``
  zip at https://www.cms.gov/medicare/payment/fee-schedules/physician/pfs-relative-value-files):
  text rows first, then the header row(s), the last of which starts with ``HCPCS``; columns
  read by position as the file's documentation (RVUPUF) lists them: 0 HCPCS, 1 MOD, 3 STATUS
  CODE, 5 WORK RVU, 6 NON-FAC PE RVU, 8 FACILITY PE RVU, 10 MP RVU, 15 MULT PROC. Rows with a
  modifier (26, TC, 53) are not read: therapy is billed globally.
* **GPCI** (``GPCI<yyyy>.csv`` in the same zip, Addendum E): text rows, then a header naming
  ``Medicare Administrative Contractor``, ``Locality Number`` and the three GPCIs (``PW GPCI``,
  ``PE GPCI``, ``MP GPCI``); the row of the site's MAC and locality is read.
* **Contract rates** (CSV): ``code,modifier,rate,effective_from,effective_to`` per payer file.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from adapter.domain import (
    Adjustment,
    CdmEntry,
    ContractRate,
    Discipline,
    FeeScheduleYear,
    Gpci,
    MoneyRules,
    RuleSource,
    Rvu,
)
from adapter.errors import MappingError
from adapter.mappings.files import MappingsDir, entries, parse
from adapter.mappings.rows import EntryRow

MONEY = "money.toml"
_CODE = re.compile(r"^[0-9A-Z][0-9]{3}[0-9A-Z]$")
_MODIFIER = re.compile(r"^[0-9A-Z]{2}$")
_AMOUNT = re.compile(r"^[0-9]+(\.[0-9]{1,2})?$")
_RVU = re.compile(r"^[0-9]*\.?[0-9]+$")
CDM_COLUMNS = ["cdm_code", "code", "modifier", "description", "unit_price", "effective_from",
               "effective_to", "department", "discipline"]  # fmt: skip
CONTRACT_COLUMNS = ["code", "modifier", "rate", "effective_from", "effective_to"]


class _Site(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    mac: Annotated[str, Field(pattern=r"^[0-9]{5}$")]
    locality: Annotated[str, Field(pattern=r"^[0-9]{2}$")]
    setting: Literal["non-facility", "facility"] = "non-facility"


class _Rate(EntryRow):
    rate: Annotated[Decimal, Field(gt=0, le=1)]


class _Mppr(_Rate):
    indicators: tuple[Annotated[str, Field(pattern=r"^[0-9]$")], ...] = ("5",)


class _FeeScheduleRow(EntryRow):
    year: Annotated[int, Field(ge=2000, le=2100)]
    rvu_file: str
    gpci_file: str
    conversion_factor: Annotated[Decimal, Field(gt=0)]


class _FileRow(EntryRow):
    path: str


class _ContractRow(_FileRow):
    payer: str


class _MoneyFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    pfs_payers: list[str] = []
    site: _Site | None = None
    assistant_rate: _Rate | None = None
    mppr: _Mppr | None = None
    fee_schedule: list[dict[str, object]] = []
    chargemaster: list[dict[str, object]] = []
    contract: list[dict[str, object]] = []


def load_money(mappings: MappingsDir, payers: set[str]) -> MoneyRules:
    """``money.toml`` (optional: without it nothing is priced) and the files it names."""
    if MONEY not in mappings.docs:
        return MoneyRules()
    file = mappings.file(MONEY)
    doc = parse(_MoneyFile, mappings.docs[MONEY], file, "(file)")
    for p in [*doc.pfs_payers]:
        if p not in payers:
            raise MappingError(file, "pfs_payers", f"{p!r} is not a payer profile")
    years = entries(doc.fee_schedule, _FeeScheduleRow, file, "fee_schedule",
                    lambda r: str(r.year))  # fmt: skip
    if years and doc.site is None:
        raise MappingError(file, "[site]", "a fee schedule needs the site's mac and locality")
    fee_schedule: dict[int, FeeScheduleYear] = {}
    for label, row in years:
        assert doc.site is not None
        fee_schedule[row.year] = _fee_schedule_year(mappings, label, row, doc.site)
    chargemaster: dict[str, list[CdmEntry]] = {}
    for label, cdm in entries(doc.chargemaster, _FileRow, file, "chargemaster", lambda r: r.path):
        path = _file(mappings, cdm.path, file, label)
        for e in read_chargemaster(path, source=cdm.source):
            chargemaster.setdefault(e.code, []).append(e)
    _no_overlaps(chargemaster)
    contracts: dict[tuple[str, str], list[ContractRate]] = {}
    for label, c in entries(doc.contract, _ContractRow, file, "contract",
                            lambda r: f"{r.payer}|{r.path}"):  # fmt: skip
        if c.payer not in payers:
            raise MappingError(file, label, f"payer {c.payer!r} is not a payer profile")
        path = _file(mappings, c.path, file, label)
        for rate in read_contract_rates(path, payer=c.payer, source=c.source):
            contracts.setdefault((c.payer, rate.code), []).append(rate)
    _no_overlaps(contracts)
    return MoneyRules(
        chargemaster={k: tuple(v) for k, v in chargemaster.items()},
        fee_schedule=fee_schedule,
        pfs_payers=frozenset(doc.pfs_payers),
        contracts={k: tuple(v) for k, v in contracts.items()},
        assistant_rate=_adjustment(doc.assistant_rate, "money:assistant-rate"),
        mppr=_adjustment(doc.mppr, "money:mppr"),
        mppr_indicators=frozenset(doc.mppr.indicators) if doc.mppr else frozenset({"5"}),
    )


def _adjustment(row: _Rate | None, ref: str) -> Adjustment | None:
    return Adjustment(rate=row.rate, source=row.rule_source(ref)) if row else None


def _file(mappings: MappingsDir, relative: str, file: str, label: str) -> Path:
    path = mappings.root / relative
    if not path.is_file():
        raise MappingError(file, label, f"{relative} is not a file")
    mappings.fingerprint.add(relative, path)
    return path


def _fee_schedule_year(
    mappings: MappingsDir, label: str, row: _FeeScheduleRow, site: _Site
) -> FeeScheduleYear:
    file = mappings.file(MONEY)
    if row.effective_from.year != row.year or (
        row.effective_to is not None and row.effective_to.year != row.year
    ):
        raise MappingError(file, label, f"effective dates are not in {row.year}")
    rvus = dict(read_pprrvu(_file(mappings, row.rvu_file, file, label)))
    gpci = read_gpci(_file(mappings, row.gpci_file, file, label), mac=site.mac,
                     locality=site.locality)  # fmt: skip
    source = row.rule_source(f"pfs:{row.year}:{site.mac}-{site.locality}")
    return FeeScheduleYear(year=row.year, rvus=rvus, gpci=gpci,
                           conversion_factor=row.conversion_factor, setting=site.setting,
                           source=source)  # fmt: skip


# -- the CSV files ------------------------------------------------------------------------------
def _rows(path: Path, *, comments: bool = False) -> Iterator[tuple[str, list[str]]]:
    """(``line n``, cells) of each non-empty row (``#`` rows skipped when ``comments``)."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            for n, cells in enumerate(csv.reader(fh), start=1):
                if not any(c.strip() for c in cells):
                    continue
                if comments and cells[0].lstrip().startswith("#"):
                    continue
                yield f"line {n}", [c.strip() for c in cells]
    except UnicodeDecodeError as err:
        raise MappingError(str(path), "(file)", f"not UTF-8: {err}") from None
    except csv.Error as err:
        raise MappingError(str(path), "(file)", f"not CSV: {err}") from None


def _date(value: str, file: str, line: str, what: str, *, optional: bool = False) -> date | None:
    if optional and not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise MappingError(file, line, f"{what} {value!r} is not a YYYY-MM-DD date") from None


def _money(value: str, file: str, line: str, what: str) -> Decimal:
    if not _AMOUNT.match(value):
        raise MappingError(file, line, f"{what} {value!r} is not an amount in dollars and cents")
    return Decimal(value)


def _code_and_modifier(cells: dict[str, str], file: str, line: str) -> tuple[str, str | None]:
    code = cells["code"].upper()
    if not _CODE.match(code):
        raise MappingError(file, line, f"code {cells['code']!r} is not a CPT/HCPCS code")
    modifier = cells["modifier"].upper() or None
    if modifier is not None and not _MODIFIER.match(modifier):
        raise MappingError(file, line, f"modifier {cells['modifier']!r} is not a modifier")
    return code, modifier


def _table(path: Path, columns: list[str]) -> Iterator[tuple[str, dict[str, str]]]:
    """(``line n``, cells by column) of each data row of a site CSV with exactly ``columns``
    (its header row first; ``#`` rows are comments)."""
    file = str(path)
    rows = _rows(path, comments=True)
    first = next(rows, None)
    if first is None:
        raise MappingError(file, "(file)", "empty: no header row")
    if [c.lower() for c in first[1]] != columns:
        raise MappingError(file, first[0], f"header should be {','.join(columns)}")
    for line, raw in rows:
        if len(raw) != len(columns):
            raise MappingError(file, line, f"{len(raw)} columns, not {len(columns)}")
        yield line, dict(zip(columns, raw, strict=True))


def _source(
    path: Path, line: str, ref: str, source: str, *, start: date | None, end: date | None
) -> RuleSource:
    assert start is not None
    if end is not None and end < start:
        raise MappingError(str(path), line, "effective_to is before effective_from")
    return RuleSource(ref=ref, citation=f"{source} ({path.name} {line})", confidence="HIGH",
                      effective_from=start, effective_to=end)  # fmt: skip


def read_chargemaster(path: Path, *, source: str) -> Iterator[CdmEntry]:
    """Every row of a chargemaster CSV."""
    file = str(path)
    for line, cells in _table(path, CDM_COLUMNS):
        code, modifier = _code_and_modifier(cells, file, line)
        if not cells["cdm_code"]:
            raise MappingError(file, line, "cdm_code is empty")
        discipline = cells["discipline"].upper() or None
        if discipline is not None and discipline not in Discipline.__members__:
            raise MappingError(file, line, f"discipline {discipline!r} is not PT, OT or SLP")
        start = _date(cells["effective_from"], file, line, "effective_from")
        end = _date(cells["effective_to"], file, line, "effective_to", optional=True)
        yield CdmEntry(
            cdm_code=cells["cdm_code"],
            code=code,
            modifier=modifier,
            description=cells["description"],
            unit_price=_money(cells["unit_price"], file, line, "unit_price"),
            department=cells["department"] or None,
            discipline=Discipline[discipline] if discipline else None,
            source=_source(path, line, f"cdm:{cells['cdm_code']}", source, start=start, end=end),
        )


def _no_overlaps(table: Mapping[Any, Sequence[CdmEntry | ContractRate]]) -> None:
    """Two rows for one code and modifier in effect on the same day are refused."""
    for rows in table.values():
        for i, a in enumerate(rows):
            for b in rows[i + 1 :]:
                if a.modifier != b.modifier:
                    continue
                a_end, b_end = a.source.effective_to or date.max, b.source.effective_to or date.max
                if a.source.effective_from <= b_end and b.source.effective_from <= a_end:
                    where = b.source.citation.rsplit("(", 1)[-1].rstrip(")")
                    other = a.source.citation.rsplit("(", 1)[-1].rstrip(")")
                    raise MappingError(where.split(" ", 1)[0], where.split(" ", 1)[1],
                                       f"{b.code} {b.modifier or ''} overlaps the dates of "
                                       f"{other}")  # fmt: skip


def read_contract_rates(path: Path, *, payer: str, source: str) -> Iterator[ContractRate]:
    file = str(path)
    for line, cells in _table(path, CONTRACT_COLUMNS):
        code, modifier = _code_and_modifier(cells, file, line)
        start = _date(cells["effective_from"], file, line, "effective_from")
        end = _date(cells["effective_to"], file, line, "effective_to", optional=True)
        yield ContractRate(
            payer=payer,
            code=code,
            modifier=modifier,
            rate=_money(cells["rate"], file, line, "rate"),
            source=_source(path, line, f"contract:{payer}:{code}", source, start=start, end=end),
        )


def _rvu_value(value: str, file: str, line: str, what: str) -> Decimal:
    if not value:
        return Decimal(0)
    if not _RVU.match(value):
        raise MappingError(file, line, f"{what} {value!r} is not a number")
    try:
        return Decimal(value)
    except InvalidOperation:
        raise MappingError(file, line, f"{what} {value!r} is not a number") from None


def read_pprrvu(path: Path) -> Iterator[tuple[str, Rvu]]:
    """(code, RVUs) of every global row (no modifier) of a CMS PPRRVU CSV; a code listed twice
    is refused."""
    file = str(path)
    header_seen = False
    seen: dict[str, str] = {}
    for line, cells in _rows(path):
        if not header_seen:
            header_seen = cells[0].upper() == "HCPCS"
            continue
        if len(cells) < 16:
            raise MappingError(file, line, f"{len(cells)} columns: a PPRRVU row has at least 16")
        code, modifier = cells[0].upper(), cells[1].upper()
        if not _CODE.match(code):
            raise MappingError(file, line, f"HCPCS {cells[0]!r} is not a CPT/HCPCS code")
        if modifier:
            continue  # professional/technical components: not therapy
        if code in seen:
            raise MappingError(file, line, f"{code} is listed twice (first on {seen[code]})")
        seen[code] = line
        yield (
            code,
            Rvu(
                code=code,
                modifier=None,
                status=cells[3].upper(),
                work=_rvu_value(cells[5], file, line, "WORK RVU"),
                pe_non_facility=_rvu_value(cells[6], file, line, "NON-FAC PE RVU"),
                pe_facility=_rvu_value(cells[8], file, line, "FACILITY PE RVU"),
                mp=_rvu_value(cells[10], file, line, "MP RVU"),
                mult_proc=cells[15],
            ),
        )
    if not header_seen:
        raise MappingError(file, "(file)", "no header row starting with HCPCS")


def read_gpci(path: Path, *, mac: str, locality: str) -> Gpci:
    """The site's row of a CMS GPCI CSV."""
    file = str(path)
    columns: dict[str, int] | None = None
    found: Gpci | None = None
    for line, cells in _rows(path):
        if columns is None:
            names = [c.lower() for c in cells]
            if any("locality number" in c for c in names):
                columns = {
                    key: next((i for i, c in enumerate(names) if want in c), -1)
                    for key, want in (("mac", "administrative contractor"),
                                      ("locality", "locality number"),
                                      ("name", "locality name"), ("work", "pw gpci"),
                                      ("pe", "pe gpci"), ("mp", "mp gpci"))
                }  # fmt: skip
                missing = [k for k, i in columns.items() if i < 0]
                if missing:
                    raise MappingError(file, line, f"header lacks {', '.join(missing)}")
                for want in ("pw gpci", "pe gpci", "mp gpci"):
                    named = [c for c in names if want in c]
                    if len(named) > 1:
                        raise MappingError(file, line, f"{len(named)} columns name {want!r}: "
                                           f"{'; '.join(named)} (keep the one to use)")  # fmt: skip
            continue
        if len(cells) <= max(columns.values()):
            continue  # a footnote row
        if cells[columns["mac"]] == mac and cells[columns["locality"]].zfill(2) == locality:
            if found is not None:
                raise MappingError(file, line, f"MAC {mac} locality {locality} is listed twice")
            values = {k: _rvu_value(cells[columns[k]], file, line, f"{k} GPCI")
                      for k in ("work", "pe", "mp")}  # fmt: skip
            found = Gpci(mac=mac, locality=locality, name=cells[columns["name"]], **values)
    if columns is None:
        raise MappingError(file, "(file)", "no header row naming Locality Number")
    if found is None:
        raise MappingError(file, "(file)", f"no row for MAC {mac} locality {locality}")
    return found
