"""Units: CMS total-time method and CPT/AMA per-code method, domain.md §2 (every worked example)."""

from __future__ import annotations

import pytest

from adapter.domain import Rulebook, Severity
from adapter.rules import evaluate
from adapter.rules.units import allocate_ama, allocate_cms, units_for_minutes

from .build import OT, PT, day, iv, sequential, units_by_code


@pytest.mark.parametrize(
    ("low", "high", "units"),
    [(0, 7, 0), (8, 22, 1), (23, 37, 2), (38, 52, 3), (53, 67, 4), (68, 82, 5), (83, 97, 6),
     (98, 112, 7), (113, 127, 8)],
)  # fmt: skip
def test_cms_minute_bands(low: int, high: int, units: int) -> None:
    for m in range(low, high + 1):
        assert units_for_minutes(m) == units, m


def test_negative_minutes_rejected() -> None:
    with pytest.raises(ValueError, match="negative"):
        units_for_minutes(-1)


# The manual's worked examples (domain.md §2a), through the whole evaluation.
CMS_EXAMPLES = [
    ([("97112", 24), ("97110", 23)], {"97112": 2, "97110": 1}),
    ([("97110", 33), ("97140", 7)], {"97110": 2, "97140": 1}),
    ([("97110", 18), ("97140", 13), ("97116", 10), ("97035", 8)],
     {"97110": 1, "97140": 1, "97116": 1}),
    ([("97530", 60)], {"97530": 4}),
]  # fmt: skip


@pytest.mark.parametrize(("minutes", "expected"), CMS_EXAMPLES)
def test_cms_manual_examples(
    rulebook: Rulebook, minutes: list[tuple[str, int]], expected: dict[str, int]
) -> None:
    d = evaluate(day(*sequential(*minutes)), rulebook)
    assert units_by_code(d) == expected
    assert not [f for f in d.findings if f.severity is Severity.ERROR]


def test_cms_example_97035_documented_not_billed(rulebook: Rulebook) -> None:
    d = evaluate(
        day(*sequential(("97110", 18), ("97140", 13), ("97116", 10), ("97035", 8))), rulebook
    )
    zero = [m for m in d.minutes if m.code == "97035"]
    assert zero and zero[0].minutes == 8 and zero[0].units == 0
    assert any(f.code.value == "no-unit-left" and f.line_code == "97035" for f in d.findings)


def test_cms_20_20_is_two_and_one_never_three_of_one(rulebook: Rulebook) -> None:
    d = evaluate(day(*sequential(("97112", 20), ("97110", 20))), rulebook)
    assert sorted(units_by_code(d).values()) == [1, 2]
    assert "tie" in d.explain()


def test_cms_7_7_7_gives_one_unit_to_one_code_and_says_tie(rulebook: Rulebook) -> None:
    d = evaluate(day(*sequential(("97112", 7), ("97110", 7), ("97140", 7))), rulebook)
    assert sum(units_by_code(d).values()) == 1
    assert len(d.lines) == 1
    assert "tie at 7 remaining min" in d.explain()


def test_cms_tie_broken_by_more_total_minutes_first() -> None:
    # remainders tie at 5; 97112 has more total minutes (35 vs 20) -> it gets the extra unit
    alloc = allocate_cms(
        {"97110": 20, "97112": 35}, rank=lambda k: (0 if k == "97110" else 1, k), label=str
    )
    assert alloc.total_units == 4  # 55 min
    assert dict(alloc.units) == {"97110": 1, "97112": 3}
    assert alloc.tie_broken
    assert any("more total minutes" in s for s in alloc.steps)


def test_cms_tie_broken_by_code_order() -> None:
    first = allocate_cms({"A": 20, "B": 20}, rank=lambda k: (0 if k == "A" else 1, k), label=str)
    second = allocate_cms({"A": 20, "B": 20}, rank=lambda k: (1 if k == "A" else 0, k), label=str)
    assert dict(first.units) == {"A": 2, "B": 1}
    assert dict(second.units) == {"A": 1, "B": 2}


def test_minutes_of_one_code_add_up_across_sessions(rulebook: Rulebook) -> None:
    morning = iv("am", "97112", 0, 10)
    afternoon = iv("pm", "97112", 360, 15)
    d = evaluate(day(morning, afternoon), rulebook)
    assert units_by_code(d) == {"97112": 2}  # 25 min
    (line,) = d.lines
    assert line.minutes == 25 and line.intervention_ids == ("am", "pm")


def test_overlapping_records_of_one_code_count_once(rulebook: Rulebook) -> None:
    # PT and a second PT both document 97112 09:00-09:30: one patient-minute per minute
    from .build import PT2

    d = evaluate(day(iv("a", "97112", 60, 30, PT), iv("b", "97112", 60, 30, PT2)), rulebook)
    assert units_by_code(d) == {"97112": 2}
    assert "same-code-overlap" in {f.code.value for f in d.findings}


def test_untimed_codes_one_unit_and_outside_the_timed_total(rulebook: Rulebook) -> None:
    # evaluation 45 min + 97112 10 min: timed total is 10 (1 unit), evaluation 1 unit
    d = evaluate(day(iv("e", "97162", 0, 45), iv("n", "97112", 50, 10)), rulebook)
    assert units_by_code(d) == {"97162": 1, "97112": 1}
    d2 = evaluate(day(iv("e", "97162", 0, 45), iv("n", "97112", 50, 7)), rulebook)
    assert units_by_code(d2) == {"97162": 1}  # 7 timed minutes alone: under 8


def test_untimed_code_twice_a_day_is_still_one_unit(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("g1", "97150", 0, 30), iv("g2", "97150", 120, 30)), rulebook)
    assert units_by_code(d) == {"97150": 1}


def test_per_discipline_totals_by_default(rulebook: Rulebook) -> None:
    # PT 97110 10 min, OT 97530 10 min: per discipline 1 + 1 units (pooled would be 20 -> 1)
    d = evaluate(day(iv("a", "97110", 0, 10, PT), iv("b", "97530", 15, 10, OT)), rulebook)
    assert units_by_code(d) == {"97110": 1, "97530": 1}
    assert {ln.modifiers[0] for ln in d.lines} == {"GP", "GO"}


def test_pooled_totals_when_the_profile_says_so(rulebook: Rulebook) -> None:
    import dataclasses
    from types import MappingProxyType

    from adapter.domain import Pooling

    medicare = rulebook.payers["medicare"]
    pooled = dataclasses.replace(medicare, id="pooled", pooling=Pooling.POOLED)
    rb = dataclasses.replace(
        rulebook, payers=MappingProxyType({**rulebook.payers, "pooled": pooled})
    )
    d = evaluate(day(iv("a", "97110", 0, 10, PT), iv("b", "97530", 15, 10, OT), payer="pooled"), rb)
    assert sum(units_by_code(d).values()) == 1  # 20 pooled minutes -> 1 unit


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [
        ([("97112", 24), ("97110", 23)], {"97112": 2, "97110": 2}),
        ([("97112", 20), ("97110", 20)], {"97112": 1, "97110": 1}),
        ([("97110", 10), ("97112", 10)], {"97110": 1, "97112": 1}),
        ([("97110", 7), ("97112", 30)], {"97112": 2}),
    ],
)
def test_ama_per_code_examples(
    rulebook: Rulebook, minutes: list[tuple[str, int]], expected: dict[str, int]
) -> None:
    d = evaluate(day(*sequential(*minutes), payer="commercial"), rulebook)
    assert units_by_code(d) == expected
    assert d.method.value == "ama"


def test_ama_and_cms_differ_on_the_same_day(rulebook: Rulebook) -> None:
    ivs = sequential(("97110", 10), ("97112", 10))
    cms = evaluate(day(*ivs), rulebook)
    ama = evaluate(day(*ivs, payer="commercial"), rulebook)
    assert sum(units_by_code(cms).values()) == 1
    assert sum(units_by_code(ama).values()) == 2


def test_allocate_ama_never_pools_remainders() -> None:
    assert allocate_ama({"a": 7, "b": 7, "c": 7}) == {"a": 0, "b": 0, "c": 0}
