"""The billing office's decisions in the rules (``rules.review``): overrides lower units or
change modifiers, explained on the line; never more units than the rules give; a stale
override applies to nothing; a released clock hold bills the line, as a warning naming who
released it. Golden cases, and properties over random days and overrides."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from adapter.domain import (
    DayReview,
    Decision,
    Discipline,
    FindingCode,
    LineOverride,
    Release,
    Rulebook,
    ServiceDay,
    Severity,
)
from adapter.rules import evaluate

from .build import PT, day, iv
from .test_progress import earlier
from .test_properties import PROFILE, RB, days

F = FindingCode
PTD = Discipline.PT


def _override(**kw: object) -> LineOverride:
    base: dict[str, object] = {"code": "97110", "discipline": PTD, "modifiers": ("GP",),
                               "reason": "per the note", "by": "biller1",
                               "ref": "review:7"}  # fmt: skip
    return LineOverride(**{**base, **kw})  # type: ignore[arg-type]


def _reviewed(
    d: ServiceDay, *overrides: LineOverride, releases: tuple[Release, ...] = ()
) -> ServiceDay:
    return replace(d, review=DayReview(overrides=overrides, releases=releases))


def _codes(d: Decision) -> dict[FindingCode, Severity]:
    return {f.code: f.severity for f in d.findings}


def test_units_lowered_are_explained_and_priced(rulebook: Rulebook) -> None:
    plain = day(iv("a", "97110", 0, 38, PT))  # 38 minutes: 3 units
    before = evaluate(plain, rulebook)
    after = evaluate(_reviewed(plain, _override(units=2)), rulebook)
    (b,), (a,) = before.lines, after.lines
    assert (b.units, a.units) == (3, 2)
    assert "review:7" in a.rule_refs and "review:7" not in b.rule_refs
    assert "97110: units 3 -> 2 by biller1 (review:7): per the note" in a.reasons
    assert _codes(after)[F.REVIEW_OVERRIDE] is Severity.INFO
    assert b.price.unit_price is not None and a.price.net == a.price.unit_price * 2
    assert "units 3 -> 2" in after.explain()


def test_more_units_than_the_rules_is_refused(rulebook: Rulebook) -> None:
    plain = day(iv("a", "97110", 0, 38, PT))
    after = evaluate(_reviewed(plain, _override(units=4)), rulebook)
    assert [ln.units for ln in after.lines] == [3]
    assert _codes(after)[F.REVIEW_REFUSED] is Severity.WARNING


def test_zero_units_leave_the_line_out_and_the_latest_override_wins(rulebook: Rulebook) -> None:
    plain = day(iv("a", "97110", 0, 38, PT))
    gone = evaluate(_reviewed(plain, _override(units=1), _override(units=0, ref="review:8")),
                    rulebook)  # fmt: skip
    assert gone.lines == ()
    assert "review:8" in next(f.message for f in gone.findings if f.code is F.REVIEW_OVERRIDE)


def test_modifiers_replaced_in_order_and_unknown_ones_refused(rulebook: Rulebook) -> None:
    plain = day(iv("a", "97110", 0, 38, PT))
    after = evaluate(_reviewed(plain, _override(new_modifiers=("XU", "GP"))), rulebook)
    assert after.lines[0].modifiers == ("GP", "XU")
    bad = evaluate(_reviewed(plain, _override(new_modifiers=("GP", "ZZ"))), rulebook)
    assert bad.lines[0].modifiers == ("GP",)
    assert "unknown modifier(s) ZZ" in next(f.message for f in bad.findings
                                            if f.code is F.REVIEW_REFUSED)  # fmt: skip


def test_an_override_of_a_line_that_is_gone_is_stale(rulebook: Rulebook) -> None:
    plain = day(iv("a", "97112", 0, 38, PT))  # no 97110 line any more
    after = evaluate(_reviewed(plain, _override(units=1)), rulebook)
    assert [ln.units for ln in after.lines] == [3]
    assert _codes(after)[F.REVIEW_STALE] is Severity.WARNING


def test_a_released_progress_report_hold_bills_the_line(rulebook: Rulebook) -> None:
    held = day(iv("a", "97110", 0, 30), treatment_days={PTD: earlier(12)})
    before = evaluate(held, rulebook)
    assert before.lines == () and _codes(before)[F.PROGRESS_REPORT_MISSING] is Severity.ERROR
    why = Release(code=F.PROGRESS_REPORT_MISSING, reason="report on paper, scanned",
                  by="manager1", ref="review:9")  # fmt: skip
    after = evaluate(_reviewed(held, releases=(why,)), rulebook)
    assert [ln.code for ln in after.lines] == ["97110"]
    assert _codes(after)[F.PROGRESS_REPORT_MISSING] is Severity.WARNING
    assert _codes(after)[F.REVIEW_RELEASED] is Severity.INFO
    assert "released by manager1, review:9" in after.explain()


def test_a_documentation_hold_cannot_be_released(rulebook: Rulebook) -> None:
    held = day(iv("a", "97110", 0, 30, group=True))
    why = Release(code=F.GROUP_BILLED_ONE_ON_ONE, reason="x", by="m", ref="review:1")
    after = evaluate(_reviewed(held, releases=(why,)), rulebook)
    assert after.lines == () and _codes(after)[F.GROUP_BILLED_ONE_ON_ONE] is Severity.ERROR


@st.composite
def reviewed_days(draw: st.DrawFn) -> tuple[ServiceDay, Decision]:
    d = draw(days())
    plain = evaluate(d, RB)
    overrides = tuple(
        LineOverride(code=ln.code, discipline=ln.discipline, modifiers=ln.modifiers,
                     units=draw(st.integers(0, 12)), reason="r", by="b", ref=f"review:{n}")
        for n, ln in enumerate(plain.lines) if draw(st.booleans())
    )  # fmt: skip
    return replace(d, review=DayReview(overrides=overrides)), plain


@PROFILE
@given(reviewed_days())
def test_an_override_never_bills_more(case: tuple[ServiceDay, Decision]) -> None:
    """Per line and in total: units and charges with any overrides are at most the rules'."""
    reviewed, plain = case
    after = evaluate(reviewed, RB)
    rules = {(ln.code, ln.discipline, ln.modifiers): ln.units for ln in plain.lines}
    for ln in after.lines:
        key = (ln.code, ln.discipline, ln.modifiers)
        assert ln.units <= rules.get(key, ln.units)
    assert sum(ln.units for ln in after.lines) <= sum(ln.units for ln in plain.lines)
    if plain.total is not None and after.total is not None:
        assert after.total <= plain.total
    assert evaluate(reviewed, RB) == after  # deterministic
