"""The mappings/ entry behind a finding (``rules.sources.finding_source``): golden cases on
small days, and a property over random days: an entry is named for every finding that rests
on one, and it is in effect on the day."""

from __future__ import annotations

from hypothesis import given

from adapter.domain import Decision, FindingCode, Rulebook
from adapter.rules import evaluate
from adapter.rules.sources import finding_source

from .build import PT, PTA, day, encounter, iv
from .test_properties import PROFILE, RB, days

F = FindingCode
#: findings about the input itself: no rule entry to name
NO_ENTRY = frozenset({
    F.UNKNOWN_CODE, F.CODE_UNMAPPED, F.NO_PERFORMER, F.NO_DISCIPLINE, F.MIXED_DISCIPLINES,
    F.TIME_MISSING, F.TIME_INVALID, F.TIME_INVERTED, F.TIME_IN_FUTURE, F.TIME_OUTSIDE_ENCOUNTER,
    F.TIME_OFF_SERVICE_DATE, F.DATE_DIFFERS_FROM_ENCOUNTER, F.NO_DIAGNOSIS, F.COVERAGE_MISSING,
    F.COVERAGE_TYPE_UNKNOWN, F.NO_PRICE, F.REVIEW_OVERRIDE, F.REVIEW_RELEASED, F.REVIEW_STALE,
    F.REVIEW_REFUSED,
})  # fmt: skip


def _ref(d: Decision, code: FindingCode, rulebook: Rulebook) -> str | None:
    f = next(f for f in d.findings if f.code is code)
    source = finding_source(f, d, rulebook)
    return source.ref if source else None


def test_golden_entries(rulebook: Rulebook) -> None:
    group = evaluate(day(iv("a", "97110", 0, 30, group=True)), rulebook)
    assert _ref(group, F.GROUP_BILLED_ONE_ON_ONE, rulebook) == "codes:97110"
    eval_by_pta = evaluate(day(iv("a", "97161", 0, 30, PTA)), rulebook)
    assert _ref(eval_by_pta, F.ASSISTANT_NOT_PERMITTED, rulebook) == "codes:97161"
    outside = evaluate(day(iv("a", "92507", 0, 30, PT)), rulebook)
    assert _ref(outside, F.DISCIPLINE_MISMATCH, rulebook) == "codes:92507"
    many = evaluate(day(iv("a", "97112", 0, 80, PT, note="x")), rulebook)
    assert _ref(many, F.UNITS_OVER_THRESHOLD, rulebook) == "limits:unit_threshold:97112>4"
    assert _ref(many, F.NOTE_VAGUE, rulebook) == "documentation:notes"
    short = evaluate(day(iv("a", "97110", 0, 5, PT)), rulebook)
    assert _ref(short, F.UNDER_8_MINUTES, rulebook) == "payer:medicare"
    alone = evaluate(day(iv("a", "97112", 0, 30, PTA), encounters=(encounter(PTA),)), rulebook)
    assert _ref(alone, F.ASSISTANT_UNSUPERVISED, rulebook) == "payer:medicare"
    missing = evaluate(day(iv("a", "97110", None, None, PT)), rulebook)
    assert _ref(missing, F.TIME_MISSING, rulebook) is None


@PROFILE
@given(days())
def test_every_finding_on_an_entry_names_one_in_effect(d: object) -> None:
    decision = evaluate(d, RB)  # type: ignore[arg-type]
    for f in decision.findings:
        source = finding_source(f, decision, RB)
        if source is not None:
            assert source.in_effect(decision.service_date), (f.code, source.ref)
        elif f.code not in NO_ENTRY:
            raise AssertionError(f"{f.code.value} names no entry: {f}")
