"""The progress-report clock (domain.md §7, BPM Ch. 15 §220.3.C): treatment day 8, 9 and 10 since
the last report warn; the 11th is an error that holds the day's services of the discipline; an
assistant's report does not count; an evaluation starts the count again; per discipline."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.domain import Discipline, FindingCode, ProgressReport, Rulebook, Severity
from adapter.mappings import load_rulebook
from adapter.rules.evaluate import evaluate

from .build import DOS, OT, PT, day, iv

PTD = Discipline.PT


@pytest.fixture(scope="module")
def rulebook() -> Rulebook:
    return load_rulebook()


def earlier(n: int) -> tuple[date, ...]:
    """``n`` earlier treatment days, one every other day before the date of service."""
    return tuple(DOS - timedelta(days=2 * k) for k in range(n, 0, -1))


def codes(d: object) -> dict[FindingCode, Severity]:
    return {f.code: f.severity for f in d.findings}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("prior", "expected"),
    [
        (6, None),  # today is the 7th
        (7, Severity.WARNING),  # the 8th
        (8, Severity.WARNING),  # the 9th
        (9, Severity.WARNING),  # the 10th: due today
        (10, Severity.ERROR),  # the 11th
    ],
)
def test_treatment_day_n_since_the_report(
    rulebook: Rulebook, prior: int, expected: Severity | None
) -> None:
    days = earlier(prior + 3)
    report = ProgressReport(date=days[2], discipline=PTD, ref="DocumentReference/r1")
    d = evaluate(day(iv("a", "97110", 0, 30), treatment_days={PTD: days},
                     progress_reports=(report,)), rulebook)  # fmt: skip
    got = codes(d)
    if expected is None:
        assert not {FindingCode.PROGRESS_REPORT_DUE, FindingCode.PROGRESS_REPORT_MISSING} & set(got)
    elif expected is Severity.WARNING:
        assert got[FindingCode.PROGRESS_REPORT_DUE] is Severity.WARNING
        assert [ln.code for ln in d.lines] == ["97110"]
    else:
        assert got[FindingCode.PROGRESS_REPORT_MISSING] is Severity.ERROR
        assert d.lines == () and "a" in d.held_intervention_ids
    assert f"treatment day {prior + 1} since the report of {days[2]}" in d.explain()


def test_an_assistants_report_does_not_count(rulebook: Rulebook) -> None:
    days = earlier(12)
    mine = ProgressReport(date=days[1], discipline=PTD, ref="DocumentReference/pt")
    pta = ProgressReport(date=days[6], discipline=PTD, by_assistant=True,
                         ref="DocumentReference/pta")  # fmt: skip
    d = evaluate(day(iv("a", "97110", 0, 30), treatment_days={PTD: days},
                     progress_reports=(mine, pta)), rulebook)  # fmt: skip
    assert codes(d)[FindingCode.PROGRESS_REPORT_MISSING] is Severity.ERROR
    assert "not counted: DocumentReference/pta, by an assistant" in d.explain()


def test_an_evaluation_starts_the_count_and_disciplines_count_apart(rulebook: Rulebook) -> None:
    days = earlier(12)
    eval_day = ProgressReport(date=days[9], discipline=PTD, kind="evaluation")
    d = evaluate(
        day(iv("a", "97110", 0, 30, PT), iv("b", "97535", 30, 30, OT),
            treatment_days={PTD: days, Discipline.OT: days[:3]},
            progress_reports=(eval_day,)),
        rulebook,
    )  # fmt: skip
    # PT: the evaluation 3 treatment days ago -> day 3; OT: 3 earlier days, no report -> day 4
    assert not {FindingCode.PROGRESS_REPORT_DUE, FindingCode.PROGRESS_REPORT_MISSING} & set(
        codes(d)
    )
    assert "treatment day 3 since the evaluation of" in d.explain()
    # an evaluation today needs no report
    today = evaluate(day(iv("e", "97164", 0, 20), treatment_days={PTD: days}), rulebook)
    assert FindingCode.PROGRESS_REPORT_MISSING not in codes(today)


def test_a_report_of_no_particular_discipline_counts_for_each(rulebook: Rulebook) -> None:
    days = earlier(12)
    any_report = ProgressReport(date=days[-1], discipline=None, ref="DocumentReference/g")
    d = evaluate(day(iv("a", "97110", 0, 30), treatment_days={PTD: days},
                     progress_reports=(any_report,)), rulebook)  # fmt: skip
    assert f"treatment day 1 since the report of {days[-1]}" in d.explain()
    assert FindingCode.PROGRESS_REPORT_MISSING not in codes(d)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 60), min_size=0, max_size=25), st.randoms(use_true_random=False))
def test_the_count_does_not_depend_on_the_order_days_arrive(
    offsets: list[int], rnd: object
) -> None:
    rulebook = load_rulebook()
    days = [DOS - timedelta(days=o) for o in offsets]
    shuffled = list(days)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    a = evaluate(day(iv("a", "97110", 0, 30), treatment_days={PTD: tuple(days)}), rulebook)
    b = evaluate(day(iv("a", "97110", 0, 30), treatment_days={PTD: tuple(shuffled)}), rulebook)
    assert codes(a) == codes(b) and a.explain() == b.explain()
    n = len(set(days)) + 1
    assert (FindingCode.PROGRESS_REPORT_MISSING in codes(a)) == (n >= 11)
