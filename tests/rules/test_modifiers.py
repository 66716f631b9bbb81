"""Modifiers: GP/GO/GN, CQ/CO with line splits, KX, and their order (domain.md §3)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from adapter.domain import KxSpend, Rulebook
from adapter.rules import evaluate
from adapter.rules.modifiers import order_modifiers, split_timed, split_untimed

from .build import OT, OTA, PT, PTA, SLP, day, encounter, iv, lines


def test_discipline_modifiers(rulebook: Rulebook) -> None:
    d = evaluate(
        day(
            iv("a", "97110", 0, 15, PT), iv("b", "97535", 20, 15, OT), iv("c", "92507", 40, 30, SLP)
        ),
        rulebook,
    )
    assert sorted(lines(d)) == [("92507", 1, ("GN",)), ("97110", 1, ("GP",)), ("97535", 1, ("GO",))]


def test_evaluation_carries_its_discipline_modifier(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("e", "97166", 0, 50, OT)), rulebook)
    assert lines(d) == [("97166", 1, ("GO",))]


# domain.md §3 CQ/CO examples
def test_pt_and_pta_together_is_no_cq(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("a", "97112", 0, 30, PT, PTA)), rulebook)
    assert lines(d) == [("97112", 2, ("GP",))]


def test_pt_15_97140_then_pta_7_97110_is_one_97140_without_cq(rulebook: Rulebook) -> None:
    d = evaluate(
        day(iv("a", "97140", 0, 15, PT), iv("b", "97110", 15, 7, PTA), encounters=(encounter(PT),)),
        rulebook,
    )
    assert lines(d) == [("97140", 1, ("GP",))]


def test_pta_alone_30_min_is_cq_on_both_units(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("a", "97112", 0, 30, PTA), encounters=(encounter(PT),)), rulebook)
    assert lines(d) == [("97112", 2, ("GP", "CQ"))]


def test_ota_gets_co_with_go(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("a", "97530", 0, 15, OTA), encounters=(encounter(OT),)), rulebook)
    assert lines(d) == [("97530", 1, ("GO", "CO"))]


def test_line_splits_when_only_some_units_qualify(rulebook: Rulebook) -> None:
    # PT 30 min then PTA alone 15 min of 97110: 45 min -> 3 units, 2 without CQ, 1 with
    d = evaluate(
        day(
            iv("a", "97110", 0, 30, PT), iv("b", "97110", 30, 15, PTA), encounters=(encounter(PT),)
        ),
        rulebook,
    )
    assert sorted(lines(d)) == [("97110", 1, ("GP", "CQ")), ("97110", 2, ("GP",))]
    assert all(ln.intervention_ids == ("a", "b") for ln in d.lines)


def test_commercial_has_no_cq(rulebook: Rulebook) -> None:
    d = evaluate(
        day(iv("a", "97112", 0, 30, PTA), encounters=(encounter(PT),), payer="commercial"), rulebook
    )
    assert lines(d) == [("97112", 2, ("GP",))]


@pytest.mark.parametrize(
    ("units", "therapist", "assistant", "special", "expected"),
    [
        (2, 30, 0, True, (0, 2)),  # therapist only
        (2, 0, 30, True, (2, 0)),  # assistant only
        (2, 12, 11, True, (1, 1)),  # two leftover units, each 9-14: one with, one without
        (2, 12, 11, False, (2, 0)),  # without the CY 2022 rule: assistant over 10% -> both CQ
        (1, 8, 5, True, (0, 1)),  # final unit, therapist 8+ leftover: no CQ
        (1, 8, 5, False, (1, 0)),  # rule off: 5 of 13 > 10% -> CQ
        (1, 10, 1, True, (0, 1)),  # de minimis: 1 of 11 min is not over 10%
        (1, 5, 4, True, (1, 0)),  # 4 of 9 min > 10%, therapist under 8 -> CQ
        (3, 30, 15, True, (1, 2)),
        (1, 15, 15, True, (1, 0)),  # capped to 1 unit: the assistant unit is kept (lower pay)
    ],
)
def test_split_timed(
    units: int, therapist: int, assistant: int, special: bool, expected: tuple[int, int]
) -> None:
    s = split_timed(units, therapist, assistant, special_rules=special)
    assert (s.with_modifier, s.without_modifier) == expected
    assert s.with_modifier + s.without_modifier == units
    assert s.reasons


def test_split_untimed() -> None:
    assert split_untimed(40, 5, assistant_minutes_unknown=False).with_modifier == 1  # 5/45 > 10%
    assert split_untimed(40, 4, assistant_minutes_unknown=False).with_modifier == 0  # 4/44
    assert split_untimed(0, 0, assistant_minutes_unknown=True).with_modifier == 1


def test_untimed_by_assistant_alone_carries_cq(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("a", "97150", 0, 40, PTA), encounters=(encounter(PT),)), rulebook)
    assert lines(d) == [("97150", 1, ("GP", "CQ"))]


def test_modifier_order(rulebook: Rulebook) -> None:
    rules = rulebook.modifiers
    assert order_modifiers({"KX", "XU", "CQ", "GP"}, rules) == ("GP", "CQ", "XU", "KX")
    with pytest.raises(ValueError, match="more than 4"):
        order_modifiers({"KX", "XU", "CQ", "GP", "59"}, rules)


def test_kx_added_when_ytd_spend_passes_threshold(rulebook: Rulebook) -> None:
    d = evaluate(
        day(iv("a", "97112", 0, 30), kx_spend=KxSpend(pt_slp=Decimal("2500"), ot=Decimal("0"))),
        rulebook,
    )
    assert lines(d) == [("97112", 2, ("GP", "KX"))]
    kx = [f for f in d.findings if f.code.value == "kx-applied"]
    assert kx and kx[0].severity.value == "info" and "2480" in kx[0].message
    assert "payer:medicare:kx:2026" in d.lines[0].rule_refs


def test_kx_not_added_under_threshold_and_pt_slp_separate_from_ot(rulebook: Rulebook) -> None:
    d = evaluate(
        day(
            iv("a", "97112", 0, 30, PT),
            iv("b", "97530", 30, 30, OT),
            kx_spend=KxSpend(pt_slp=Decimal("100"), ot=Decimal("2600")),
        ),
        rulebook,
    )
    assert sorted(lines(d)) == [("97112", 2, ("GP",)), ("97530", 2, ("GO", "KX"))]


def test_kx_spend_unknown_is_a_warning_not_a_guess(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("a", "97112", 0, 30)), rulebook)
    assert lines(d) == [("97112", 2, ("GP",))]
    (f,) = [f for f in d.findings if f.code.value == "kx-spend-unknown"]
    assert f.severity.value == "warning"


def test_kx_targeted_review_above_3000(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("a", "97112", 0, 30), kx_spend=KxSpend(pt_slp=Decimal("3100"))), rulebook)
    assert "kx-targeted-review" in {f.code.value for f in d.findings}


def test_kx_threshold_unknown_for_a_year_without_one(rulebook: Rulebook) -> None:
    from dataclasses import replace
    from datetime import date, timedelta

    iv27 = replace(
        iv("a", "97112", 0, 30),
        start=iv("a", "97112", 0, 30).start + timedelta(days=365),  # type: ignore[operator]
        end=iv("a", "97112", 0, 30).end + timedelta(days=365),  # type: ignore[operator]
    )
    d = evaluate(
        replace(
            day(iv27, kx_spend=KxSpend(pt_slp=Decimal("9000")), encounters=()),
            service_date=date(2027, 3, 2),
        ),
        rulebook,
    )
    assert "kx-threshold-unknown" in {f.code.value for f in d.findings}
    assert lines(d) == [("97112", 2, ("GP",))]


def test_commercial_never_kx(rulebook: Rulebook) -> None:
    d = evaluate(
        day(iv("a", "97112", 0, 30), kx_spend=KxSpend(pt_slp=Decimal("9000")), payer="commercial"),
        rulebook,
    )
    assert lines(d) == [("97112", 2, ("GP",))]
    assert not {c for c in (f.code.value for f in d.findings) if c.startswith("kx")}
