"""Interval arithmetic on documented time spans (pure). Minutes are whole minutes, rounded down."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

Span = tuple[datetime, datetime]


def union(spans: Iterable[Span]) -> list[Span]:
    """Merge overlapping or touching spans into disjoint ones, sorted by start."""
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def seconds(spans: Iterable[Span]) -> int:
    """Seconds covered by the spans, each instant counted once."""
    return sum(int((e - s).total_seconds()) for s, e in union(spans))


def minutes(spans: Iterable[Span]) -> int:
    """Whole minutes covered by the spans, each instant counted once (rounded down)."""
    return seconds(spans) // 60


def overlap_seconds(a: Span, b: Span) -> int:
    """Seconds two spans share (0 when they do not overlap)."""
    start, end = max(a[0], b[0]), min(a[1], b[1])
    return max(0, int((end - start).total_seconds()))


def subtract(spans: Iterable[Span], minus: Iterable[Span]) -> list[Span]:
    """The parts of ``spans`` not covered by ``minus``."""
    out: list[Span] = []
    cut = union(minus)
    for s, e in union(spans):
        cur = s
        for cs, ce in cut:
            if ce <= cur or cs >= e:
                continue
            if cs > cur:
                out.append((cur, cs))
            cur = max(cur, ce)
            if cur >= e:
                break
        if cur < e:
            out.append((cur, e))
    return out
