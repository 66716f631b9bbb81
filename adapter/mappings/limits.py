"""``limits.toml``: the evaluation limits (``[evaluations]``) and the unit review thresholds
(``[[unit_threshold]]``)."""

from __future__ import annotations

from collections.abc import Container
from typing import NamedTuple

from adapter.domain import EvaluationLimits, UnitThreshold
from adapter.errors import MappingError
from adapter.mappings.codes import require_code
from adapter.mappings.files import MappingsDir, entries, parse
from adapter.mappings.rows import EvaluationsRow, LimitsFile, UnitThresholdRow

NAME = "limits.toml"


class Limits(NamedTuple):
    """What ``limits.toml`` contributes to the rulebook."""

    evaluations: EvaluationLimits
    unit_thresholds: tuple[UnitThreshold, ...]


def load_limits(mappings: MappingsDir, codes: Container[str], payers: Container[str]) -> Limits:
    """Validate ``limits.toml``: ``[evaluations]`` first, then the unit thresholds."""
    file = mappings.file(NAME)
    doc = parse(LimitsFile, mappings.docs[NAME], file, "(file)")
    evaluations = _evaluations(doc, file, codes)
    return Limits(evaluations, _unit_thresholds(doc, file, codes, payers))


def _evaluations(doc: LimitsFile, file: str, codes: Container[str]) -> EvaluationLimits:
    """The ``[evaluations]`` table, whose exclusive codes must be known."""
    ev = parse(EvaluationsRow, doc.evaluations, file, "[evaluations]")
    for code in ev.exclusive_with_evaluation:
        require_code(codes, code, file, "[evaluations]")
    return EvaluationLimits(
        per_discipline_per_day=ev.per_discipline_per_day,
        disciplines=frozenset(ev.disciplines),
        exclusive_with_evaluation=frozenset(ev.exclusive_with_evaluation),
        source=ev.rule_source("limits:evaluations"),
    )


def _unit_thresholds(
    doc: LimitsFile, file: str, codes: Container[str], payers: Container[str]
) -> tuple[UnitThreshold, ...]:
    """The ``[[unit_threshold]]`` entries: the code and the ``with_codes`` known, the payers in
    ``payers.toml``; duplicates if code, payers and with_codes repeat from the same day. The
    rule source names the code, the units and any ``with_codes``."""
    thresholds = []
    threshold_rows = entries(
        doc.unit_threshold,
        UnitThresholdRow,
        file,
        "unit_threshold",
        lambda e: f"{e.code}/{sorted(e.payers)}/{sorted(e.with_codes)}@{e.effective_from}",
    )
    for label, ut in threshold_rows:
        require_code(codes, ut.code, file, label)
        for code in ut.with_codes:
            require_code(codes, code, file, label)
        for pid in ut.payers:
            if pid not in payers:
                raise MappingError(file, label, f"payer {pid} is not in payers.toml")
        ref = f"limits:unit_threshold:{ut.code}>{ut.max_units}"
        if ut.with_codes:
            ref += "+with:" + ",".join(sorted(ut.with_codes))
        thresholds.append(
            UnitThreshold(
                code=ut.code,
                max_units=ut.max_units,
                payers=frozenset(ut.payers),
                with_codes=frozenset(ut.with_codes),
                source=ut.rule_source(ref),
            )
        )
    return tuple(thresholds)
