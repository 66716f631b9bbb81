"""The shipped mappings/ load into the rules of domain.md; corrupted copies fail, naming why."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from adapter.domain import CodeEntry, CodeKind, Discipline, Rulebook, RuleSource, UnitMethod
from adapter.errors import MappingError
from adapter.mappings import DEFAULT_MAPPINGS_DIR, load_rulebook

CMS_DATA = Path(__file__).parent / "data" / "cms"
PTP_SAMPLE = "ccipra-sample-f1.txt"
MUE_SAMPLE = "MCR_MUE_PractitionerServices_sample.csv"
ON = date(2026, 7, 1)  # a fixed date of service inside the shipped version's year

PT, OT, SLP = Discipline.PT, Discipline.OT, Discipline.SLP

TIMED = ["97110", "97112", "97113", "97116", "97140", "97530", "97535", "97032", "97033", "97035",
         "97750"]  # fmt: skip
PT_EVALUATIONS = ["97161", "97162", "97163"]
OT_EVALUATIONS = ["97165", "97166", "97167"]
SLP_EVALUATIONS = ["92521", "92522", "92523", "92524"]
REEVALUATIONS = {"97164": PT, "97168": OT}
# 97010-97028 supervised modalities (97020 microwave was folded into 97024 diathermy by CPT)
MODALITIES = ["97010", "97012", "97014", "97016", "97018", "97022", "97024", "97026", "97028",
              "G0283"]  # fmt: skip
UNTIMED = [*PT_EVALUATIONS, *OT_EVALUATIONS, *SLP_EVALUATIONS, *REEVALUATIONS, "97150", "92507",
           "92526", *MODALITIES]  # fmt: skip

# domain.md §4: the curated NCCI pairs, all with modifier indicator 1
THERAPY = ["97110", "97112", "97116", "97140", "97150", "97530"]
CURATED_PAIRS = [
    ("97530", "97116"),
    ("97140", "97530"),
    *((ev, "97140") for ev in PT_EVALUATIONS),
    *((code, reeval) for code in THERAPY for reeval in ("97164", "97168")),
    *(("97150", code) for code in ("97110", "97112", "97116")),
    *((dc, code) for dc in ("98940", "98941", "98942") for code in ("97112", "97124", "97140")),
]


@pytest.fixture(scope="module")
def rulebook() -> Rulebook:
    return load_rulebook()


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A private copy of the shipped mappings/ to corrupt."""
    target = tmp_path / "mappings"
    shutil.copytree(DEFAULT_MAPPINGS_DIR, target)
    return target


def edit(directory: Path, name: str, old: str, new: str, *, after: str = "") -> None:
    """Replace the first ``old`` (after the first ``after``) in ``directory/name``."""
    path = directory / name
    text = path.read_text(encoding="utf-8")
    start = text.index(after) if after else 0
    at = text.index(old, start)  # ValueError if the shipped file changed under the test
    path.write_text(text[:at] + new + text[at + len(old) :], encoding="utf-8")


def append(directory: Path, name: str, text: str) -> None:
    path = directory / name
    path.write_text(path.read_text(encoding="utf-8") + "\n" + text, encoding="utf-8")


# -- the shipped mappings ---------------------------------------------------------------------


def test_shipped_mappings_load(rulebook: Rulebook) -> None:
    assert isinstance(rulebook, Rulebook)
    assert re.fullmatch(r"2026\.5\+[0-9a-f]{12}", rulebook.version)


@pytest.mark.parametrize("code", [*TIMED, *UNTIMED, "98940", "98941", "98942"])
def test_domain_codes_are_in_the_catalog(rulebook: Rulebook, code: str) -> None:
    entry = rulebook.code(code, ON)
    assert entry is not None, code
    assert entry.code == code
    assert entry.timed is (code in TIMED)


def test_code_disciplines_and_kinds(rulebook: Rulebook) -> None:
    def entry(code: str) -> CodeEntry:
        e = rulebook.code(code, ON)
        assert e is not None
        return e

    for code in PT_EVALUATIONS:
        assert entry(code).kind is CodeKind.EVALUATION
        assert entry(code).disciplines == {PT}
    for code in OT_EVALUATIONS:
        assert entry(code).kind is CodeKind.EVALUATION
        assert entry(code).disciplines == {OT}
    for code in SLP_EVALUATIONS:
        assert entry(code).kind is CodeKind.EVALUATION
        assert entry(code).disciplines == {SLP}
    for code, discipline in REEVALUATIONS.items():
        assert entry(code).kind is CodeKind.REEVALUATION
        assert entry(code).disciplines == {discipline}
    for code in [*PT_EVALUATIONS, *OT_EVALUATIONS, *SLP_EVALUATIONS, *REEVALUATIONS]:
        assert entry(code).assistant_may_furnish is False, code
    assert entry("97150").kind is CodeKind.GROUP
    assert entry("92507").disciplines == {SLP}
    assert entry("92526").disciplines == {SLP}


@pytest.mark.parametrize(
    ("phrase", "code"),
    [
        ("neuromuscular re-education", "97112"),
        ("balance training", "97112"),
        ("pnf", "97112"),
        ("postural re-education", "97112"),
        ("proprioceptive training", "97112"),
        ("therapeutic exercise", "97110"),
        ("gait training", "97116"),
        ("therapeutic activities", "97530"),
        ("manual therapy", "97140"),
        ("joint mobilization", "97140"),
        ("soft tissue mobilization", "97140"),
        ("self-care/home management training", "97535"),
    ],
)
def test_domain_text_matches(rulebook: Rulebook, phrase: str, code: str) -> None:
    matches = {t.phrase: t.code for t in rulebook.text_matches}
    assert matches.get(phrase) == code


def _all_sources(rb: Rulebook) -> Iterator[tuple[str, RuleSource]]:
    for code, entries in rb.codes.items():
        for e in entries:
            yield f"code {code}", e.source
    for t in rb.text_matches:
        yield f"text {t.phrase}", t.source
    for pid, p in rb.payers.items():
        yield f"payer {pid}", p.source
        for s in p.substitutions:
            yield f"payer {pid} substitution {s.from_code}", s.source
        for code, prov in p.bundled.items():
            yield f"payer {pid} bundled {code}", prov
        for code, prov in p.unbundled.items():
            yield f"payer {pid} unbundled {code}", prov
    for pair, edits in rb.ptp.items():
        for e in edits:
            yield f"pair {pair}", e.source
    for u in rb.unit_thresholds:
        yield f"threshold {u.code}", u.source
    yield "evaluations", rb.evaluation_limits.source
    yield "notes", rb.notes.source


def test_every_entry_has_source_and_is_in_effect(rulebook: Rulebook) -> None:
    sources = list(_all_sources(rulebook))
    assert len(sources) >= 40 + 17 + 23  # codes, text matches, pairs at least
    for what, p in sources:
        assert len(p.citation) >= 3, what
        assert p.confidence in ("HIGH", "MED", "LOW"), what
        assert p.ref, what
        assert p.in_effect(ON), what


def test_kx_thresholds_are_in_effect_in_their_own_year_only(rulebook: Rulebook) -> None:
    medicare = rulebook.payers["medicare"]
    assert medicare.kx_thresholds
    for t in medicare.kx_thresholds:
        assert len(t.source.citation) >= 3
        assert t.source.in_effect(date(t.year, 1, 1))
        assert t.source.in_effect(date(t.year, 12, 31))
        assert not t.source.in_effect(date(t.year + 1, 1, 1))
        assert not t.source.in_effect(date(t.year - 1, 12, 31))


def test_payer_unit_methods(rulebook: Rulebook) -> None:
    assert {pid: p.method for pid, p in rulebook.payers.items()} == {
        "medicare": UnitMethod.CMS,
        "medicaid": UnitMethod.CMS,
        "tricare": UnitMethod.CMS,
        "commercial": UnitMethod.AMA,
    }
    assert rulebook.payer("medicare") is rulebook.payers["medicare"]
    assert rulebook.payer("aetna") is None


def test_medicare_profile(rulebook: Rulebook) -> None:
    medicare = rulebook.payers["medicare"]
    assert dict(medicare.discipline_modifiers) == {PT: "GP", OT: "GO", SLP: "GN"}
    assert dict(medicare.assistant_modifiers) == {PT: "CQ", OT: "CO"}
    assert medicare.assistant_special_rules is True
    assert medicare.distinct_modifier == "XU"
    assert medicare.region_modifier == "XS"
    assert medicare.kx is True
    assert medicare.kx_review_amount == Decimal("3000")
    assert {t.year: t.amount for t in medicare.kx_thresholds} == {
        2022: Decimal("2150"),
        2023: Decimal("2230"),
        2024: Decimal("2330"),
        2025: Decimal("2410"),
        2026: Decimal("2480"),
    }
    threshold = medicare.kx_threshold(2024)
    assert threshold is not None
    assert threshold.amount == Decimal("2330")
    assert medicare.kx_threshold(2021) is None
    assert [(s.from_code, s.to_code) for s in medicare.substitutions] == [("97014", "G0283")]
    assert set(medicare.bundled) == {"97010"}


def test_commercial_profile(rulebook: Rulebook) -> None:
    commercial = rulebook.payers["commercial"]
    assert dict(commercial.discipline_modifiers) == {PT: "GP", OT: "GO", SLP: "GN"}
    assert dict(commercial.assistant_modifiers) == {}
    assert "CQ" not in commercial.assistant_modifiers.values()
    assert "CO" not in commercial.assistant_modifiers.values()
    assert commercial.distinct_modifier == "59"
    assert commercial.kx is False
    assert commercial.kx_thresholds == ()
    assert commercial.kx_threshold(2026) is None
    assert commercial.substitutions == ()


def test_97010_bundled_for_every_profile_by_default(rulebook: Rulebook) -> None:
    # domain.md §1: bundled for every payer profile unless a profile unbundles it
    for pid, p in rulebook.payers.items():
        assert "97010" in p.bundled, pid
        assert p.bundled["97010"].in_effect(ON), pid
        assert p.unbundled == {}, pid
    # Medicare keeps its own entry (the manual's text, HIGH); the others the file's default
    assert rulebook.payers["medicare"].bundled["97010"].ref == "payer:medicare:bundled:97010"
    assert rulebook.payers["medicare"].bundled["97010"].confidence == "HIGH"
    for pid in ("medicaid", "tricare", "commercial"):
        assert rulebook.payers[pid].bundled["97010"].ref == "bundled:97010"
        assert rulebook.payers[pid].bundled["97010"].confidence == "MED"


UNBUNDLE_97010 = (
    '[[payer.unbundled]]\ncode = "97010"\nsource = "test contract: hot packs paid separately"\n'
    'confidence = "LOW"\neffective_from = 2026-01-01\n'
)


def test_a_profile_unbundles_a_default_bundled_code(copy: Path) -> None:
    append(copy, "payers.toml", UNBUNDLE_97010)  # the last [[payer]] is commercial
    rb = load_rulebook(copy)
    commercial = rb.payers["commercial"]
    assert set(commercial.unbundled) == {"97010"}
    assert commercial.unbundled["97010"].ref == "payer:commercial:unbundled:97010"
    assert commercial.unbundled["97010"].confidence == "LOW"
    assert rb.payers["tricare"].unbundled == {}


@pytest.mark.parametrize(("column1", "column2"), CURATED_PAIRS)
def test_curated_ncci_pairs(rulebook: Rulebook, column1: str, column2: str) -> None:
    edit_ = rulebook.ptp_edit(column1, column2, ON)
    assert edit_ is not None
    assert edit_.modifier_indicator == 1
    assert edit_.from_cms_file is False
    assert edit_.distinct_by == ("region" if column1.startswith("989") else "interval")


def test_curated_pairs_are_exactly_domain_list(rulebook: Rulebook) -> None:
    assert len(CURATED_PAIRS) == 29  # domain.md §4, 98940-98942 with 97112, 97124 and 97140
    assert set(rulebook.ptp) == set(CURATED_PAIRS)


@pytest.mark.parametrize("other", ["97110", "97112"])
def test_no_ncci_pair_between_97530_and(rulebook: Rulebook, other: str) -> None:
    assert ("97530", other) not in rulebook.ptp
    assert (other, "97530") not in rulebook.ptp
    assert rulebook.ptp_edit("97530", other, ON) is None
    assert rulebook.ptp_edit(other, "97530", ON) is None


def test_ptp_edit_is_directional(rulebook: Rulebook) -> None:
    assert rulebook.ptp_edit("97116", "97530", ON) is None
    assert rulebook.ptp_edit("97530", "97116", date(2019, 12, 31)) is None


def test_97112_unit_thresholds(rulebook: Rulebook) -> None:
    thresholds = {
        (u.max_units, u.with_codes): u for u in rulebook.unit_thresholds if u.code == "97112"
    }
    assert set(thresholds) == {(4, frozenset()), (2, frozenset({"97110", "97530"}))}
    assert thresholds[4, frozenset()].payers == frozenset()


def test_evaluation_limits(rulebook: Rulebook) -> None:
    assert rulebook.evaluation_limits.per_discipline_per_day == 1
    assert rulebook.evaluation_limits.exclusive_with_evaluation == {"97750"}


def test_no_mue_values_are_shipped(rulebook: Rulebook) -> None:
    assert dict(rulebook.mue) == {}
    assert rulebook.mue_edit("97112", ON) is None


# -- the version --------------------------------------------------------------------------------


def test_version_is_stable_for_identical_files(rulebook: Rulebook, copy: Path) -> None:
    assert load_rulebook(copy).version == rulebook.version
    assert load_rulebook(copy).version == load_rulebook(copy).version


@pytest.mark.parametrize(
    "name",
    ["rulebook.toml", "codes.toml", "payers.toml", "ncci_ptp.toml", "limits.toml",
     "documentation.toml", "modifiers.toml", "code_systems.toml"],
)  # fmt: skip
def test_version_changes_when_a_file_changes(rulebook: Rulebook, copy: Path, name: str) -> None:
    append(copy, name, "# a comment changes the bytes, so the version\n")
    changed = load_rulebook(copy).version
    assert changed != rulebook.version
    assert changed.startswith("2026.5+")


def test_version_names_the_manifest_version(copy: Path) -> None:
    edit(copy, "rulebook.toml", 'version = "2026.5"', 'version = "2027.1-site"')
    assert load_rulebook(copy).version.startswith("2027.1-site+")


# -- corrupted copies -----------------------------------------------------------------------------

EVAL_ASSISTANT = ("codes.toml", "assistant_may_furnish = false", "assistant_may_furnish = true")
CMS_MISSING = '[[cms_file]]\nkind = "ptp"\npath = "cms/missing.txt"\neffective_from = 2025-10-01\n'
CMS_MISSING += 'source = "CMS NCCI practitioner PTP edits"\n'


def _corrupt_duplicate_code(d: Path) -> None:
    text = (d / "codes.toml").read_text(encoding="utf-8")
    start = text.index("\n[[code]]\n")
    first = text[start : text.index("\n[[code]]\n", start + 1)]
    assert 'code = "97110"' in first
    append(d, "codes.toml", first)


CORRUPTIONS = {
    "invalid TOML": (
        lambda d: edit(d, "documentation.toml", "min_words = 8", "min_words = = 8"),
        "documentation.toml",
        "(file)",
        "not valid TOML",
    ),
    "unknown key in code": (
        lambda d: edit(d, "codes.toml", 'code = "97110"\n', 'code = "97110"\nunits = 4\n'),
        "codes.toml",
        "[[code]] #1 (97110)",
        "units: Extra inputs are not permitted",
    ),
    "missing source": (
        lambda d: edit(
            d,
            "codes.toml",
            'source = "CMS MCPM Pub. 100-04 Ch. 5 §20.2 (timed vs untimed therapy codes)"\n',
            "",
        ),
        "codes.toml",
        "[[code]] #1 (97110)",
        "source: Field required",
    ),
    "effective_to before effective_from": (
        lambda d: edit(
            d,
            "ncci_ptp.toml",
            "effective_from = 2020-01-01\n",
            "effective_from = 2020-01-01\neffective_to = 2019-12-31\n",
        ),
        "ncci_ptp.toml",
        "[[pair]] #1",
        "effective_to is before effective_from",
    ),
    "text_match to an unknown code": (
        lambda d: edit(d, "codes.toml", 'code = "97112"', 'code = "97799"', after='phrase = "pnf"'),
        "codes.toml",
        "[[text_match]] #4 (97799)",
        "code 97799 is not in codes.toml",
    ),
    "pair with an unknown code": (
        lambda d: edit(d, "ncci_ptp.toml", 'column2 = "97116"', 'column2 = "97999"'),
        "ncci_ptp.toml",
        "[[pair]] #1 (97530/97999)",
        "code 97999 is not in codes.toml",
    ),
    "duplicate code": (
        _corrupt_duplicate_code,
        "codes.toml",
        "(97110)",
        "duplicate of [[code]] #1 (97110)",
    ),
    "wrong discipline modifier": (
        lambda d: edit(d, "payers.toml", 'PT = "GP"', 'PT = "GO"'),
        "payers.toml",
        "[[payer]] #1 (medicare)",
        "discipline PT must carry GP, not GO",
    ),
    "kx without thresholds": (
        lambda d: edit(d, "payers.toml", "kx = false", "kx = true", after='id = "medicaid"'),
        "payers.toml",
        "[[payer]] #2 (medicaid)",
        "kx is true but no kx_threshold is listed",
    ),
    "missing file": (
        lambda d: (d / "limits.toml").unlink(),
        "limits.toml",
        "(file)",
        "missing",
    ),
    "cms_file not found": (
        lambda d: append(d, "rulebook.toml", CMS_MISSING),
        "rulebook.toml",
        "[[cms_file]] #1 (cms/missing.txt)",
        "file not found",
    ),
    "evaluation furnished by an assistant": (
        lambda d: edit(d, *EVAL_ASSISTANT, after='code = "97162"'),
        "codes.toml",
        "(97162)",
        "evaluations are never furnished by assistants",
    ),
    "evaluation marked timed": (
        lambda d: edit(d, "codes.toml", "timed = false", "timed = true", after='code = "97165"'),
        "codes.toml",
        "(97165)",
        "evaluations are untimed",
    ),
    "bad confidence": (
        lambda d: edit(d, "limits.toml", 'confidence = "HIGH"', 'confidence = "SURE"'),
        "limits.toml",
        "[evaluations]",
        "confidence",
    ),
    "unknown payer in a threshold": (
        lambda d: edit(d, "limits.toml", "payers = []", 'payers = ["aetna"]'),
        "limits.toml",
        "[[unit_threshold]] #1 (97112)",
        "payer aetna is not in payers.toml",
    ),
    "unknown code excluded with evaluations": (
        lambda d: edit(d, "limits.toml", '["97750"]', '["97750", "97799"]'),
        "limits.toml",
        "[evaluations]",
        "code 97799 is not in codes.toml",
    ),
    "pair with itself": (
        lambda d: edit(d, "ncci_ptp.toml", 'column2 = "97116"', 'column2 = "97530"'),
        "ncci_ptp.toml",
        "[[pair]] #1 (97530/97530)",
        "column1 and column2 are the same code",
    ),
    "bad modifier indicator": (
        lambda d: edit(d, "ncci_ptp.toml", "modifier_indicator = 1", "modifier_indicator = 2"),
        "ncci_ptp.toml",
        "[[pair]] #1",
        "modifier_indicator",
    ),
    "kx threshold year twice": (
        lambda d: edit(d, "payers.toml", "year = 2023", "year = 2022"),
        "payers.toml",
        "[[payer]] #1 (medicare)",
        "kx_threshold lists a year twice",
    ),
    "substitution to an unknown code": (
        lambda d: edit(d, "payers.toml", 'to = "G0283"', 'to = "G9999"'),
        "payers.toml",
        "[[payer]] #1 (medicare)",
        "code G9999 is not in codes.toml",
    ),
    "default bundled code unknown": (
        lambda d: edit(
            d, "payers.toml", '[[bundled]]\ncode = "97010"', '[[bundled]]\ncode = "97019"'
        ),
        "payers.toml",
        "[[bundled]] #1 (97019)",
        "code 97019 is not in codes.toml",
    ),
    "default bundled code twice": (
        lambda d: edit(
            d,
            "payers.toml",
            "[[bundled]]\n",
            '[[bundled]]\ncode = "97010"\nsource = "twice"\nconfidence = "LOW"\n'
            "effective_from = 2017-01-01\n\n[[bundled]]\n",
        ),
        "payers.toml",
        "[[bundled]] #2 (97010)",
        "duplicate of [[bundled]] #1 (97010)",
    ),
    "unbundling a code that is not bundled by default": (
        lambda d: append(d, "payers.toml", UNBUNDLE_97010.replace("97010", "97110")),
        "payers.toml",
        "[[payer]] #4 (commercial)",
        "97110 is not bundled by default ([[bundled]]): nothing to unbundle",
    ),
    "bundling and unbundling one code": (
        lambda d: append(
            d,
            "payers.toml",
            UNBUNDLE_97010 + "\n" + UNBUNDLE_97010.replace("payer.unbundled", "payer.bundled"),
        ),
        "payers.toml",
        "[[payer]] #4 (commercial)",
        "97010 is both bundled and unbundled",
    ),
    "malformed code": (
        lambda d: edit(d, "codes.toml", 'code = "97110"', 'code = "9711"'),
        "codes.toml",
        "[[code]] #1 (9711)",
        "code: String should match pattern",
    ),
    "upper-case phrase": (
        lambda d: edit(d, "codes.toml", 'phrase = "pnf"', 'phrase = "PNF"'),
        "codes.toml",
        "[[text_match]] #4",
        "phrase must be lower case",
    ),
    "overlapping code entries": (
        lambda d: append(
            d,
            "codes.toml",
            '[[code]]\ncode = "97110"\ndescriptor = "Therapeutic exercise"\ntimed = true\n'
            'kind = "treatment"\ndisciplines = ["PT"]\nassistant_may_furnish = true\n'
            "one_on_one = true\n"
            'source = "test overlap"\nconfidence = "LOW"\neffective_from = 2020-01-01\n',
        ),
        "codes.toml",
        "(97110)",
        "effective dates overlap another entry",
    ),
    "payer modifier without a place in the order": (
        lambda d: (
            edit(d, "modifiers.toml", '"XS", "XP", "XU", "59"', '"XS", "XP", "XU"'),
            edit(d, "modifiers.toml", '["59", "XE"', '["XE"'),
        ),
        "modifiers.toml",
        "[line]",
        "order lacks 59 (payer profile tricare)",
    ),
    "an alias claimed by two code systems": (
        lambda d: edit(
            d,
            "code_systems.toml",
            '"urn:oid:2.16.840.1.113883.6.90"',
            '"urn:oid:2.16.840.1.113883.6.12"',
        ),
        "code_systems.toml",
        "[[system]] #3",
        "urn:oid:2.16.840.1.113883.6.12 is already an alias of http://www.ama-assn.org/go/cpt",
    ),
    "a code system the parser reads moved": (
        lambda d: edit(
            d,
            "code_systems.toml",
            'canonical = "http://snomed.info/sct"',
            'canonical = "https://snomed.info/sct/x"',
        ),
        "code_systems.toml",
        "[[system]] #5",
        "the canonical URI of SNOMED-CT is http://snomed.info/sct",
    ),
    "KX without its groups": (
        lambda d: edit(
            d, "payers.toml", 'kx_groups = { PT = "PT_SLP", SLP = "PT_SLP", OT = "OT" }\n', ""
        ),
        "payers.toml",
        "[[payer]] #1 (medicare)",
        "kx is true but no kx_groups are listed",
    ),
    "modifier listed twice": (
        lambda d: edit(d, "modifiers.toml", '["GP", "GO",', '["GP", "GP", "GO",'),
        "modifiers.toml",
        "[line]",
        "order lists a modifier twice",
    ),
    "distinct-service modifier not in the order": (
        lambda d: edit(d, "modifiers.toml", '"XP", "XU"]', '"XP", "XU", "X9"]', after="distinct"),
        "modifiers.toml",
        "[line]",
        "distinct_service X9 not in order",
    ),
    "more modifiers a line than an 837P holds": (
        lambda d: edit(d, "modifiers.toml", "max_per_line = 4", "max_per_line = 5"),
        "modifiers.toml",
        "[line]",
        "max_per_line",
    ),
    "bad manifest version": (
        lambda d: edit(d, "rulebook.toml", 'version = "2026.5"', 'version = "2026 5"'),
        "rulebook.toml",
        "(manifest)",
        "version",
    ),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupted_copy_fails_naming_file_entry_reason(copy: Path, case: str) -> None:
    corrupt, file_name, entry, reason = CORRUPTIONS[case]
    corrupt(copy)
    with pytest.raises(MappingError) as info:
        load_rulebook(copy)
    err = info.value
    assert Path(err.file).name == file_name
    assert Path(err.file).parent == copy
    assert entry in err.entry
    assert reason in err.reason
    assert str(err) == f"{err.file}: {err.entry}: {err.reason}"
    assert err.exit_code == 3


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(MappingError) as info:
        load_rulebook(tmp_path / "nowhere")
    assert info.value.file == str(tmp_path / "nowhere")
    assert info.value.reason == "not a directory"


def test_relative_directory_and_default_from_another_working_directory(
    copy: Path, rulebook: Rulebook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(copy.parent)
    assert load_rulebook(copy.name).version == rulebook.version
    assert load_rulebook().version == rulebook.version


# -- CMS files listed in the manifest -------------------------------------------------------------

Q4_START, Q4_END = date(2025, 10, 1), date(2025, 12, 31)


def cms_manifest(ptp: str = PTP_SAMPLE, mue: str = MUE_SAMPLE) -> str:
    return (
        f'[[cms_file]]\nkind = "ptp"\npath = "cms/{ptp}"\neffective_from = {Q4_START}\n'
        'source = "CMS NCCI practitioner PTP edits (test sample)"\n\n'
        f'[[cms_file]]\nkind = "mue"\npath = "cms/{mue}"\neffective_from = {Q4_START}\n'
        f'effective_to = {Q4_END}\nsource = "CMS practitioner MUE values (test sample)"\n'
    )


@pytest.fixture
def with_cms(copy: Path) -> Path:
    shutil.copy(CMS_DATA / PTP_SAMPLE, copy / "cms" / PTP_SAMPLE)
    shutil.copy(CMS_DATA / MUE_SAMPLE, copy / "cms" / MUE_SAMPLE)
    append(copy, "rulebook.toml", cms_manifest())
    return copy


def test_copy_with_cms_files_loads(with_cms: Path, rulebook: Rulebook) -> None:
    rb = load_rulebook(with_cms)
    imported = [e for edits in rb.ptp.values() for e in edits if e.from_cms_file]
    assert len(imported) == 7  # 8 rows, one deleted the day it took effect
    assert ("97113", "97110") not in rb.ptp
    assert set(rb.mue) == {"97110", "97112", "97116", "97140", "97530", "97161", "97164", "G0283"}
    assert rb.version != rulebook.version
    # the curated edits are all still there
    curated = [e for edits in rb.ptp.values() for e in edits if not e.from_cms_file]
    assert len(curated) == len(CURATED_PAIRS)


def test_imported_ptp_edit_wins_over_curated(with_cms: Path) -> None:
    rb = load_rulebook(with_cms)
    assert {e.from_cms_file for e in rb.ptp["97530", "97116"]} == {True, False}
    edit_ = rb.ptp_edit("97530", "97116", Q4_START)
    assert edit_ is not None
    assert edit_.from_cms_file is True
    assert edit_.source.ref == f"ncci-file:{PTP_SAMPLE}:97530/97116"
    # 97150/97110: curated indicator 1 from 2020; the CMS file says 0 from 2021
    imported = rb.ptp_edit("97150", "97110", Q4_START)
    assert imported is not None
    assert (imported.from_cms_file, imported.modifier_indicator) == (True, 0)
    # A CMS file that lists a pair is authoritative for its whole history: before the CMS row
    # takes effect there is no edit, even though the curated row starts in 2020.
    assert rb.ptp_edit("97150", "97110", date(2020, 6, 1)) is None


def test_imported_chiropractic_edit_is_distinct_by_region(with_cms: Path) -> None:
    edit_ = load_rulebook(with_cms).ptp_edit("98940", "97140", Q4_START)
    assert edit_ is not None
    assert (edit_.from_cms_file, edit_.distinct_by) == (True, "region")


def test_deleted_imported_edit_is_not_returned_after_its_deletion(with_cms: Path) -> None:
    rb = load_rulebook(with_cms)
    in_force = rb.ptp_edit("97035", "97032", date(2023, 12, 31))
    assert in_force is not None
    assert in_force.from_cms_file is True
    assert rb.ptp_edit("97035", "97032", date(2024, 1, 1)) is None
    assert rb.ptp_edit("97035", "97032", Q4_START) is None
    assert rb.ptp_edit("97035", "97032", date(2018, 12, 31)) is None


def test_deletion_in_imported_file_wins_over_curated_edit(copy: Path) -> None:
    header = "\t".join(["Column 1", "Column 2", "*", "Effective Date", "Deletion Date", "Modifier"])
    rows = [header, "97530\t97116\t\t20200101\t20240101\t1\tMutually exclusive procedures"]
    (copy / "cms" / "ptp.txt").write_text("\n".join(rows) + "\n", encoding="latin-1")
    append(
        copy,
        "rulebook.toml",
        '[[cms_file]]\nkind = "ptp"\npath = "cms/ptp.txt"\neffective_from = 2024-01-01\n'
        'source = "CMS NCCI practitioner PTP edits (test)"\n',
    )
    rb = load_rulebook(copy)
    before = rb.ptp_edit("97530", "97116", date(2023, 12, 31))
    assert before is not None
    assert before.from_cms_file is True
    assert rb.ptp_edit("97530", "97116", date(2024, 1, 1)) is None


def test_mue_edit_within_and_outside_its_dates(with_cms: Path) -> None:
    rb = load_rulebook(with_cms)
    for on in (Q4_START, date(2025, 11, 15), Q4_END):
        mue = rb.mue_edit("97112", on)
        assert mue is not None, on
        assert mue.max_units == 4
        assert mue.source.ref == f"mue-file:{MUE_SAMPLE}:97112"
    g0283 = rb.mue_edit("G0283", Q4_START)
    assert g0283 is not None
    assert g0283.max_units == 1
    assert rb.mue_edit("97112", date(2025, 9, 30)) is None
    assert rb.mue_edit("97112", date(2026, 1, 1)) is None
    assert rb.mue_edit("97113", Q4_START) is None


def test_later_mue_quarter_wins(with_cms: Path) -> None:
    next_quarter = (
        (CMS_DATA / MUE_SAMPLE).read_text(encoding="utf-8").replace("97112,4,", "97112,3,")
    )
    (with_cms / "cms" / "mue-2026q1.csv").write_text(next_quarter, encoding="utf-8")
    append(
        with_cms,
        "rulebook.toml",
        '[[cms_file]]\nkind = "mue"\npath = "cms/mue-2026q1.csv"\neffective_from = 2026-01-01\n'
        'effective_to = 2026-03-31\nsource = "CMS practitioner MUE values (test, next quarter)"\n',
    )
    rb = load_rulebook(with_cms)
    q4, q1 = rb.mue_edit("97112", Q4_END), rb.mue_edit("97112", date(2026, 1, 1))
    assert q4 is not None
    assert q1 is not None
    assert (q4.max_units, q1.max_units) == (4, 3)
    assert rb.mue_edit("97112", date(2026, 4, 1)) is None


def test_version_changes_when_a_cms_file_changes(with_cms: Path) -> None:
    before = load_rulebook(with_cms).version
    mue = with_cms / "cms" / MUE_SAMPLE
    mue.write_text(mue.read_text(encoding="utf-8").replace("97112,4,", "97112,5,"), "utf-8")
    rb = load_rulebook(with_cms)
    assert rb.version != before
    mue_97112 = rb.mue_edit("97112", Q4_START)
    assert mue_97112 is not None
    assert mue_97112.max_units == 5


def test_invalid_cms_file_fails_naming_that_file(with_cms: Path) -> None:
    ptp = with_cms / "cms" / PTP_SAMPLE
    ptp.write_bytes(ptp.read_bytes().replace(b"20210101", b"2021-01-01"))
    with pytest.raises(MappingError) as info:
        load_rulebook(with_cms)
    assert Path(info.value.file).name == PTP_SAMPLE
    assert info.value.entry == "line 9"
    assert "effective date" in info.value.reason


def test_cms_file_of_unknown_kind(copy: Path) -> None:
    append(copy, "rulebook.toml", cms_manifest().replace('kind = "mue"', 'kind = "ncci"'))
    with pytest.raises(MappingError) as info:
        load_rulebook(copy)
    assert Path(info.value.file).name == "rulebook.toml"
    assert info.value.entry == "(manifest)"
    assert "kind" in info.value.reason


def test_cms_file_with_dates_out_of_order(with_cms: Path) -> None:
    edit(with_cms, "rulebook.toml", f"effective_to = {Q4_END}", "effective_to = 2025-09-30")
    with pytest.raises(MappingError) as info:
        load_rulebook(with_cms)
    assert Path(info.value.file).name == "rulebook.toml"
    assert "effective_to" in info.value.reason
