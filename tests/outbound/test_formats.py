"""The same decisions as HL7 v2 DFT^P03 and X12 837P (issue 16, domain.md §8): every message
the fixture library produces validates strictly (hl7apy, v2.5.1), every 837P file passes pyx12's
X222A1 validation with a 999 that accepts it, a rerun is byte-identical, golden files for two
fixture days, and a changed day credits what went away."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pyx12.params
import pyx12.x12n_document
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.cli import main
from adapter.hl7v2.dft import FtLine, SiteProfile, change, control_id, dft_message, header_of
from adapter.mappings import load_rulebook
from adapter.pipeline import Options
from adapter.replay import decisions
from adapter.x12.p837 import (
    BillingProvider,
    ClaimControl,
    Envelope,
    Unwritable,
    claim_837p,
)

FIXTURES = Path(__file__).parents[2] / "fixtures"
GOLDEN = Path(__file__).parents[1] / "data" / "golden"
AS_OF = "2026-08-01T12:00:00Z"
TARGET = """
[[targets]]
name = "clearinghouse"
kind = "x12-837p"
folder = "out-837p"
sender_id = "TESTSUBMITTER"
receiver_id = "TESTRECEIVER"
submitter_name = "Test Therapy Clinic"
receiver_name = "Test Clearinghouse"
contact_name = "Test Biller"
contact_phone = "5555550100"
[targets.billing_provider]
name = "Test Therapy Clinic"
npi = "1999999984"
tax_id = "123456789"
address = "1 Test Street"
city = "Testville"
state = "MN"
postal_code = "555550001"
taxonomy = "225100000X"
[targets.payer_ids]
medicare = "MEDICARE01"
medicaid = "MEDICAID01"
tricare = "TRICARE01"
commercial = "COMMERCIAL01"
"""
ENVELOPE = Envelope(sender_id="TESTSUBMITTER", receiver_id="TESTRECEIVER",
                    submitter_name="Test Therapy Clinic", receiver_name="Test Clearinghouse",
                    contact_name="Test Biller", contact_phone="5555550100")  # fmt: skip
PROVIDER = BillingProvider(name="Test Therapy Clinic", npi="1999999984", tax_id="123456789",
                           address="1 Test Street", city="Testville", state="MN",
                           postal_code="555550001", taxonomy="225100000X")  # fmt: skip


def emit(tmp_path: Path, out: str, *paths: Path) -> Path:
    cfg = tmp_path / "adapter.toml"
    cfg.write_text(TARGET)
    args = ["replay", *map(str, paths), "--out", str(tmp_path / out), "--emit",
            "fhir,hl7v2,x12", "--config", str(cfg), "--as-of", AS_OF]  # fmt: skip
    assert main(args) == 0
    return tmp_path / out


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return emit(tmp_path_factory.mktemp("emit"), "out", FIXTURES)


def messages(path: Path) -> list[str]:
    """The DFT messages of a .hl7 file, as an MLLP peer receives them (VT … FS CR)."""
    data = path.read_bytes().decode()
    chunks = data.split("\x1c\r")
    assert chunks[-1] == ""
    assert all(c.startswith("\x0b") for c in chunks[:-1])
    return [c[1:] for c in chunks[:-1]]


def x12_accepted(text: str) -> tuple[bool, str]:
    """pyx12's verdict on an 837P (X222A1 map) and the 999 it writes."""
    ack = io.StringIO()
    ok = pyx12.x12n_document.x12n_document(pyx12.params.params(), io.StringIO(text), ack, None)
    return ok, ack.getvalue()


def test_every_837p_of_the_library_passes_pyx12_and_its_999_accepts(library: Path) -> None:
    files = sorted(library.rglob("*.837p.x12"))
    assert len(files) >= 40
    for f in files:
        ok, ack = x12_accepted(f.read_text())
        assert ok, f"{f}: {ack}"
        assert "IK5*A~" in ack and "AK9*A*" in ack, f"{f}: {ack}"


def test_every_dft_of_the_library_validates_strictly(library: Path) -> None:
    found = [m for f in sorted(library.rglob("*.hl7")) for m in messages(f)]
    assert len(found) >= 70
    ids = set()
    for text in found:
        msg = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
        assert msg.validate()
        assert msg.msh.msh_9.to_er7() == "DFT^P03^DFT_P03"
        ids.add(msg.msh.msh_10.to_er7())
        lines = [s.split("|")[2] for s in text.split("\r") if s.startswith("FT1")]
        assert len(lines) == len(set(lines))  # FT1-2 unique within a message (CQ splits too)
    assert len(ids) == len(found)  # MSH-10 unique per message


def test_a_rerun_is_byte_identical(library: Path, tmp_path: Path) -> None:
    again = emit(tmp_path, "again", FIXTURES)
    for f in sorted([*library.rglob("*.hl7"), *library.rglob("*.837p.x12")]):
        assert (again / f.relative_to(library)).read_bytes() == f.read_bytes(), f


@pytest.mark.parametrize(
    "case", ["knee-eval-97161-97140-xu", "back-commercial-authorization-visits"]
)
def test_golden_files(library: Path, case: str) -> None:
    """Reviewed line by line against domain.md §8 (regenerate: copy the replay's files)."""
    for suffix in (".hl7", ".837p.x12"):
        got = (library / case / f"input{suffix}").read_bytes()
        assert got == (GOLDEN / f"{case}{suffix}").read_bytes(), f"{case}{suffix}"


def _day(case: str) -> tuple[object, object]:
    rulebook = load_rulebook()
    result, decision = next(iter(decisions([FIXTURES / case], rulebook, Options())))
    return result, decision


def test_a_changed_day_credits_what_went_away() -> None:
    """The day sent once; then its 97140 went from 1 unit to 2 and 97161 went away: credits
    for both old lines (never a silent drop), a charge for the new 97140."""
    a = FtLine(code="97140", modifiers=("GP", "XU"), units=1, cdm="41060", performer=None,
               diagnoses=("Z47.1",), line_id="l1")  # fmt: skip
    b = FtLine(code="97161", modifiers=("GP",), units=1, cdm="41240", performer=None,
               diagnoses=("Z47.1",), line_id="l2")  # fmt: skip
    a2 = replace(a, units=2)
    delta = change([a, b], [a2])
    assert delta.credits == (a, b) and delta.charges == (a2,)
    assert change([a2], [a2]).empty
    assert FtLine.from_json(a2.to_json()) == a2
    result, _ = _day("knee-eval-97161-97140-xu")
    header = header_of(result.parsed.facts, result.parties)  # type: ignore[attr-defined]
    text = dft_message(header=header, delta=delta, message_id=control_id("t", "k", 2),
                       at=datetime(2026, 8, 1, tzinfo=UTC),
                       profile=SiteProfile(transaction_code="cpt", diagnoses="ft1"))  # fmt: skip
    ft1 = [s.split("|") for s in text.split("\r") if s.startswith("FT1")]
    assert [(f[6], f[7].split("^")[0], f[10]) for f in ft1] == [
        ("CR", "97140", "1"), ("CR", "97161", "1"), ("CG", "97140", "2")]  # fmt: skip
    assert "DG1" not in text  # the profile puts diagnoses in FT1-19 only
    assert control_id("t", "k", 2) == control_id("t", "k", 2) != control_id("t", "k", 3)
    assert len(control_id("t", "k", 2)) == 20


def test_837p_replacement_void_and_what_cannot_be_claimed() -> None:
    result, decision = _day("knee-eval-97161-97140-xu")
    facts, parties = result.parsed.facts, result.parties  # type: ignore[attr-defined]
    at = datetime(2026, 8, 1, 12, tzinfo=UTC)
    text = claim_837p(decision, facts, parties, envelope=ENVELOPE, provider=PROVIDER,  # type: ignore[arg-type]
                      control=ClaimControl(control_number=7, at=at, frequency="7",
                                           payer_claim_number="PCN123"), payer_id="P1")  # fmt: skip
    assert "*11:B:7*" in text and "REF*F8*PCN123~" in text
    assert x12_accepted(text)[0]
    void = claim_837p(
        None,
        facts,
        parties,
        envelope=ENVELOPE,
        provider=PROVIDER,  # type: ignore[arg-type]
        control=ClaimControl(control_number=8, at=at, frequency="8"),
        previous=decision,
        payer_id="P1",
    )  # type: ignore[arg-type]
    assert "*11:B:8*" in void and void.count("LX*") == 2 and x12_accepted(void)[0]
    with pytest.raises(Unwritable, match="no billable line"):
        claim_837p(replace(decision, lines=()), facts, parties, envelope=ENVELOPE,  # type: ignore[type-var]
                   provider=PROVIDER, control=ClaimControl(control_number=9, at=at))  # fmt: skip
    with pytest.raises(Unwritable, match="no payer id"):
        claim_837p(decision, facts, parties, envelope=ENVELOPE, provider=PROVIDER,  # type: ignore[arg-type]
                   control=ClaimControl(control_number=9, at=at))  # fmt: skip
    accented = replace(parties, patient=replace(parties.patient, family="Müller"))  # type: ignore[type-var]
    text = claim_837p(decision, facts, accented, envelope=ENVELOPE, provider=PROVIDER,  # type: ignore[arg-type]
                      control=ClaimControl(control_number=10, at=at), payer_id="P1")  # fmt: skip
    assert "NM1*IL*1*MULLER*" in text and x12_accepted(text)[0]
    with pytest.raises(Unwritable, match="no ICD-10-CM diagnosis"):
        claim_837p(
            decision,
            facts,
            replace(parties, diagnoses=()),
            envelope=ENVELOPE,  # type: ignore[type-var]
            provider=PROVIDER,
            control=ClaimControl(control_number=9, at=at),
        )  # type: ignore[arg-type]


def test_emit_x12_needs_a_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["replay", str(FIXTURES / "knee-balance-47min"), "--out", str(tmp_path / "o"),
            "--emit", "x12"]  # fmt: skip
    assert main(args) == 2
    assert "--emit x12 needs an x12-837p target" in capsys.readouterr().err
    assert main([*args[:-1], "fhir,pdf"]) == 2
    assert "formats are fhir, hl7v2 and x12" in capsys.readouterr().err


def test_two_equal_lines_are_two_charges() -> None:
    """Multisets: one of two equal lines gone is one credit, never both, never none."""
    a = FtLine(code="97110", modifiers=("GP",), units=1, cdm=None, performer=None, diagnoses=(),
               line_id="l1")  # fmt: skip
    assert change([a, a], [a]).credits == (a,) and change([a, a], [a]).charges == ()
    assert change([a], [a, a]).charges == (a,)


def test_free_text_is_escaped_not_lost() -> None:
    """A name with ER7's special characters is escaped (\\S\\, \\T\\), and the message still
    validates strictly."""
    result, _ = _day("knee-eval-97161-97140-xu")
    header = replace(header_of(result.parsed.facts, result.parties), family="O^Brien & Co")  # type: ignore[attr-defined]
    line = FtLine(code="97110", modifiers=("GP",), units=1, cdm=None, performer=None,
                  diagnoses=(), line_id="l1")  # fmt: skip
    text = dft_message(header=header, delta=change((), [line]), message_id="M1",
                       at=datetime(2026, 8, 1, tzinfo=UTC), profile=SiteProfile())  # fmt: skip
    pid = next(s for s in text.split("\r") if s.startswith("PID"))
    assert "O\\S\\Brien \\T\\ Co^" in pid
    msg = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert msg.validate()


_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=0x24F, blacklist_characters="\x7f"),
                max_size=20).filter(lambda s: s.strip() == s)  # fmt: skip
_SHORT = _TEXT.filter(lambda s: len(s) <= 5)  # escaped, within v2.5.1's 15 (CX) and 20 (HD)
_CODE = st.from_regex(r"\A[A-Z0-9]{1,5}\Z")
_UNESCAPE = {"\\F\\": "|", "\\S\\": "^", "\\T\\": "&", "\\R\\": "~", "\\E\\": "\\"}


def _unescape(text: str) -> str:
    """ER7's escape sequences read back (HL7 v2.5.1 §2.7), left to right."""
    out, i = [], 0
    while i < len(text):
        seq = text[i : i + 3]
        if seq in _UNESCAPE:
            out.append(_UNESCAPE[seq])
            i += 3
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(family=_TEXT.filter(bool), given_name=_TEXT, encounter=_SHORT,
       lines=st.lists(st.tuples(_CODE, st.lists(st.sampled_from(["GP", "GO", "CQ", "KX", "59"]),
                                                max_size=3),
                                st.integers(1, 12), st.lists(_CODE, max_size=3), _TEXT),
                      min_size=1, max_size=5),
       credits=st.integers(0, 2), diagnoses=st.sampled_from(["both", "ft1"]),
       code=st.sampled_from(["cdm", "cpt"]), facility=_SHORT)  # fmt: skip
def test_any_dft_parses_strictly_and_reads_back(
    family: str, given_name: str, encounter: str, lines: list[tuple[str, list[str], int,
    list[str], str]], credits: int, diagnoses: str, code: str, facility: str,
) -> None:  # fmt: skip
    """The message is composed as text (not through hl7apy's tree): whatever the names,
    codes and profile, hl7apy parses it strictly, it validates, and every value reads back
    as given (escaped on the way, unescaped by the parser)."""
    result, _ = _day("knee-eval-97161-97140-xu")
    header = replace(header_of(result.parsed.facts, result.parties), family=family,  # type: ignore[attr-defined]
                     given=given_name, encounter=encounter)  # fmt: skip
    ft = [FtLine(code=c, modifiers=tuple(m), units=u, cdm=f"4{c}", performer=None,
                 diagnoses=tuple(d), line_id=f"l{i}", description=desc)
          for i, (c, m, u, d, desc) in enumerate(lines)]  # fmt: skip
    delta = change(ft[:credits], ft[credits:])
    profile = SiteProfile(diagnoses=diagnoses, transaction_code=code,  # type: ignore[arg-type]
                          sending_facility=facility)  # fmt: skip
    text = dft_message(header=header, delta=delta, message_id="M1",
                       at=datetime(2026, 8, 1, tzinfo=UTC), profile=profile)  # fmt: skip
    msg = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert msg.validate()
    unescape = _unescape
    assert unescape(msg.pid.pid_5.pid_5_1.to_er7()) == family
    assert unescape(msg.pid.pid_5.pid_5_2.to_er7()) == given_name
    assert unescape(msg.pv1.pv1_19.to_er7()) == encounter
    assert unescape(msg.msh.msh_4.to_er7()) == facility
    sent = list(delta.credits) + list(delta.charges)
    ft1s = [g.ft1 for g in msg.children if g.name == "DFT_P03_FINANCIAL"]
    assert len(ft1s) == len(sent)
    for seg, ln in zip(ft1s, sent, strict=True):
        assert seg.ft1_6.to_er7() == ("CR" if ln in delta.credits else "CG")
        assert seg.ft1_10.to_er7() == str(ln.units)
        assert seg.ft1_7.ft1_7_1.to_er7() == (ln.cdm if code == "cdm" else ln.code)
        assert unescape(seg.ft1_7.ft1_7_2.to_er7()) == ln.description
        assert [f.to_er7() for f in seg.children if f.name == "FT1_26"] == [
            f"{m}^^CPTM" for m in ln.modifiers]  # fmt: skip
        assert [f.to_er7() for f in seg.children if f.name == "FT1_19"] == [
            f"{d}^^I10" for d in ln.diagnoses]  # fmt: skip
    dg1 = [s for s in msg.children if s.name == "DG1"]
    wanted = dict.fromkeys(d for ln in delta.current + delta.credits for d in ln.diagnoses)
    assert len(dg1) == (len(wanted) if diagnoses == "both" else 0)


def test_a_patient_without_a_name_is_refused() -> None:
    """PID-5 is required: a day whose patient has no name is not sent as an invalid message."""
    result, _ = _day("knee-eval-97161-97140-xu")
    header = replace(header_of(result.parsed.facts, result.parties), family="", given=" ")  # type: ignore[attr-defined]
    line = FtLine(code="97110", modifiers=("GP",), units=1, cdm=None, performer=None,
                  diagnoses=(), line_id="l1")  # fmt: skip
    with pytest.raises(ValueError, match="PID-5"):
        dft_message(header=header, delta=change((), [line]), message_id="M1",
                    at=datetime(2026, 8, 1, tzinfo=UTC), profile=SiteProfile())  # fmt: skip


def test_an_unchecked_birth_date_and_a_long_description_keep_the_segments_whole() -> None:
    """A birth date that is not a FHIR date is left out of PID-7 (it cut the segment when it
    held a '|'), and a description cut to FT1-7.2's 199 characters never splits an escape."""
    result, _ = _day("knee-eval-97161-97140-xu")
    header = replace(header_of(result.parsed.facts, result.parties), birth_date="garbage|x")  # type: ignore[attr-defined]
    description = "x" * 198 + "&rest"
    line = FtLine(code="97110", modifiers=("GP",), units=1, cdm="41010", performer=None,
                  diagnoses=(), line_id="l1", description=description)  # fmt: skip
    text = dft_message(header=header, delta=change((), [line]), message_id="M1",
                       at=datetime(2026, 8, 1, tzinfo=UTC), profile=SiteProfile())  # fmt: skip
    msg = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert msg.validate()
    pid = next(s for s in text.split("\r") if s.startswith("PID")).split("|")
    assert pid[7] == "" and pid[8] in {"M", "F", "O", "U"}
    ft1 = next(s for s in text.split("\r") if s.startswith("FT1")).split("|")
    code, shown, system = ft1[7].split("^")
    assert (code, system) == ("41010", "CDM") and shown == "x" * 198
    ok = replace(header, birth_date="1950-04-07")
    text = dft_message(header=ok, delta=change((), [line]), message_id="M2",
                       at=datetime(2026, 8, 1, tzinfo=UTC), profile=SiteProfile())  # fmt: skip
    assert next(s for s in text.split("\r") if s.startswith("PID")).split("|")[7] == "19500407"
