"""The poll mark never follows a stamp from the future (found in attack review: one resource
with meta.lastUpdated in 2999 moved the mark there and every later change went unseen)."""

from __future__ import annotations

from datetime import UTC, datetime

from adapter.intake.polling import Mark, _Advance

START = Mark("2026-11-30T10:00:00.000Z", frozenset())


def test_a_stamp_in_the_future_does_not_move_the_mark() -> None:
    advance = _Advance(START, ceiling=datetime(2026, 12, 1, tzinfo=UTC))
    advance.saw("Procedure/a", "2026-11-30T11:00:00.000Z")
    advance.saw("Procedure/b", "2999-01-01T00:00:00.000Z")
    mark = advance.mark()
    assert mark.since == "2026-11-30T11:00:00.000Z" and mark.seen == frozenset({"Procedure/a"})


def test_the_ceiling_defaults_to_our_clock_plus_skew() -> None:
    advance = _Advance(START)
    advance.saw("Procedure/b", "2999-01-01T00:00:00.000Z")
    assert advance.mark() == START
