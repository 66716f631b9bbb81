"""money.toml and the files it names (chargemaster, CMS PPRRVU and GPCI files, contract rates):
the shipped ones load; a broken one fails loudly with file, line and reason."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from adapter.errors import MappingError
from adapter.mappings import DEFAULT_MAPPINGS_DIR, load_rulebook
from adapter.mappings.money import read_gpci, read_pprrvu

from .test_mappings import append, edit

PFS = DEFAULT_MAPPINGS_DIR / "cms" / "pfs"


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(DEFAULT_MAPPINGS_DIR, target)
    return target


def test_the_shipped_money_files_load() -> None:
    money = load_rulebook().money
    year = money.fee_schedule[2026]
    assert (year.gpci.work, year.gpci.pe, year.gpci.mp) == (
        Decimal("1.000"), Decimal("0.950"), Decimal("0.700")
    )  # fmt: skip
    assert year.conversion_factor == Decimal("33.4009") and year.setting == "non-facility"
    rvu = year.rvus["97110"]
    assert (rvu.work, rvu.pe_non_facility, rvu.mp, rvu.mult_proc, rvu.status) == (
        Decimal("0.45"), Decimal("0.42"), Decimal("0.02"), "5", "A"
    )  # fmt: skip
    assert year.rvus["97010"].status == "B"
    assert money.pfs_payers == {"medicare"}
    # every code the catalog can bill has a price on a 2026 date
    from datetime import date

    catalog = set(load_rulebook().codes) | {"G0283"}
    assert {c for c in catalog if money.price(c, (), date(2026, 3, 2)) is None} == set()


def test_a_pprrvu_row_with_a_modifier_is_not_the_global_one() -> None:
    rows = dict(read_pprrvu(PFS / "PPRRVU26_JAN-synthetic.csv"))
    assert rows["97110"].pe_non_facility == Decimal("0.42")  # not the -26 row's 0.00


BROKEN: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "price with three decimals": (
        lambda d: edit(d, "chargemaster.csv", ",95.00,", ",95.005,"),
        "chargemaster.csv", "line 4: unit_price '95.005' is not an amount",
    ),
    "bad code": (
        lambda d: edit(d, "chargemaster.csv", "41010,97110,", "41010,9711,"),
        "chargemaster.csv", "code '9711' is not a CPT/HCPCS code",
    ),
    "overlapping prices": (
        lambda d: append(d, "chargemaster.csv",
                         "49999,97110,,DUPLICATE,99.00,2026-06-01,,REHAB,"),
        "chargemaster.csv", "overlaps the dates of",
    ),
    "wrong header": (
        lambda d: edit(d, "chargemaster.csv", "cdm_code,code,", "cdm,code,"),
        "chargemaster.csv", "line 3: header should be",
    ),
    "ends before it starts": (
        lambda d: edit(d, "chargemaster.csv", "2025-01-01,2025-12-31", "2025-01-01,2024-12-31"),
        "chargemaster.csv", "effective_to is before effective_from",
    ),
    "unknown discipline": (
        lambda d: edit(d, "chargemaster.csv", ",REHAB,PT", ",REHAB,XX"),
        "chargemaster.csv", "discipline 'XX'",
    ),
    "rvu not a number": (
        lambda d: edit(d, "cms/pfs/PPRRVU26_JAN-synthetic.csv", ",0.45,0.42,", ",0.45,abc,"),
        "PPRRVU26_JAN-synthetic.csv", "NON-FAC PE RVU 'abc' is not a number",
    ),
    "locality missing": (
        lambda d: edit(d, "money.toml", 'locality = "01"', 'locality = "77"'),
        "GPCI2026-synthetic.csv", "no row for MAC 99999 locality 77",
    ),
    "unknown payer": (
        lambda d: edit(d, "money.toml", 'pfs_payers = ["medicare"]', 'pfs_payers = ["medicar"]'),
        "money.toml", "'medicar' is not a payer profile",
    ),
    "file missing": (
        lambda d: (d / "contract-rates-commercial.csv").unlink(),
        "money.toml", "contract-rates-commercial.csv is not a file",
    ),
    "year outside its dates": (
        lambda d: edit(d, "money.toml", "effective_to = 2026-12-31", "effective_to = 2027-03-31"),
        "money.toml", "effective dates are not in 2026",
    ),
    "a code twice in the PPRRVU": (
        lambda d: append(d, "cms/pfs/PPRRVU26_JAN-synthetic.csv",
                         "97110,,DUPLICATE,A,,9.45,0.42,,0.14,,0.02,9.89,9.61,0,XXX,5,0,0,0,0,"
                         ",33.4009,09,,99,0.42,0.14,0.02"),
        "PPRRVU26_JAN-synthetic.csv", "97110 is listed twice",
    ),
    "two work GPCI columns": (
        lambda d: edit(d, "cms/pfs/GPCI2026-synthetic.csv", "2026 MP GPCI",
                       "2026 MP GPCI,2026 PW GPCI (without 1.0 Floor)"),
        "GPCI2026-synthetic.csv", "2 columns name 'pw gpci'",
    ),
    "a locality twice": (
        lambda d: append(d, "cms/pfs/GPCI2026-synthetic.csv",
                         "99999,ZZ,01,SYNTHETIC LOCALITY ONE AGAIN,1.100,0.950,0.700"),
        "GPCI2026-synthetic.csv", "MAC 99999 locality 01 is listed twice",
    ),
    "overlapping contract rates": (
        lambda d: append(d, "contract-rates-commercial.csv", "97110,,33.00,2026-07-01,"),
        "contract-rates-commercial.csv", "overlaps the dates of",
    ),
    "unknown key": (
        lambda d: append(d, "money.toml", "[surcharge]\nrate = 1\n"),
        "money.toml", "surcharge",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", BROKEN)
def test_a_broken_money_file_fails_with_file_line_and_reason(copy: Path, name: str) -> None:
    breaks, file, reason = BROKEN[name]
    breaks(copy)
    with pytest.raises(MappingError) as e:
        load_rulebook(copy)
    assert file in str(e.value) and reason in str(e.value), str(e.value)


def test_without_money_toml_nothing_is_priced(copy: Path) -> None:
    (copy / "money.toml").unlink()
    assert load_rulebook(copy).money.chargemaster == {}


def test_a_gpci_file_without_its_header(tmp_path: Path) -> None:
    bad = tmp_path / "GPCI.csv"
    bad.write_text("MAC,State\n1,2\n")
    with pytest.raises(MappingError, match="no header row naming Locality Number"):
        read_gpci(bad, mac="99999", locality="01")


def test_a_site_can_turn_the_certification_clock_off(copy: Path) -> None:
    """A site that does not record certification in FHIR: convention "off", no clock (an
    unsigned plan would otherwise hold lines after 30 days)."""
    edit(copy, "clocks.toml", 'convention = "author"', 'convention = "off"')
    rules = load_rulebook(copy).clocks.certification
    assert rules.source is None and rules.convention == "off"
    edit(copy, "clocks.toml", 'convention = "off"', 'convention = "provenance"')
    assert load_rulebook(copy).clocks.certification.convention == "provenance"
    edit(copy, "clocks.toml", 'convention = "provenance"', 'convention = "signature"')
    with pytest.raises(MappingError, match="convention"):
        load_rulebook(copy)
