"""Timed minutes -> 15-minute units: the CMS total-time method and the CPT/AMA per-code method.

Pure functions; domain.md §2 is the specification and every worked example there is a test.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


def units_for_minutes(minutes: int) -> int:
    """``0`` under 8 minutes, else ``floor((m + 7) / 15)``: 8-22 -> 1, 23-37 -> 2, ..."""
    if minutes < 0:
        raise ValueError("minutes cannot be negative")
    return 0 if minutes < 8 else (minutes + 7) // 15


def band(units: int) -> str:
    """The minute band that gives ``units`` units, e.g. 3 -> '38-52 min'."""
    if units == 0:
        return "under 8 min"
    return f"{15 * units - 7}-{15 * units + 7} min"


@dataclass(frozen=True, slots=True, kw_only=True)
class Allocation(Generic[K]):
    """Units per key with the steps that produced them, in words."""

    units: Mapping[K, int]
    total_minutes: int
    total_units: int
    steps: tuple[str, ...]
    tie_broken: bool


def allocate_cms(
    minutes: Mapping[K, int], rank: Callable[[K], tuple[int, str]], label: Callable[[K], str]
) -> Allocation[K]:
    """Allocate the CMS total-time units over the codes of one pool (MCPM Ch. 5 §20.2).

    1. ``N = units_for_minutes(sum of minutes)``;
    2. each code gets ``floor(m / 15)`` units;
    3. the units left go one each to the codes with the most remaining minutes (``m mod 15``);
    4. ties are broken by more total minutes, then ``rank`` (the configured code order).
    """
    total = sum(minutes.values())
    n = units_for_minutes(total)
    full = {k: m // 15 for k, m in minutes.items()}
    units = dict(full)
    left = n - sum(full.values())
    steps = [f"total {total} min -> {n} unit(s) ({band(n)})"]
    if any(full.values()):
        steps.append(
            "full 15-minute units: "
            + ", ".join(f"{label(k)} {u}" for k, u in _ordered(full, rank) if u)
        )
    tie = False
    if left > 0:
        remainder = {k: m % 15 for k, m in minutes.items()}
        order = sorted(minutes, key=lambda k: (-remainder[k], -minutes[k], rank(k)))
        chosen, rest = order[:left], order[left:]
        for k in chosen:
            units[k] += 1
        steps.append(
            f"{left} unit(s) left for the largest remaining minutes: "
            + ", ".join(f"{label(k)} {remainder[k]} min" for k in order if remainder[k])
            + " -> "
            + ", ".join(label(k) for k in chosen)
        )
        if rest and remainder[rest[0]] == remainder[chosen[-1]]:
            tie = True
            tied = [k for k in order if remainder[k] == remainder[chosen[-1]]]
            by_minutes = minutes[chosen[-1]] != minutes[rest[0]]
            steps.append(
                f"tie at {remainder[chosen[-1]]} remaining min between "
                + ", ".join(label(k) for k in tied)
                + (" broken by more total minutes" if by_minutes else " broken by code order")
                + " (CMS leaves the choice to the clinician)"
            )
    elif left < 0:  # cannot happen: floor(m/15) summed never exceeds floor((T+7)/15)
        raise AssertionError("full units exceed the total")
    zero = [label(k) for k, u in _ordered(units, rank) if u == 0]
    if zero:
        steps.append("documented, no unit: " + ", ".join(zero))
    return Allocation(
        units=units, total_minutes=total, total_units=n, steps=tuple(steps), tie_broken=tie
    )


def allocate_ama(minutes: Mapping[K, int]) -> dict[K, int]:
    """The CPT/AMA per-code method: each code on its own, remainders never pooled."""
    return {k: units_for_minutes(m) for k, m in minutes.items()}


def _ordered(d: Mapping[K, int], rank: Callable[[K], tuple[int, str]]) -> list[tuple[K, int]]:
    """The items in rank order (the configured code order)."""
    return sorted(d.items(), key=lambda kv: rank(kv[0]))
