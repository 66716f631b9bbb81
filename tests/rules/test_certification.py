"""The plan-of-care certification clock (domain.md §7, BPM Ch. 15 §220.1.3): certified by the
physician/NPP within 30 days of the first treatment under the plan (a warning until then, an
error after unless a reason for the delay is documented), recertified within 90 days."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest

from adapter.domain import Discipline, FindingCode, PlanOfCare, Rulebook, Severity
from adapter.mappings import load_rulebook
from adapter.rules.evaluate import evaluate

from .build import DOS, OT, PT, day, iv

PTD = Discipline.PT


@pytest.fixture(scope="module")
def rulebook() -> Rulebook:
    return load_rulebook()


def plan(certified: date | None, *, start: date = date(2026, 1, 1), reason: bool = False,
         discipline: Discipline | None = PTD) -> PlanOfCare:  # fmt: skip
    return PlanOfCare(ref="CarePlan/cp", discipline=discipline, start=start,
                      end=date(2026, 12, 31), certified_on=certified,
                      delayed_reason=reason)  # fmt: skip


def cert(d: object) -> dict[FindingCode, Severity]:
    kinds = (FindingCode.PLAN_UNCERTIFIED, FindingCode.PLAN_CERTIFIED_LATE,
             FindingCode.PLAN_RECERTIFICATION_DUE)  # fmt: skip
    return {f.code: f.severity for f in d.findings if f.code in kinds}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("days_since_first", "expected"),
    [(29, Severity.WARNING), (30, Severity.WARNING), (31, Severity.ERROR)],
)
def test_an_uncertified_plan_warns_until_day_30_and_holds_after(
    rulebook: Rulebook, days_since_first: int, expected: Severity
) -> None:
    first = DOS - timedelta(days=days_since_first)
    d = evaluate(day(iv("a", "97110", 0, 30), plans=(plan(None),),
                     treatment_days={PTD: (first,)}), rulebook)  # fmt: skip
    assert cert(d) == {FindingCode.PLAN_UNCERTIFIED: expected}
    assert (d.lines == ()) is (expected is Severity.ERROR)


def test_a_documented_reason_makes_the_delay_a_warning(rulebook: Rulebook) -> None:
    first = DOS - timedelta(days=45)
    d = evaluate(day(iv("a", "97110", 0, 30), plans=(plan(None, reason=True),),
                     treatment_days={PTD: (first,)}), rulebook)  # fmt: skip
    assert cert(d) == {FindingCode.PLAN_UNCERTIFIED: Severity.WARNING} and d.lines
    late = plan(DOS - timedelta(days=5))  # signed 40 days after the first treatment
    d = evaluate(day(iv("a", "97110", 0, 30), plans=(late,), treatment_days={PTD: (first,)}),
                 rulebook)  # fmt: skip
    assert cert(d) == {FindingCode.PLAN_CERTIFIED_LATE: Severity.ERROR} and not d.lines
    excused = plan(DOS - timedelta(days=5), reason=True)
    d = evaluate(day(iv("a", "97110", 0, 30), plans=(excused,), treatment_days={PTD: (first,)}),
                 rulebook)  # fmt: skip
    assert cert(d) == {}


def test_certified_in_time_even_if_signed_after_the_visit(rulebook: Rulebook) -> None:
    """Signed 10 days after today's (first) treatment: within 30 days, nothing to say."""
    d = evaluate(day(iv("a", "97110", 0, 30), plans=(plan(DOS + timedelta(days=10)),)), rulebook)
    assert cert(d) == {}


@pytest.mark.parametrize(("age", "due"), [(90, False), (91, True)])
def test_recertification_after_90_days(rulebook: Rulebook, age: int, due: bool) -> None:
    d = evaluate(day(iv("a", "97110", 0, 30), plans=(plan(DOS - timedelta(days=age)),)), rulebook)
    assert cert(d) == ({FindingCode.PLAN_RECERTIFICATION_DUE: Severity.ERROR} if due else {})


def test_per_discipline(rulebook: Rulebook) -> None:
    """The PT plan is certified; the OT plan is not (45 days after OT's first treatment): only
    the OT line is held."""
    first = DOS - timedelta(days=45)
    ot_plan = PlanOfCare(ref="CarePlan/ot", discipline=Discipline.OT, start=date(2026, 1, 1),
                         end=None, certified_on=None)  # fmt: skip
    d = evaluate(day(iv("a", "97110", 0, 30, PT), iv("b", "97535", 30, 30, OT),
                     plans=(plan(DOS - timedelta(days=20)), ot_plan),
                     treatment_days={Discipline.OT: (first,)}), rulebook)  # fmt: skip
    assert [ln.code for ln in d.lines] == ["97110"]
    assert cert(d) == {FindingCode.PLAN_UNCERTIFIED: Severity.ERROR}


def test_a_recertification_restarts_the_90_days(rulebook: Rulebook) -> None:
    """Certified 120 days ago, recertified 30 days ago: nothing due; the 30-day rule still
    reads the first certification."""
    first = DOS - timedelta(days=125)
    recert = replace(plan(DOS - timedelta(days=120)), recertifications=(DOS - timedelta(days=30),))
    d = evaluate(day(iv("a", "97110", 0, 30), plans=(recert,), treatment_days={PTD: (first,)}),
                 rulebook)  # fmt: skip
    assert cert(d) == {}
    assert "last certified" not in d.explain()


@pytest.mark.parametrize(
    ("changed", "recertified", "expected"),
    [
        (10, None, Severity.WARNING),  # changed 10 days ago, not certified again: due
        (30, None, Severity.WARNING),  # the 30th day after the change
        (31, None, Severity.ERROR),  # the 31st: held
        (31, 20, None),  # certified again after the change
        (-1, None, None),  # a change dated after today is not today's
    ],
)
def test_a_significant_change_needs_a_new_certification(
    rulebook: Rulebook, changed: int, recertified: int | None, expected: Severity | None
) -> None:
    again = (DOS - timedelta(days=recertified),) if recertified else ()
    p = replace(plan(DOS - timedelta(days=60)), changed_on=DOS - timedelta(days=changed),
                recertifications=again)  # fmt: skip
    first = DOS - timedelta(days=62)
    d = evaluate(day(iv("a", "97110", 0, 30), plans=(p,), treatment_days={PTD: (first,)}),
                 rulebook)  # fmt: skip
    assert cert(d) == ({FindingCode.PLAN_RECERTIFICATION_DUE: expected} if expected else {})
    assert bool(d.lines) is (expected is not Severity.ERROR)


def test_a_recertification_signed_after_the_lapse_does_not_cover_it(rulebook: Rulebook) -> None:
    """(review) Certified 100 days ago, recertified only 10 days from now: today is past the
    90 days of the certification in force, an error."""
    p = replace(plan(DOS - timedelta(days=100)), recertifications=(DOS + timedelta(days=10),))
    d = evaluate(day(iv("a", "97110", 0, 30), plans=(p,),
                     treatment_days={PTD: (DOS - timedelta(days=99),)}), rulebook)  # fmt: skip
    assert cert(d) == {FindingCode.PLAN_RECERTIFICATION_DUE: Severity.ERROR} and not d.lines
    assert "recertified only on" in d.explain()
