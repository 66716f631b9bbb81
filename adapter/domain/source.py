"""Where a rule entry comes from and when it applies: stamped on everything it produces."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleSource:
    """Where a rule entry comes from and when it applies (both ends inclusive): ``ref`` is the
    reference stamped on what it produces (``rule_refs``), ``citation`` the text it rests on."""

    ref: str
    citation: str
    confidence: str
    effective_from: date
    effective_to: date | None = None

    def in_effect(self, on: date) -> bool:
        return self.effective_from <= on and (self.effective_to is None or on <= self.effective_to)
