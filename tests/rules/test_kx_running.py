"""KX by the year's running total (domain.md §6, MCPM Ch. 5 §10.3): the line whose allowed
amount takes the total past the threshold gets KX, and every later line; the adapter's ledger
(``kx_prior``) plus the site's opening balance (``kx_spend``) are the total before the day.

Amounts from the shipped synthetic fee schedule (test_money.py shows the arithmetic): a day of
97110 30 min + 97140 15 min, Medicare, allows 97110 x2 $50.99 and 97140 x1 $20.70; the 2026
threshold is $2,480.00 and targeted review $3,000.00."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.domain import FindingCode, KxGroup, KxSpend, Rulebook, Severity
from adapter.ledger import KxLedger
from adapter.mappings import load_rulebook
from adapter.rules.evaluate import evaluate

from .build import day, sequential

D = Decimal


@pytest.fixture(scope="module")
def rulebook() -> Rulebook:
    return load_rulebook()


def mods(d: object) -> dict[str, tuple[str, ...]]:
    return {ln.code: ln.modifiers for ln in d.lines}  # type: ignore[attr-defined]


def two_lines(opening: str | None, prior: str = "0.00") -> object:
    return day(
        *sequential(("97110", 30), ("97140", 15)),
        kx_spend=KxSpend(pt_slp=D(opening) if opening is not None else None, ot=D(0)),
        kx_prior=KxSpend(pt_slp=D(prior), ot=D(0)),
    )


def test_kx_lands_on_the_crossing_line_and_after(rulebook: Rulebook) -> None:
    """$2,420.00 before the day: 97110 takes it to $2,470.99 (not past $2,480.00), 97140 to
    $2,491.69 (past): KX on 97140 only."""
    d = evaluate(two_lines("2400.00", prior="20.00"), rulebook)  # type: ignore[arg-type]
    assert [ln.code for ln in d.lines] == ["97110", "97140"]  # the order lines are taken in
    assert mods(d) == {"97110": ("GP",), "97140": ("GP", "KX")}
    (f,) = [f for f in d.findings if f.code is FindingCode.KX_APPLIED]
    assert "$2491.69" in f.message and f.intervention_ids == ("p2",)
    text = d.explain()
    assert "before the day $2420.00 (opening $2400.00 + the adapter's earlier lines $20.00)" in text
    assert "97110 GP x2 +$50.99 = $2470.99; 97140 GP x1 +$20.70 = $2491.69 -> KX" in text


def test_past_the_threshold_before_the_day_every_line_gets_kx(rulebook: Rulebook) -> None:
    d = evaluate(two_lines("2480.01"), rulebook)  # type: ignore[arg-type]
    assert mods(d) == {"97110": ("GP", "KX"), "97140": ("GP", "KX")}


def test_exactly_at_the_threshold_is_not_past_it(rulebook: Rulebook) -> None:
    """$2,408.31 + $50.99 + $20.70 = $2,480.00: not exceeding, no KX."""
    d = evaluate(two_lines("2408.31"), rulebook)  # type: ignore[arg-type]
    assert mods(d) == {"97110": ("GP",), "97140": ("GP",)}
    assert FindingCode.KX_APPLIED not in {f.code for f in d.findings}


def test_an_unknown_opening_balance_is_not_guessed(rulebook: Rulebook) -> None:
    unknown = evaluate(two_lines(None, prior="100.00"), rulebook)  # type: ignore[arg-type]
    assert mods(unknown) == {"97110": ("GP",), "97140": ("GP",)}
    (f,) = [f for f in unknown.findings if f.code is FindingCode.KX_SPEND_UNKNOWN]
    assert f.severity is Severity.WARNING
    # the adapter's own lines alone pass it: KX whatever the opening balance is
    sure = evaluate(two_lines(None, prior="2500.00"), rulebook)  # type: ignore[arg-type]
    assert mods(sure) == {"97110": ("GP", "KX"), "97140": ("GP", "KX")}
    assert FindingCode.KX_SPEND_UNKNOWN not in {f.code for f in sure.findings}


def test_targeted_review_is_a_billing_office_warning(rulebook: Rulebook) -> None:
    d = evaluate(two_lines("2950.00"), rulebook)  # type: ignore[arg-type]
    (f,) = [f for f in d.findings if f.code is FindingCode.KX_REVIEW]
    assert f.severity is Severity.WARNING and "$3021.69" in f.message


# -- the ledger the shell keeps --------------------------------------------------------------------
days_st = st.dictionaries(
    st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 12, 31)),
    st.decimals(min_value=0, max_value=500, places=2),
    min_size=1,
    max_size=12,
)


@settings(max_examples=80, deadline=None)
@given(days_st, st.randoms(use_true_random=False))
def test_the_total_before_a_day_does_not_depend_on_the_order_days_arrive(
    amounts: dict[date, Decimal], rnd: object
) -> None:
    order = list(amounts)
    rnd.shuffle(order)  # type: ignore[attr-defined]
    a, b = KxLedger(), KxLedger()
    for d in sorted(amounts):
        a.record("Patient/p", d, {KxGroup.PT_SLP: amounts[d]})
    for d in order:
        b.record("Patient/p", d, {KxGroup.PT_SLP: amounts[d]})
    for d in amounts:
        assert a.prior("Patient/p", d) == b.prior("Patient/p", d)
        assert a.prior("Patient/p", d).pt_slp == sum(
            (v for k, v in amounts.items() if k < d), D("0.00")
        )


@settings(max_examples=80, deadline=None)
@given(days_st, st.data())
def test_voiding_a_day_lowers_every_later_total_by_exactly_its_amount(
    amounts: dict[date, Decimal], data: st.DataObject
) -> None:
    ledger = KxLedger()
    for d, a in amounts.items():
        ledger.record("Patient/p", d, {KxGroup.PT_SLP: a})
    voided = data.draw(st.sampled_from(sorted(amounts)))
    before = {d: ledger.prior("Patient/p", d).pt_slp for d in amounts}
    ledger.record("Patient/p", voided, {})  # the day no longer bills anything
    for d in amounts:
        after = ledger.prior("Patient/p", d).pt_slp
        expected = before[d] - (amounts[voided] if d > voided else 0)  # type: ignore[operator]
        assert after == expected
    # another year and another patient are untouched
    assert ledger.prior("Patient/q", date(2026, 12, 31)).pt_slp == 0
    assert ledger.prior("Patient/p", date(2027, 1, 1)).pt_slp == 0


def test_the_kx_forecast_warns_within_four_weeks(rulebook: Rulebook) -> None:
    """Opening $2,300.00; the day allows $71.69 -> $2,371.69; $108.31 left is 2 more visits of
    that size; at 3 visits a week that is within a week: a billing-office warning. At 1 visit
    a week from $2,000.00 ($408.31 left, 6 visits, 6 weeks) it is too far off to say."""
    import dataclasses

    soon = dataclasses.replace(two_lines("2300.00"), planned_visits_per_week=D(3))  # type: ignore[type-var]
    d = evaluate(soon, rulebook)
    (f,) = [f for f in d.findings if f.code is FindingCode.KX_FORECAST]
    assert f.severity is Severity.WARNING
    assert "in about 1 week(s) (2 more visit(s))" in f.message and "$2371.69" in f.message
    far = dataclasses.replace(two_lines("2000.00"), planned_visits_per_week=D(1))  # type: ignore[type-var]
    assert FindingCode.KX_FORECAST not in {f.code for f in evaluate(far, rulebook).findings}
    unplanned = evaluate(two_lines("2300.00"), rulebook)  # type: ignore[arg-type]
    assert FindingCode.KX_FORECAST not in {f.code for f in unplanned.findings}


def test_the_plans_schedule_gives_the_visits_a_week() -> None:
    from adapter.fhir.parse import _visits_per_week

    def plan(frequency: int, period: float, unit: str) -> dict[str, object]:
        timing = {"repeat": {"frequency": frequency, "period": period, "periodUnit": unit}}
        return {"activity": [{"detail": {"scheduledTiming": timing}}]}

    assert _visits_per_week([plan(3, 1, "wk")]) == D(3)
    assert _visits_per_week([plan(2, 1, "wk"), plan(1, 1, "d")]) == D(7)
    assert _visits_per_week([plan(8, 4, "wk")]) == D(2)
    assert _visits_per_week([{"activity": [{"detail": {}}]}, {}]) is None
    assert _visits_per_week([plan(0, 1, "wk"), plan(2, 1, "fortnight")]) is None
