"""Payers' authorizations (domain.md §7): visits and units used from the shell's history within
the grant's window (reset with the benefit year); beyond it the payer profile allows, warns or
blocks; running out warns at 2 visits left, under 10 units left, 7 days before the end; a line
under a grant carries its number; a line no grant covers is flagged when one ended or the
profile requires one."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.domain import (
    Authorization,
    Decision,
    Discipline,
    FindingCode,
    Rulebook,
    Severity,
    UnitsOnDay,
)
from adapter.rules.authorization import benefit_year_start
from adapter.rules.evaluate import evaluate

from .build import DOS, OT, day, iv

PTD = Discipline.PT
EXCEEDED, LOW, MISSING = (
    FindingCode.AUTHORIZATION_EXCEEDED,
    FindingCode.AUTHORIZATION_RUNNING_OUT,
    FindingCode.AUTHORIZATION_MISSING,
)


def grant(**kw: object) -> Authorization:
    kw.setdefault("number", "AUTH-1")
    kw.setdefault("ref", "ClaimResponse/cr1")
    kw.setdefault("discipline", PTD)
    kw.setdefault("start", date(2026, 1, 5))
    kw.setdefault("end", date(2026, 6, 30))
    return Authorization(**kw)  # type: ignore[arg-type]


def visits(
    n: int, code: str = "97110", units: int = 2, before: date = DOS
) -> tuple[UnitsOnDay, ...]:
    """``n`` earlier visits, one every other day before ``before``, each ``units`` of ``code``."""
    return tuple(
        UnitsOnDay(date=before - timedelta(days=2 * k), discipline=PTD, code=code, units=units)
        for k in range(n, 0, -1)
    )


def run(rulebook: Rulebook, *grants: Authorization, history: tuple[UnitsOnDay, ...] = (),
        **kw: object) -> Decision:  # fmt: skip
    return evaluate(day(iv("a", "97110", 0, 30), authorizations=grants, unit_history=history,
                        **kw), rulebook)  # fmt: skip


def found(d: Decision) -> dict[FindingCode, Severity]:
    return {f.code: f.severity for f in d.findings}


def with_payer(rulebook: Rulebook, payer: str = "medicare", **kw: object) -> Rulebook:
    profile = replace(rulebook.payers[payer], **kw)  # type: ignore[arg-type]
    return replace(rulebook, payers={**rulebook.payers, payer: profile})


@pytest.mark.parametrize(
    ("prior", "expected"),
    [
        (8, None),  # visit 9 of 12: 3 left
        (9, LOW),  # visit 10: 2 left
        (11, LOW),  # visit 12: exactly the authorized count, 0 left, still billed
        (12, EXCEEDED),  # visit 13
    ],
)
def test_visit_n_of_the_authorized(
    rulebook: Rulebook, prior: int, expected: FindingCode | None
) -> None:
    d = run(rulebook, grant(visits=12), history=visits(prior))
    got = found(d)
    assert not {EXCEEDED, LOW, MISSING} - {expected} & set(got)
    if expected is not None:
        assert got[expected] is Severity.WARNING
    assert [(ln.code, ln.authorization) for ln in d.lines] == [("97110", "AUTH-1")]
    assert f"visit {prior + 1} of 12 since 2026-01-05" in d.explain()


def test_block_holds_the_lines_beyond_the_authorization(rulebook: Rulebook) -> None:
    book = with_payer(rulebook, authorization="block")
    exactly = run(book, grant(visits=12), history=visits(11))
    assert [ln.code for ln in exactly.lines] == ["97110"]  # the 12th of 12 bills
    beyond = run(book, grant(visits=12), history=visits(12))
    assert found(beyond)[EXCEEDED] is Severity.ERROR
    assert beyond.lines == ()
    assert "held until the payer authorizes more" in beyond.explain()


def test_allow_notes_it_without_a_warning(rulebook: Rulebook) -> None:
    d = run(with_payer(rulebook, authorization="allow"), grant(visits=12), history=visits(12))
    assert found(d)[EXCEEDED] is Severity.INFO
    assert [ln.code for ln in d.lines] == ["97110"]


@pytest.mark.parametrize(
    ("prior_units", "expected"),
    [(12, None), (13, LOW), (22, LOW), (23, EXCEEDED)],  # today adds 2 units of 97110 (30 min)
)
def test_units_of_a_code(
    rulebook: Rulebook, prior_units: int, expected: FindingCode | None
) -> None:
    history = (
        UnitsOnDay(date=date(2026, 2, 2), discipline=PTD, code="97110", units=prior_units),
        UnitsOnDay(date=date(2026, 2, 4), discipline=PTD, code="97112", units=9),
    )
    d = run(rulebook, grant(code="97110", discipline=None, units=24), history=history)
    got = found(d)
    assert not {EXCEEDED, LOW} - {expected} & set(got)
    if expected is not None:
        assert got[expected] is Severity.WARNING
    assert f"{prior_units + 2} of 24 units used" in d.explain()  # 97112's units do not count


@pytest.mark.parametrize(("days_left", "warned"), [(8, False), (7, True), (0, True)])
def test_days_before_the_end(rulebook: Rulebook, days_left: int, warned: bool) -> None:
    d = run(rulebook, grant(visits=30, end=DOS + timedelta(days=days_left)))
    assert (LOW in found(d)) is warned


def test_the_counters_start_again_with_the_benefit_year(rulebook: Rulebook) -> None:
    """A grant from November to April: the visits of November and December count towards a
    calendar benefit year that ends on 12-31, not towards March's."""
    g = grant(visits=10, start=date(2025, 11, 3), end=date(2026, 4, 30))
    history = visits(9, before=date(2025, 12, 31))
    calendar = run(rulebook, g, history=history)
    assert not {EXCEEDED, LOW} & set(found(calendar))
    assert "visit 1 of 10 since 2026-01-01" in calendar.explain()
    july = run(with_payer(rulebook, benefit_year_start=(7, 1)), g, history=history)
    assert found(july)[LOW] is Severity.WARNING  # visit 10 of 10 since 2025-11-03
    assert "visit 10 of 10 since 2025-11-03" in july.explain()
    assert benefit_year_start(date(2026, 6, 30), (7, 1)) == date(2025, 7, 1)
    assert benefit_year_start(date(2026, 7, 1), (7, 1)) == date(2026, 7, 1)


def test_an_ended_authorization_warns_and_a_required_one_missing(rulebook: Rulebook) -> None:
    ended = run(rulebook, grant(visits=12, end=DOS - timedelta(days=1)))
    assert found(ended)[MISSING] is Severity.WARNING
    assert ended.lines[0].authorization is None
    assert "AUTH-1 for PT services ended 2026-03-01" in ended.explain()
    # none at all: nothing unless the profile requires one; then the profile's severity
    assert MISSING not in found(run(rulebook))
    assert found(run(with_payer(rulebook, authorization_required=True)))[MISSING] is (
        Severity.WARNING
    )
    blocked = run(with_payer(rulebook, authorization_required=True, authorization="block"))
    assert found(blocked)[MISSING] is Severity.ERROR and blocked.lines == ()


def test_grants_by_discipline_code_and_payer(rulebook: Rulebook) -> None:
    """An OT grant does not cover PT; a grant for another payer profile does not count; a code's
    grant is the line's number before its discipline's."""
    ot = grant(discipline=Discipline.OT, number="OT-1", visits=1)
    other_payer = grant(number="MCD-1", payer="medicaid", visits=1)
    d = run(rulebook, ot, other_payer, history=visits(5))
    assert not {EXCEEDED, LOW} & set(found(d)) and d.lines[0].authorization is None
    both = run(rulebook, grant(number="PT-ALL", visits=20),
               grant(number="CODE-1", code="97110", discipline=None, units=40))  # fmt: skip
    assert both.lines[0].authorization == "CODE-1"
    ot_day = evaluate(day(iv("a", "97110", 0, 30, OT), authorizations=(ot,)), rulebook)
    assert ot_day.lines[0].authorization == "OT-1"
    assert found(ot_day)[LOW] is Severity.WARNING  # visit 1 of 1: none left


@settings(max_examples=40, deadline=None)
@given(prior=st.integers(0, 16), seed=st.integers(0, 10_000))
def test_the_count_does_not_depend_on_arrival_order(
    rulebook: Rulebook, prior: int, seed: int
) -> None:
    """The history in any order gives the same decision; one more earlier visit never lowers
    today's visit number."""
    history = list(visits(prior))
    shuffled = history[:]
    random.Random(seed).shuffle(shuffled)
    g = grant(visits=12, units=30)
    a, b = run(rulebook, g, history=tuple(history)), run(rulebook, g, history=tuple(shuffled))
    assert a == b
    more = run(rulebook, g, history=(*history, *visits(1, before=DOS - timedelta(days=2 * prior))))
    order = {None: 0, LOW: 1, EXCEEDED: 2}
    rank = lambda d: max((order[c] for c in found(d) if c in order), default=0)  # noqa: E731
    assert rank(more) >= rank(a)


def test_of_two_grants_of_one_scope_the_day_is_under_the_one_with_room(rulebook: Rulebook) -> None:
    """(review) A (PT, 12 visits, to 03-31) is used up in February; B (PT, 12 visits, from
    02-01) is new: the day is B's first visit, billed under B, even when the profile blocks
    (A's visits do not count against B). Days billed before either was known (no number)
    count against both: then both are used up."""
    a = grant(number="A", visits=12, start=date(2026, 1, 1), end=date(2026, 3, 31))
    b = grant(number="B", visits=12, start=date(2026, 2, 1), end=date(2026, 5, 31))
    used = tuple(replace(u, authorizations=("A",)) for u in visits(12))
    d = run(with_payer(rulebook, authorization="block"), a, b, history=used)
    assert [(ln.code, ln.authorization) for ln in d.lines] == [("97110", "B")]
    assert "visit 1 of 12 since 2026-02-01" in d.explain()
    unknown = visits(12)
    d = run(with_payer(rulebook, authorization="block"), a, b, history=unknown)
    assert found(d)[EXCEEDED] is Severity.ERROR and d.lines == ()
