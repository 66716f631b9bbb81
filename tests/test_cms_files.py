"""Importers for CMS's quarterly practitioner PTP (tab-delimited) and MUE (CSV) files."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest

from adapter.domain import MueEdit, PtpEdit
from adapter.errors import MappingError
from adapter.mappings.cms_files import read_mue_file, read_ptp_file

DATA = Path(__file__).parent / "data" / "cms"
PTP_SAMPLE = DATA / "ccipra-sample-f1.txt"
MUE_SAMPLE = DATA / "MCR_MUE_PractitionerServices_sample.csv"

PTP_HEADER = "\t".join(
    [
        "Column 1",
        "Column 2",
        "* = In existence prior to 1996",
        "Effective Date",
        "Deletion Date *=no data",
        "Modifier 0=not allowed 1=allowed 9=not applicable",
        "PTP Edit Rationale",
    ]
)
PTP_PREAMBLE = [
    "CPT codes and descriptions only are copyright 2025 American Medical Association.",
    "Practitioner PTP Edits (test)",
    PTP_HEADER,
]  # the header is line 3, the first data row line 4
MUE_PREAMBLE = [
    '"CPT codes and descriptions only are copyright 2025 American Medical Association."',
    '"HCPCS/CPT Code","Practitioner Services MUE Values","MUE Adjudication Indicator",'
    '"MUE Rationale"',
]  # the header is line 2, the first data row line 3
Q4_2025 = date(2025, 10, 1)


def ptp_row(*cells: str) -> str:
    return "\t".join(cells)


def write(path: Path, lines: list[str], encoding: str = "latin-1") -> Path:
    path.write_text("\n".join(lines) + "\n", encoding=encoding, newline="")
    return path


def read_ptp(path: Path) -> dict[tuple[str, str], PtpEdit]:
    edits = list(read_ptp_file(path, source="CMS NCCI PTP (test)"))
    by_pair = {(e.column1, e.column2): e for e in edits}
    assert len(by_pair) == len(edits), "the sample lists each pair once"
    return by_pair


def read_mue(path: Path, to: date | None = None) -> dict[str, MueEdit]:
    edits = list(
        read_mue_file(path, source="CMS MUE (test)", effective_from=Q4_2025, effective_to=to)
    )
    by_code = {e.code: e for e in edits}
    assert len(by_code) == len(edits)
    return by_code


# -- the practitioner PTP sample ----------------------------------------------------------------


def test_ptp_sample_pairs() -> None:
    edits = read_ptp(PTP_SAMPLE)
    assert set(edits) == {
        ("97530", "97116"),
        ("97140", "97124"),
        ("97161", "97140"),
        ("97150", "97110"),
        ("97035", "97032"),
        ("97750", "97530"),
        ("98940", "97140"),
    }


def test_ptp_sample_skips_edit_deleted_on_its_effective_date() -> None:
    assert ("97113", "97110") not in read_ptp(PTP_SAMPLE)


def test_ptp_sample_modifier_indicators() -> None:
    edits = read_ptp(PTP_SAMPLE)
    assert {pair: e.modifier_indicator for pair, e in edits.items()} == {
        ("97530", "97116"): 1,
        ("97140", "97124"): 1,
        ("97161", "97140"): 1,
        ("97150", "97110"): 0,
        ("97035", "97032"): 1,
        ("97750", "97530"): 9,
        ("98940", "97140"): 1,
    }
    assert all(isinstance(e.modifier_indicator, int) for e in edits.values())


def test_ptp_sample_effective_dates() -> None:
    edits = read_ptp(PTP_SAMPLE)
    assert edits["97530", "97116"].source.effective_from == date(2020, 1, 1)
    assert edits["97140", "97124"].source.effective_from == date(1996, 1, 1)
    assert edits["97150", "97110"].source.effective_from == date(2021, 1, 1)
    assert edits["97750", "97530"].source.effective_from == date(2020, 7, 1)


def test_ptp_deletion_date_is_first_day_not_in_force() -> None:
    deleted = read_ptp(PTP_SAMPLE)["97035", "97032"]
    assert deleted.source.effective_from == date(2019, 1, 1)
    assert deleted.source.effective_to == date(2023, 12, 31)
    assert deleted.source.in_effect(date(2023, 12, 31))
    assert not deleted.source.in_effect(date(2024, 1, 1))


def test_ptp_star_deletion_date_means_open_ended() -> None:
    edits = read_ptp(PTP_SAMPLE)
    for pair, e in edits.items():
        if pair != ("97035", "97032"):
            assert e.source.effective_to is None, pair


def test_ptp_distinct_by_region_only_for_chiropractic_column_1() -> None:
    edits = read_ptp(PTP_SAMPLE)
    assert edits["98940", "97140"].distinct_by == "region"
    for pair, e in edits.items():
        if pair[0] != "98940":
            assert e.distinct_by == "interval", pair


def test_ptp_provenance() -> None:
    edits = read_ptp(PTP_SAMPLE)
    for (col1, col2), e in edits.items():
        assert e.from_cms_file is True
        assert e.source.confidence == "HIGH"
        assert e.source.ref == f"ncci-file:{PTP_SAMPLE.name}:{col1}/{col2}"
        assert e.source.citation.startswith("CMS NCCI PTP (test)")
    assert edits["97150", "97110"].source.citation.endswith(
        "rationale: Mutually exclusive procedures"
    )


def test_ptp_crlf_line_endings_give_the_same_edits(tmp_path: Path) -> None:
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes(PTP_SAMPLE.read_bytes().replace(b"\n", b"\r\n"))
    assert read_ptp(crlf) == {
        pair: _with_ref(e, "crlf.txt") for pair, e in read_ptp(PTP_SAMPLE).items()
    }


def _with_ref(e: PtpEdit, name: str) -> PtpEdit:
    ref = f"ncci-file:{name}:{e.column1}/{e.column2}"
    return replace(e, source=replace(e.source, ref=ref))


def test_ptp_header_only_yields_nothing(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.txt", PTP_PREAMBLE)
    assert list(read_ptp_file(path, source="CMS")) == []


def test_ptp_rationale_is_optional(tmp_path: Path) -> None:
    path = write(
        tmp_path / "p.txt", [*PTP_PREAMBLE, ptp_row("97530", "97116", "", "20200101", "*", "1")]
    )
    (edit,) = read_ptp_file(path, source="CMS")
    assert edit.source.citation == "CMS"


# -- PTP errors -------------------------------------------------------------------------------


def test_ptp_missing_header(tmp_path: Path) -> None:
    path = write(
        tmp_path / "noheader.txt",
        [PTP_PREAMBLE[0], ptp_row("97530", "97116", "", "20200101", "*", "1", "x")],
    )
    with pytest.raises(MappingError) as info:
        list(read_ptp_file(path, source="CMS"))
    assert info.value.file == str(path)
    assert info.value.entry == "(header)"
    assert "header" in info.value.reason
    assert "Column 1" in info.value.reason


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (ptp_row("97530", "97116", "", "2020-01-01", "*", "1", "x"), "effective date"),
        (ptp_row("97530", "97116", "", "20201301", "*", "1", "x"), "effective date"),
        (ptp_row("97530", "97116", "", "", "*", "1", "x"), "effective date"),
        (ptp_row("97530", "97116", "", "20200101", "2024", "1", "x"), "deletion date"),
        (ptp_row("97530", "97116", "", "20200101", "*", "2", "x"), "modifier indicator"),
        (ptp_row("97530", "97116", "", "20200101", "*", "", "x"), "modifier indicator"),
        (ptp_row("97530", "97116", "", "20200101", "*", "one", "x"), "modifier indicator"),
        (ptp_row("97530", "9711", "", "20200101", "*", "1", "x"), "column 2"),
        (ptp_row("9753", "97116", "", "20200101", "*", "1", "x"), "column 1"),
        (ptp_row("97530", "97116", "", "20200101"), "at least 6"),
    ],
)
def test_ptp_bad_row_names_file_and_line(tmp_path: Path, row: str, reason: str) -> None:
    good = ptp_row("97140", "97530", "", "20200101", "*", "1", "x")
    path = write(tmp_path / "bad.txt", [*PTP_PREAMBLE, good, "\t" * 6, row, good])
    with pytest.raises(MappingError) as info:
        list(read_ptp_file(path, source="CMS"))
    assert info.value.file == str(path)
    assert info.value.entry == "line 6"
    assert reason in info.value.reason
    assert str(info.value) == f"{path}: line 6: {info.value.reason}"


def test_ptp_bad_date_reason_names_the_value(tmp_path: Path) -> None:
    path = write(
        tmp_path / "bad.txt", [*PTP_PREAMBLE, ptp_row("97530", "97116", "", "2020-01-01", "*", "1")]
    )
    with pytest.raises(MappingError, match="YYYYMMDD") as info:
        list(read_ptp_file(path, source="CMS"))
    assert "'2020-01-01'" in info.value.reason
    assert info.value.entry == "line 4"


def test_ptp_file_is_read_as_latin_1(tmp_path: Path) -> None:
    # A latin-1 byte in a title line and in a rationale must not stop the import.
    path = tmp_path / "latin1.txt"
    rationale = "Proc\u00e9dures mutuellement exclusives"
    write(path, [*PTP_PREAMBLE, ptp_row("97530", "97116", "", "20200101", "*", "1", rationale)])
    assert b"\xe9" in path.read_bytes()
    (edit,) = read_ptp_file(path, source="CMS")
    assert edit.source.citation == f"CMS; rationale: {rationale}"


# -- the practitioner MUE sample ----------------------------------------------------------------


def test_mue_sample_values() -> None:
    edits = read_mue(MUE_SAMPLE)
    assert {code: e.max_units for code, e in edits.items()} == {
        "97110": 6,
        "97112": 4,
        "97116": 4,
        "97140": 6,
        "97530": 6,
        "97161": 1,
        "97164": 1,
        "G0283": 1,
    }
    assert edits["97112"].adjudication == "3 Date of Service Edit: Clinical"
    assert edits["97161"].adjudication == "2 Date of Service Edit: Policy"


def test_mue_dates_come_from_the_caller() -> None:
    open_ended = read_mue(MUE_SAMPLE)
    quarter = read_mue(MUE_SAMPLE, to=date(2025, 12, 31))
    for code in open_ended:
        assert open_ended[code].source.effective_from == Q4_2025
        assert open_ended[code].source.effective_to is None
        assert quarter[code].source.effective_from == Q4_2025
        assert quarter[code].source.effective_to == date(2025, 12, 31)


def test_mue_provenance() -> None:
    edits = read_mue(MUE_SAMPLE)
    for code, e in edits.items():
        assert e.source.confidence == "HIGH"
        assert e.source.ref == f"mue-file:{MUE_SAMPLE.name}:{code}"
    assert edits["97112"].source.citation == "CMS MUE (test); rationale: Clinical: Data"


# -- MUE errors -------------------------------------------------------------------------------


def test_mue_missing_header(tmp_path: Path) -> None:
    path = write(tmp_path / "mue.csv", [MUE_PREAMBLE[0], "97112,4,3,Clinical"])
    with pytest.raises(MappingError) as info:
        list(read_mue_file(path, source="CMS", effective_from=Q4_2025))
    assert info.value.file == str(path)
    assert info.value.entry == "(header)"
    assert "header" in info.value.reason
    assert "HCPCS/CPT Code" in info.value.reason


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ('97112,4.5,"3 Date of Service Edit: Clinical",Clinical', "'4.5' is not a whole number"),
        ('97112,four,"3 Date of Service Edit: Clinical",Clinical', "'four' is not a whole number"),
        ('97112,-1,"3 Date of Service Edit: Clinical",Clinical', "'-1' is not a whole number"),
        ('97112,,"3 Date of Service Edit: Clinical",Clinical', "'' is not a whole number"),
        ('9711,4,"3 Date of Service Edit: Clinical",Clinical', "'9711' is not a HCPCS/CPT code"),
        ("97112,4", "at least 3 fields"),
        ('97110,4,"3 Date of Service Edit: Clinical",Clinical', "code 97110 is listed twice"),
    ],
)
def test_mue_bad_row_names_file_and_line(tmp_path: Path, row: str, reason: str) -> None:
    good = '97110,6,"3 Date of Service Edit: Clinical","Clinical: Data"'
    path = write(tmp_path / "mue.csv", [*MUE_PREAMBLE, good, ",,,", row], encoding="utf-8")
    with pytest.raises(MappingError) as info:
        list(read_mue_file(path, source="CMS", effective_from=Q4_2025))
    assert info.value.file == str(path)
    assert info.value.entry == "line 5"
    assert reason in info.value.reason


def test_mue_duplicate_names_the_second_line(tmp_path: Path) -> None:
    rows = ["97112,4,3,Clinical", "97110,6,3,Clinical", "97112,2,3,Clinical"]
    path = write(tmp_path / "mue.csv", [*MUE_PREAMBLE, *rows], encoding="utf-8")
    with pytest.raises(MappingError, match="listed twice") as info:
        list(read_mue_file(path, source="CMS", effective_from=Q4_2025))
    assert info.value.entry == "line 5"


def test_mue_latin_1_copyright_line_is_tolerated(tmp_path: Path) -> None:
    path = write(
        tmp_path / "mue.csv",
        ['"Copyright \u00a9 2025 American Medical Association."', *MUE_PREAMBLE[1:], "97112,4,3"],
        encoding="latin-1",
    )
    (edit,) = read_mue_file(path, source="CMS", effective_from=Q4_2025)
    assert (edit.code, edit.max_units, edit.adjudication) == ("97112", 4, "3")


def test_mue_unicode_digit_value_is_a_mapping_error(tmp_path: Path) -> None:
    path = write(tmp_path / "mue.csv", [*MUE_PREAMBLE, "97112,\u00b2,3,Clinical"], encoding="utf-8")
    with pytest.raises(MappingError) as info:
        list(read_mue_file(path, source="CMS", effective_from=Q4_2025))
    assert info.value.entry == "line 3"
