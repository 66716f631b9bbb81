"""Prices and expected allowed amounts (domain.md §6), computed by hand from the shipped synthetic
CMS files (mappings/cms/pfs/: PPRRVU26_JAN-synthetic.csv, GPCI2026-synthetic.csv; MAC 99999
locality 01: work GPCI 1.000, PE GPCI 0.950, MP GPCI 0.700; conversion factor $33.4009), the
synthetic chargemaster (mappings/chargemaster.csv) and contract rates."""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.domain import (
    CdmEntry,
    ChargeLine,
    Discipline,
    FindingCode,
    LinePrice,
    Rulebook,
    RuleSource,
    Severity,
)
from adapter.mappings import load_rulebook
from adapter.rules.evaluate import evaluate
from adapter.rules.money import price_lines

from .build import PT, PTA, day, iv, sequential

D = Decimal
CF = D("33.4009")


def cents(x: Decimal) -> Decimal:
    return x.quantize(D("0.01"), rounding=ROUND_HALF_UP)


@pytest.fixture(scope="module")
def rulebook() -> Rulebook:
    return load_rulebook()


def by_code(d: object) -> dict[str, LinePrice]:
    return {ln.code: ln.price for ln in d.lines}  # type: ignore[attr-defined]


def test_medicare_allowed_amounts_with_the_therapy_mppr(rulebook: Rulebook) -> None:
    """97110 30 min + 97140 15 min, Medicare: 97110 x2, 97140 x1.

    per unit: 97110 (0.45 x 1.000 + 0.42 x 0.950 + 0.02 x 0.700) = 0.863 RVU -> x 33.4009;
              97140 (0.43 + 0.37 x 0.950 + 0.014) = 0.7955 RVU
    MPPR: the highest PE is 97110's (0.42 > 0.37): its first unit keeps full PE; 97110's second
    unit and 97140's unit lose half of their PE part (0.399 and 0.3515 RVU x 0.5).
    97110: (2 x 0.863 - 0.399 x 0.5) x 33.4009 = 1.5265 x 33.4009 = 50.9865 -> $50.99
    97140: (0.7955 - 0.3515 x 0.5) x 33.4009 = 0.61975 x 33.4009 = 20.7002 -> $20.70
    charges: 97110 CDM 41010 $95.00 x 2 = $190.00; 97140 CDM 41060 $92.00 -> total $282.00
    """
    d = evaluate(day(*sequential(("97110", 30), ("97140", 15))), rulebook)
    p = by_code(d)
    assert p["97110"].allowed == cents((2 * D("0.863") - D("0.399") * D("0.5")) * CF) == D("50.99")
    assert p["97140"].allowed == cents((D("0.7955") - D("0.3515") * D("0.5")) * CF) == D("20.70")
    assert (p["97110"].unit_price, p["97110"].net, p["97110"].cdm_code) == (
        D("95.00"), D("190.00"), "41010"
    )  # fmt: skip
    assert p["97140"].net == D("92.00")
    assert d.total == D("282.00") and d.allowed_total == D("71.69")
    line = next(ln for ln in d.lines if ln.code == "97110")
    assert {"cdm:41010", "pfs:2026:99999-01", "money:mppr"} <= set(line.rule_refs)
    text = d.explain()
    assert "charge: CDM 41010 $95.00 x 2 = $190.00" in text
    assert "(0.45 x 1.000 + 0.42 x 0.950 + 0.02 x 0.700) x $33.4009" in text
    assert "MPPR: PE of 1 unit(s) less 50%" in text and "= $50.99" in text


def test_an_assistant_line_is_paid_at_85_percent(rulebook: Rulebook) -> None:
    """PTA alone 97110 30 min: 97110 x2 GP CQ. The only always-therapy line: its first unit
    keeps full PE. (2 x 0.863 - 0.399 x 0.5) x 33.4009 = 50.98647 x 0.85 = 43.3385 -> $43.34."""
    d = evaluate(day(iv("a", "97110", 0, 30, PTA)), rulebook)
    (line,) = d.lines
    assert "CQ" in line.modifiers
    want = cents((2 * D("0.863") - D("0.399") * D("0.5")) * CF * D("0.85"))
    assert line.price.allowed == want == D("43.34")
    assert "money:assistant-rate" in line.rule_refs


def test_commercial_allowed_amounts_come_from_the_contract(rulebook: Rulebook) -> None:
    """Commercial (CPT/AMA per code): 97110 30 min -> x2 at the contract's $32.00 = $64.00; no
    MPPR, no fee schedule."""
    d = evaluate(day(iv("a", "97110", 0, 30), payer="commercial"), rulebook)
    (line,) = d.lines
    assert line.price.allowed == D("64.00") and line.price.net == D("190.00")
    assert "contract:commercial:97110" in line.rule_refs


def test_a_code_without_a_price_is_an_error_never_a_guess(rulebook: Rulebook) -> None:
    money = dataclasses.replace(
        rulebook.money,
        chargemaster={k: v for k, v in rulebook.money.chargemaster.items() if k != "97140"},
    )
    rb = dataclasses.replace(rulebook, money=money)
    d = evaluate(day(*sequential(("97110", 30), ("97140", 15))), rb)
    p = by_code(d)
    assert p["97140"].unit_price is None and p["97140"].net is None
    assert p["97140"].allowed == D("20.70")  # still expected to be allowed
    (f,) = [f for f in d.findings if f.code is FindingCode.NO_PRICE]
    assert f.severity is Severity.ERROR and f.line_code == "97140" and f.intervention_ids == ("p2",)
    assert {ln.code for ln in d.lines} == {"97110", "97140"}  # the units stand
    assert d.total is None  # no total from part of the lines


def test_the_price_in_effect_on_the_date_and_a_modifier_row_first(rulebook: Rulebook) -> None:
    notes: list[str] = []
    (earlier,), _ = price_lines([line("97110", 2, ("GP",))], date(2025, 6, 2), "medicare",
                                rulebook.money, notes)  # fmt: skip
    assert (earlier.price.cdm_code, earlier.price.unit_price) == ("40110", D("90.00"))
    assert earlier.price.allowed is None and "no fee schedule for 2025" in notes[0]
    src = RuleSource(ref="cdm:X1", citation="test", confidence="LOW",
                     effective_from=date(2026, 1, 1))  # fmt: skip
    cq_row = CdmEntry(cdm_code="X1", code="97110", modifier="CQ", description="PTA",
                      department=None, unit_price=D("80.00"), discipline=Discipline.PT,
                      source=src)  # fmt: skip
    cm = {**rulebook.money.chargemaster, "97110": (*rulebook.money.chargemaster["97110"], cq_row)}
    rb = dataclasses.replace(rulebook, money=dataclasses.replace(rulebook.money, chargemaster=cm))
    pta = evaluate(day(iv("a", "97110", 0, 30, PTA)), rb)
    assert pta.lines[0].price.cdm_code == "X1" and pta.lines[0].price.net == D("160.00")
    pt = evaluate(day(iv("a", "97110", 0, 30, PT)), rb)
    assert pt.lines[0].price.cdm_code == "41010"


# -- properties ------------------------------------------------------------------------------------
THERAPY = ["97110", "97112", "97116", "97140", "97530", "97535", "97035", "97161", "92507"]


def line(code: str, units: int, modifiers: tuple[str, ...]) -> ChargeLine:
    return ChargeLine(code=code, units=units, modifiers=modifiers, discipline=Discipline.PT,
                      intervention_ids=(f"i-{code}",), minutes=15 * units, method="cms",
                      rule_refs=(), reasons=())  # fmt: skip


lines_st = st.lists(
    st.tuples(
        st.sampled_from(THERAPY), st.integers(1, 6), st.sampled_from([("GP",), ("GP", "CQ")])
    ),
    min_size=1,
    max_size=6,
    unique_by=lambda t: t[0],
)


@settings(max_examples=60, deadline=None)
@given(lines_st)
def test_allowed_amounts_are_bounded_and_the_mppr_only_reduces(spec: list) -> None:  # type: ignore[type-arg]
    rb = load_rulebook()
    given_lines = [line(c, u, m) for c, u, m in spec]
    on = date(2026, 3, 2)
    priced, findings = price_lines(given_lines, on, "medicare", rb.money, [])
    no_mppr = dataclasses.replace(rb.money, mppr=None)
    full, _ = price_lines(given_lines, on, "medicare", no_mppr, [])
    assert findings == []
    for p, f in zip(priced, full, strict=True):
        assert p.price.allowed is not None and f.price.allowed is not None
        assert D(0) <= p.price.allowed <= f.price.allowed
        assert p.price.net == p.price.unit_price * p.units  # type: ignore[operator]
        if "CQ" in p.modifiers:
            plain, _ = price_lines([dataclasses.replace(p, modifiers=("GP",))], on, "medicare",
                                   no_mppr, [])  # fmt: skip
            assert f.price.allowed <= plain[0].price.allowed  # type: ignore[operator]
    # the reduction is the PE of every unit but one, whatever the order of the lines
    again, _ = price_lines(list(reversed(given_lines)), on, "medicare", rb.money, [])
    total = sum(p.price.allowed for p in priced)  # type: ignore[misc]
    reordered = sum(p.price.allowed for p in again)  # type: ignore[misc]
    assert abs(total - reordered) <= D("0.01") * len(spec)


def test_the_full_pe_unit_is_the_highest_pe_payment_not_an_assistants(rulebook: Rulebook) -> None:
    """(review) 97112 by the PTA alone (CQ) and 97750 by the PT, 15 min each, PE RVU 0.52 both:
    the PT's unit is paid its PE in full (its PE payment is higher than the CQ unit's 85 %):
    97750 (0.45 + 0.494 + 0.014) x 33.4009 = $32.00; 97112 (1.008 - 0.494 x 0.5) x 33.4009 x
    0.85 = $21.61; whatever order the lines come in."""
    from .build import PTA as ASSISTANT

    d = evaluate(day(iv("a", "97112", 0, 15, ASSISTANT), iv("b", "97750", 15, 15, PT)), rulebook)
    p = by_code(d)
    assert p["97750"].allowed == cents(D("0.958") * CF) == D("32.00")
    assert p["97112"].allowed == cents((D("1.008") - D("0.247")) * CF * D("0.85")) == D("21.61")
    lines = list(d.lines)
    back, _ = price_lines(
        [dataclasses.replace(ln, price=LinePrice()) for ln in reversed(lines)],
        d.service_date, "medicare", rulebook.money, [],
    )  # fmt: skip
    assert {ln.code: ln.price.allowed for ln in back} == {"97750": D("32.00"), "97112": D("21.61")}


def test_a_contract_rate_for_a_modifier_applies_only_with_it(rulebook: Rulebook) -> None:
    from adapter.domain import ContractRate

    src = RuleSource(ref="contract:t", citation="t", confidence="LOW",
                     effective_from=date(2026, 1, 1))  # fmt: skip
    cq = ContractRate(payer="commercial", code="97110", modifier="CQ", rate=D("27.20"), source=src)
    contracts = {**rulebook.money.contracts}
    contracts[("commercial", "97110")] = (cq, *contracts[("commercial", "97110")])
    money = dataclasses.replace(rulebook.money, contracts=contracts)
    (plain,), _ = price_lines([line("97110", 2, ("GP",))], date(2026, 3, 2), "commercial",
                              money, [])  # fmt: skip
    assert plain.price.allowed == D("64.00")
    (pta,), _ = price_lines([line("97110", 2, ("GP", "CQ"))], date(2026, 3, 2), "commercial",
                            money, [])  # fmt: skip
    assert pta.price.allowed == D("54.40")


def test_the_explanation_shows_every_intermediate_amount(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("a", "97110", 0, 30, PTA)), rulebook)
    text = d.explain()
    assert "= $28.8250 per unit x 2 = $57.6500" in text
    assert "(0.3990 x 0.50 x $33.4009 x 1 = -$6.6635)" in text
    assert "CQ/CO: $50.9865 paid at 85% = $43.3385" in text and "= $43.34 (rounded once" in text
