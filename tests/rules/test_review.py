"""The billing office's decisions in the rules (``rules.review``): overrides lower units or
change modifiers, explained on the line; never more units than the rules give; a stale
override applies to nothing; a released clock hold bills the line, as a warning naming who
released it. Golden cases, and properties over random days and overrides."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from adapter.domain import (
    DayReview,
    Decision,
    Discipline,
    FindingCode,
    KxSpend,
    LineOverride,
    Release,
    Rulebook,
    ServiceDay,
    Severity,
)
from adapter.rules import evaluate
from adapter.workbench.state import line_key

from .build import OT, PT, PTA, day, iv
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
    why = Release(code=F.PROGRESS_REPORT_MISSING, interventions=("a",),
                  reason="report on paper, scanned", by="manager1", ref="review:9")  # fmt: skip
    after = evaluate(_reviewed(held, releases=(why,)), rulebook)
    assert [ln.code for ln in after.lines] == ["97110"]
    assert _codes(after)[F.PROGRESS_REPORT_MISSING] is Severity.WARNING
    assert _codes(after)[F.REVIEW_RELEASED] is Severity.INFO
    assert "released by manager1, review:9" in after.explain()


def test_a_documentation_hold_cannot_be_released(rulebook: Rulebook) -> None:
    held = day(iv("a", "97110", 0, 30, group=True))
    why = Release(
        code=F.GROUP_BILLED_ONE_ON_ONE, interventions=("a",), reason="x", by="m", ref="review:1"
    )
    after = evaluate(_reviewed(held, releases=(why,)), rulebook)
    assert after.lines == () and _codes(after)[F.GROUP_BILLED_ONE_ON_ONE] is Severity.ERROR


def test_a_line_with_kx_is_overridden_by_its_key(rulebook: Rulebook) -> None:
    """(review finding) the workbench names a line by its modifiers before KX: an override of
    a line over the threshold applies (it was reported stale before)."""
    over = day(iv("a", "97110", 0, 38, PT), kx_spend=KxSpend(pt_slp=Decimal("5000"), ot=Decimal(0)))
    (line,) = evaluate(over, rulebook).lines
    assert "KX" in line.modifiers and line_key(line) == "97110|PT|GP"
    after = evaluate(_reviewed(over, _override(units=2)), rulebook)
    assert [(ln.units, ln.modifiers) for ln in after.lines] == [(2, ("GP", "KX"))]
    assert F.REVIEW_STALE not in _codes(after)


def test_cq_co_and_kx_stay_the_rules(rulebook: Rulebook) -> None:
    """(review finding) removing CQ from an assistant's line would raise its payment; adding
    KX would attest the threshold: both refused."""
    pta = day(iv("a", "97110", 0, 38, PTA))
    (line,) = evaluate(pta, rulebook).lines
    assert "CQ" in line.modifiers
    o = _override(modifiers=line.modifiers, new_modifiers=("GP",))
    after = evaluate(_reviewed(pta, o), rulebook)
    assert after.lines[0].modifiers == line.modifiers and F.REVIEW_REFUSED in _codes(after)
    plain = day(iv("a", "97110", 0, 38, PT))
    kx = evaluate(_reviewed(plain, _override(new_modifiers=("GP", "KX"))), rulebook)
    assert kx.lines[0].modifiers == ("GP",) and F.REVIEW_REFUSED in _codes(kx)


def test_a_release_is_for_the_services_it_names(rulebook: Rulebook) -> None:
    """(review finding) PT and OT both lack a progress report: releasing PT's hold bills PT
    only; OT's stays held."""
    both = day(iv("a", "97110", 0, 30, PT), iv("b", "97530", 30, 30, OT),
               treatment_days={PTD: earlier(12), Discipline.OT: earlier(12)})  # fmt: skip
    held = evaluate(both, rulebook)
    missing = [f for f in held.findings if f.code is F.PROGRESS_REPORT_MISSING]
    pt = next(f for f in missing if f.intervention_ids == ("a",))
    why = Release(code=F.PROGRESS_REPORT_MISSING, interventions=pt.intervention_ids,
                  reason="on paper", by="m1", ref="review:3")  # fmt: skip
    after = evaluate(_reviewed(both, releases=(why,)), rulebook)
    assert [ln.code for ln in after.lines] == ["97110"]
    assert "b" in after.held_intervention_ids


@st.composite
def reviewed_days(draw: st.DrawFn) -> tuple[ServiceDay, Decision]:
    d = draw(days())
    plain = evaluate(d, RB)
    mods = st.none() | st.lists(st.sampled_from(sorted(RB.modifiers.order)), max_size=3)
    overrides = tuple(
        LineOverride(code=ln.code, discipline=ln.discipline,
                     modifiers=tuple(m for m in ln.modifiers if m != "KX"),
                     units=draw(st.integers(0, 12)),
                     new_modifiers=tuple(m) if (m := draw(mods)) is not None else None,
                     reason="r", by="b", ref=f"review:{n}")
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
    if plain.allowed_total is not None and after.allowed_total is not None:
        assert after.allowed_total <= plain.allowed_total
    assert evaluate(reviewed, RB) == after  # deterministic
