"""Edits: NCCI PTP pairs, MUE caps, evaluation limits, substitutions, review thresholds (§4)."""

from __future__ import annotations

import dataclasses
from datetime import date
from types import MappingProxyType

import pytest

from adapter.domain import FindingCode, MueEdit, PtpEdit, Rulebook, RuleSource, Severity
from adapter.rules import evaluate

from .build import DC, OT, PT, PT2, day, iv, lines, units_by_code

PROV = RuleSource(ref="test", citation="test", confidence="HIGH", effective_from=date(2020, 1, 1))


def with_ptp(rb: Rulebook, col1: str, col2: str, indicator: int) -> Rulebook:
    edit = PtpEdit(
        column1=col1,
        column2=col2,
        modifier_indicator=indicator,
        distinct_by="interval",
        from_cms_file=True,
        source=dataclasses.replace(PROV, ref=f"ncci-file:test:{col1}/{col2}"),
    )
    return dataclasses.replace(rb, ptp=MappingProxyType({**rb.ptp, (col1, col2): (edit,)}))


def with_mue(rb: Rulebook, code: str, max_units: int) -> Rulebook:
    edit = MueEdit(code=code, max_units=max_units, adjudication="3", source=PROV)
    return dataclasses.replace(rb, mue=MappingProxyType({**rb.mue, code: (edit,)}))


def finding_codes(d: object) -> dict[str, Severity]:
    return {f.code.value: f.severity for f in d.findings}  # type: ignore[attr-defined]


def test_ncci_pair_in_separate_intervals_gets_xu_on_column_2(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("a", "97530", 0, 30), iv("b", "97116", 30, 15)), rulebook)
    assert sorted(lines(d)) == [("97116", 1, ("GP", "XU")), ("97530", 2, ("GP",))]
    b = next(ln for ln in d.lines if ln.code == "97116")
    assert "ncci:97530/97116" in b.rule_refs
    assert any("XU" in r and "separate documented time intervals" in r for r in b.reasons)


def test_ncci_pair_for_commercial_gets_59(rulebook: Rulebook) -> None:
    d = evaluate(
        day(iv("a", "97530", 0, 30), iv("b", "97116", 30, 15), payer="commercial"), rulebook
    )
    assert ("97116", 1, ("GP", "59")) in lines(d)


def test_ncci_pair_without_separate_intervals_drops_column_2(rulebook: Rulebook) -> None:
    # interleaved documentation: 97116 inside the 97530 period by a second PT (no patient overlap
    # check applies to the same time? it does: different codes overlapping are held).
    # Use minutes-only documentation for 97116 under a profile that accepts it as a warning.
    medicare = rulebook.payers["medicare"]
    lax = dataclasses.replace(medicare, id="lax", minutes_without_times=Severity.WARNING)
    rb = dataclasses.replace(rulebook, payers=MappingProxyType({**rulebook.payers, "lax": lax}))
    d = evaluate(day(iv("a", "97530", 0, 30), iv("b", "97116", None, 15), payer="lax"), rb)
    assert units_by_code(d) == {"97530": 2}
    (f,) = [f for f in d.findings if f.code is FindingCode.NCCI_NOT_DISTINCT]
    assert f.severity is Severity.ERROR and f.intervention_ids == ("b",) and f.line_code == "97116"
    assert "b" in d.held_intervention_ids


def test_no_ncci_edit_between_97530_and_97110_or_97112(rulebook: Rulebook) -> None:
    d = evaluate(
        day(iv("a", "97530", 0, 15), iv("b", "97110", 15, 15), iv("c", "97112", 30, 15)), rulebook
    )
    assert sorted(lines(d)) == [
        ("97110", 1, ("GP",)),
        ("97112", 1, ("GP",)),
        ("97530", 1, ("GP",)),
    ]


def test_ncci_indicator_0_never_billable_together(rulebook: Rulebook) -> None:
    rb = with_ptp(rulebook, "97112", "97110", 0)
    d = evaluate(day(iv("a", "97112", 0, 30), iv("b", "97110", 60, 30)), rb)
    assert units_by_code(d) == {"97112": 2}
    assert finding_codes(d)["ncci-not-allowed"] is Severity.ERROR


def test_imported_indicator_9_means_no_edit(rulebook: Rulebook) -> None:
    rb = with_ptp(rulebook, "97530", "97116", 9)
    d = evaluate(day(iv("a", "97530", 0, 30), iv("b", "97116", 30, 15)), rb)
    assert ("97116", 1, ("GP",)) in lines(d)


def test_evaluation_with_97140_needs_separate_interval(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("e", "97161", 0, 30), iv("m", "97140", 30, 15)), rulebook)
    assert sorted(lines(d)) == [("97140", 1, ("GP", "XU")), ("97161", 1, ("GP",))]


def test_chiropractic_manipulation_with_97140_same_region_not_reportable(
    rulebook: Rulebook,
) -> None:
    d = evaluate(
        day(
            iv("c", "98940", None, None, DC, body_sites=("lumbar",)),
            iv("m", "97140", 30, 15, PT, body_sites=("lumbar",)),
        ),
        rulebook,
    )
    assert units_by_code(d) == {"98940": 1}
    assert finding_codes(d)["ncci-not-distinct"] is Severity.ERROR


def test_chiropractic_manipulation_with_97140_other_region_gets_xs(rulebook: Rulebook) -> None:
    d = evaluate(
        day(
            iv("c", "98940", None, None, DC, body_sites=("lumbar",)),
            iv("m", "97140", 30, 15, PT, body_sites=("cervical",)),
        ),
        rulebook,
    )
    assert sorted(lines(d)) == [("97140", 1, ("GP", "XS")), ("98940", 1, ())]


@pytest.mark.parametrize("cmt", ["98940", "98941", "98942"])
@pytest.mark.parametrize("code", ["97112", "97124"])
def test_chiropractic_manipulation_with_97112_or_97124_same_region_not_reportable(
    rulebook: Rulebook, cmt: str, code: str
) -> None:
    # domain.md §3 and §4: 98940-98942 pair with 97112, 97124 and 97140 (indicator 1, by region)
    d = evaluate(
        day(
            iv("c", cmt, None, None, DC, body_sites=("lumbar",)),
            iv("m", code, 30, 15, PT, body_sites=("Lumbar",)),
        ),
        rulebook,
    )
    assert units_by_code(d) == {cmt: 1}
    (f,) = [f for f in d.findings if f.code is FindingCode.NCCI_NOT_DISTINCT]
    assert f.severity is Severity.ERROR and f.intervention_ids == ("m",) and f.line_code == code
    assert "m" in d.held_intervention_ids


@pytest.mark.parametrize("cmt", ["98940", "98941", "98942"])
@pytest.mark.parametrize("code", ["97112", "97124"])
def test_chiropractic_manipulation_with_97112_or_97124_other_region_gets_xs(
    rulebook: Rulebook, cmt: str, code: str
) -> None:
    d = evaluate(
        day(
            iv("c", cmt, None, None, DC, body_sites=("lumbar",)),
            iv("m", code, 30, 15, PT, body_sites=("cervical",)),
        ),
        rulebook,
    )
    assert sorted(lines(d)) == [(code, 1, ("GP", "XS")), (cmt, 1, ())]
    (m,) = [ln for ln in d.lines if ln.code == code]
    assert f"ncci:{cmt}/{code}" in m.rule_refs
    tricare = evaluate(
        day(
            iv("c", cmt, None, None, DC, body_sites=("lumbar",)),
            iv("m", code, 30, 15, PT, body_sites=("cervical",)),
            payer="tricare",
        ),
        rulebook,
    )
    assert (code, 1, ("GP", "59")) in lines(tricare)


def test_a_manipulation_of_several_regions_shares_each_of_them(rulebook: Rulebook) -> None:
    """98941 over cervical, thoracic and lumbar with 97112 on the lumbar spine: the same region,
    so 97112 is not billed (found in the real-world corpus: only the first bodySite was read,
    so 97112 billed with 59). A coded site matches its coding whatever the text says; a service
    that names no site is never distinct by region."""
    cmt = iv("c", "98941", None, None, DC, body_sites=("cervical", "thoracic", "lumbar"))
    d = evaluate(day(cmt, iv("m", "97112", 30, 15, PT, body_sites=("lumbar",))), rulebook)
    assert units_by_code(d) == {"98941": 1} and "m" in d.held_intervention_ids
    sct = "http://snomed.info/sct|122496007"  # lumbar spine structure
    coded = iv("c", "98940", None, None, DC, body_sites=(sct, "low back"))
    d = evaluate(day(coded, iv("m", "97140", 30, 15, PT, body_sites=(sct, "lumbar"))), rulebook)
    assert units_by_code(d) == {"98940": 1}
    d = evaluate(day(iv("c", "98940", None, None, DC, body_sites=("lumbar",)),
                     iv("m", "97140", 30, 15, PT)), rulebook)  # fmt: skip
    assert units_by_code(d) == {"98940": 1}
    d = evaluate(day(cmt, iv("m", "97112", 30, 15, PT, body_sites=("left shoulder",))), rulebook)
    assert ("97112", 1, ("GP", "XS")) in lines(d)


def test_mue_caps_units(rulebook: Rulebook) -> None:
    rb = with_mue(rulebook, "97112", 4)
    d = evaluate(day(iv("a", "97112", 0, 90)), rb)  # 6 units by time
    assert units_by_code(d) == {"97112": 4}
    assert finding_codes(d)["mue-exceeded"] is Severity.WARNING
    assert "test" in d.lines[0].rule_refs


def test_one_evaluation_per_discipline_per_day(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("e1", "97161", 0, 30), iv("e2", "97164", 40, 20)), rulebook)
    assert units_by_code(d) == {}
    assert finding_codes(d)["evaluation-limit"] is Severity.ERROR


def test_pt_and_ot_evaluation_same_day_allowed(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("e1", "97161", 0, 30, PT), iv("e2", "97165", 40, 30, OT)), rulebook)
    assert units_by_code(d) == {"97161": 1, "97165": 1}


def test_97750_not_with_an_evaluation_by_the_same_practitioner(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("e", "97161", 0, 30, PT), iv("t", "97750", 30, 30, PT)), rulebook)
    assert units_by_code(d) == {"97161": 1}
    assert finding_codes(d)["evaluation-exclusive"] is Severity.ERROR
    other = evaluate(day(iv("e", "97161", 0, 30, PT), iv("t", "97750", 30, 30, PT2)), rulebook)
    assert units_by_code(other) == {"97161": 1, "97750": 2}


def test_medicare_97014_reported_as_g0283(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("s", "97014", 0, 15)), rulebook)
    assert lines(d) == [("G0283", 1, ("GP",))]
    assert finding_codes(d)["code-substituted"] is Severity.INFO
    assert "payer:medicare:substitution:97014" in d.lines[0].rule_refs
    commercial = evaluate(day(iv("s", "97014", 0, 15), payer="commercial"), rulebook)
    assert lines(commercial) == [("97014", 1, ("GP",))]


def test_medicare_97010_bundled(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("h", "97010", 0, 10), iv("a", "97110", 10, 15)), rulebook)
    assert lines(d) == [("97110", 1, ("GP",))]
    assert finding_codes(d)["code-bundled"] is Severity.INFO


@pytest.mark.parametrize("payer", ["medicare", "medicaid", "tricare", "commercial"])
def test_97010_bundled_for_every_payer_profile_by_default(rulebook: Rulebook, payer: str) -> None:
    # domain.md §1: 97010 is bundled for every profile by default (most payers follow status B)
    d = evaluate(day(iv("h", "97010", 0, 10), iv("a", "97110", 10, 15), payer=payer), rulebook)
    assert lines(d) == [("97110", 1, ("GP",))]
    (f,) = [f for f in d.findings if f.code is FindingCode.CODE_BUNDLED]
    assert f.severity is Severity.INFO and f.intervention_ids == ("h",) and f.line_code == "97010"
    assert "h" not in d.held_intervention_ids  # documented only: nothing to fix


def test_a_profile_may_unbundle_97010_explicitly(rulebook: Rulebook) -> None:
    commercial = rulebook.payers["commercial"]
    assert "97010" in commercial.bundled
    opt_out = dataclasses.replace(PROV, ref="payer:pays-hot-packs:unbundled:97010")
    pays = dataclasses.replace(
        commercial, id="pays-hot-packs", unbundled=MappingProxyType({"97010": opt_out})
    )
    rb = dataclasses.replace(
        rulebook, payers=MappingProxyType({**rulebook.payers, "pays-hot-packs": pays})
    )
    d = evaluate(day(iv("h", "97010", 0, 10), iv("a", "97110", 10, 15), payer="pays-hot-packs"), rb)
    assert sorted(lines(d)) == [("97010", 1, ("GP",)), ("97110", 1, ("GP",))]
    assert "code-bundled" not in finding_codes(d)
    (hot,) = [ln for ln in d.lines if ln.code == "97010"]
    assert "payer:pays-hot-packs:unbundled:97010" in hot.rule_refs  # says why it bills
    # an opt-out not yet in effect leaves the default bundling in place
    later = dataclasses.replace(opt_out, effective_from=date(2027, 1, 1))
    rb_later = dataclasses.replace(
        rb,
        payers=MappingProxyType(
            {**rb.payers, "pays-hot-packs": dataclasses.replace(
                pays, unbundled=MappingProxyType({"97010": later})
            )}
        ),
    )  # fmt: skip
    d = evaluate(
        day(iv("h", "97010", 0, 10), iv("a", "97110", 10, 15), payer="pays-hot-packs"), rb_later
    )
    assert lines(d) == [("97110", 1, ("GP",))]
    assert finding_codes(d)["code-bundled"] is Severity.INFO


def test_97112_over_four_units_without_justification_warns(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("a", "97112", 0, 75)), rulebook)  # 5 units
    assert units_by_code(d) == {"97112": 5}  # a warning, never a cap
    assert finding_codes(d)["units-over-threshold"] is Severity.WARNING


def test_97112_over_four_units_with_justification_is_quiet(rulebook: Rulebook) -> None:
    note = (
        "Extended balance training with perturbations, medically necessary due to two falls "
        "this week; patient tolerated well and improved stance."
    )
    d = evaluate(day(iv("a", "97112", 0, 75, note=note)), rulebook)
    assert "units-over-threshold" not in finding_codes(d)


def test_97112_over_two_units_with_97110_warns(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("a", "97112", 0, 45), iv("b", "97110", 45, 15)), rulebook)
    assert units_by_code(d) == {"97112": 3, "97110": 1}
    (f,) = [f for f in d.findings if f.code is FindingCode.UNITS_OVER_THRESHOLD]
    assert "97110" in f.message
    alone = evaluate(day(iv("a", "97112", 0, 45)), rulebook)
    assert "units-over-threshold" not in finding_codes(alone)


def test_no_seven_day_rule_for_97112(rulebook: Rulebook) -> None:
    # domain.md §4: there is no rule against 97112 after 97110-97546 in the previous 7 days;
    # the engine sees one day only and must bill 97112 on its own merits.
    d = evaluate(day(iv("a", "97112", 0, 30)), rulebook)
    assert units_by_code(d) == {"97112": 2}


def test_a_dropped_code_lends_no_minutes_to_the_others(rulebook: Rulebook) -> None:
    # review finding: 97140 (column 2 of 97161, not distinct) held; its 20 minutes must not
    # raise 97110's units: 97110 alone is 20 min -> 1 unit
    d = evaluate(
        day(iv("e", "97161", 0, 30), iv("m", "97140", 20, 20), iv("x", "97110", 40, 20)), rulebook
    )
    assert units_by_code(d) == {"97161": 1, "97110": 1}
    assert "allocated again" in d.explain()
    d = evaluate(
        day(iv("e", "97161", 0, 30), iv("t", "97750", 30, 20), iv("x", "97110", 50, 20)), rulebook
    )
    assert units_by_code(d) == {"97161": 1, "97110": 1}


def test_slp_evaluations_are_not_limited_to_one_a_day(rulebook: Rulebook) -> None:
    from .build import SLP

    d = evaluate(day(iv("s1", "92523", 0, 60, SLP), iv("s2", "92524", 60, 30, SLP)), rulebook)
    assert units_by_code(d) == {"92523": 1, "92524": 1}


def test_two_distinct_service_reasons_give_one_modifier_not_a_crash(rulebook: Rulebook) -> None:
    from decimal import Decimal

    from adapter.domain import KxSpend

    from .build import PTA

    d = evaluate(
        day(
            iv("e", "97161", 0, 30),
            iv("m", "97140", 30, 30, PTA, body_sites=("lumbar",)),
            iv("c", "98940", 70, 10, DC, body_sites=("cervical",)),
            kx_spend=KxSpend(pt_slp=Decimal("5000")),
        ),
        rulebook,
    )
    (m,) = [ln for ln in d.lines if ln.code == "97140"]
    assert m.modifiers == ("GP", "CQ", "XS", "KX")
    assert any("one distinct-service modifier" in r for r in m.reasons)
