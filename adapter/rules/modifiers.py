"""Modifiers: the CQ/CO assistant split and the order of modifiers on a line (pure).

domain.md §3 is the specification; the order and the most a line holds are data
(``mappings/modifiers.toml``, ``Rulebook.modifiers``).
"""

from __future__ import annotations

from dataclasses import dataclass

from adapter.domain import ModifierRules


def order_modifiers(modifiers: set[str] | frozenset[str], rules: ModifierRules) -> tuple[str, ...]:
    """The modifiers in the configured order (any other after them, by name); at most
    ``rules.max_per_line``."""
    ordered = tuple(sorted(modifiers, key=rules.rank))
    if len(ordered) > rules.max_per_line:
        raise ValueError(f"more than {rules.max_per_line} modifiers on one line: {ordered}")
    return ordered


@dataclass(frozen=True, slots=True, kw_only=True)
class AssistantSplit:
    """How many of a code's units carry CQ/CO (``with_modifier``) and why."""

    with_modifier: int
    without_modifier: int
    reasons: tuple[str, ...]


def split_timed(
    units: int, therapist_minutes: int, assistant_minutes: int, *, special_rules: bool
) -> AssistantSplit:
    """Split a timed code's units between therapist units and assistant (CQ/CO) units.

    ``therapist_minutes`` includes the minutes therapist and assistant spent together;
    ``assistant_minutes`` are the assistant's independent minutes. The working algorithm of
    domain.md §3: full 15-minute blocks per clinician first (assistant blocks first, so a cap
    never drops a CQ unit in favour of a full-rate one), then the leftover units.
    """
    tm, am = therapist_minutes, assistant_minutes
    a = min(units, am // 15)
    t = min(units - a, tm // 15)
    left = units - a - t
    reasons: list[str] = []
    if a:
        reasons.append(f"{a} unit(s) from full 15-minute blocks furnished by the assistant alone")
    if t:
        reasons.append(f"{t} unit(s) from full 15-minute blocks furnished by the therapist")
    lt, la = tm % 15, am % 15
    if left >= 2 and special_rules and 9 <= lt <= 14 and 9 <= la <= 14:
        t, a, left = t + 1, a + 1, left - 2
        reasons.append(
            f"two leftover units, therapist {lt} and assistant {la} leftover min (each 9-14): "
            "one unit with and one without the assistant modifier (CY 2022 rule)"
        )
    if left:
        if special_rules and left == 1 and lt >= 8:
            t += 1
            reasons.append(
                f"final unit: therapist alone furnished {lt} leftover min (8 or more), "
                "billed without the assistant modifier (CY 2022 rule)"
            )
        elif la * 10 > lt + la:
            a += left
            reasons.append(
                f"{left} leftover unit(s): assistant furnished {la} of {lt + la} leftover min, "
                "more than 10% (de minimis): assistant modifier"
            )
        else:
            t += left
            reasons.append(
                f"{left} leftover unit(s): assistant furnished {la} of {lt + la} leftover min, "
                "not more than 10%: no assistant modifier"
            )
    return AssistantSplit(with_modifier=a, without_modifier=t, reasons=tuple(reasons))


def split_untimed(
    therapist_minutes: int, assistant_minutes: int, *, assistant_minutes_unknown: bool
) -> AssistantSplit:
    """An untimed service carries CQ/CO when the assistant's independent minutes exceed 10%."""
    if assistant_minutes_unknown:
        return AssistantSplit(
            with_modifier=1,
            without_modifier=0,
            reasons=("an assistant furnished part of it alone and the minutes are not documented",),
        )
    total = therapist_minutes + assistant_minutes
    if assistant_minutes * 10 > total:
        return AssistantSplit(
            with_modifier=1,
            without_modifier=0,
            reasons=(f"assistant furnished {assistant_minutes} of {total} min alone (over 10%)",),
        )
    return AssistantSplit(
        with_modifier=0,
        without_modifier=1,
        reasons=(
            (f"assistant furnished {assistant_minutes} of {total} min alone (not over 10%)",)
            if assistant_minutes
            else ()
        ),
    )
