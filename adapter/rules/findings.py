"""Findings: how one is made, and the day's final list (de-duplicated, sorted) and its text."""

from __future__ import annotations

from collections.abc import Iterable

from adapter.domain import Finding, FindingCode, Severity

ERR, WARN, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO
_SEVERITY_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


def finding(
    code: FindingCode,
    severity: Severity,
    message: str,
    ids: Iterable[str] = (),
    line_code: str | None = None,
) -> Finding:
    """A finding on the given interventions (ids sorted, each once)."""
    return Finding(
        code=code,
        severity=severity,
        message=message,
        intervention_ids=tuple(sorted(set(ids))),
        line_code=line_code,
    )


def dedupe(findings: Iterable[Finding]) -> list[Finding]:
    """Each finding once, errors first, then warnings, then info; then by code, ids, message."""
    unique = dict.fromkeys(findings)
    return sorted(
        unique,
        key=lambda f: (
            _SEVERITY_ORDER[f.severity],
            f.code.value,
            f.intervention_ids,
            f.line_code or "",
            f.message,
        ),
    )


def explain_findings(findings: Iterable[Finding]) -> list[str]:
    """The explanation's "Findings:" section (nothing when there are none)."""
    text = [
        f"  {f.severity.value} {f.code.value}"
        + (f" [{', '.join(f.intervention_ids)}]" if f.intervention_ids else "")
        + f": {f.message}"
        for f in findings
    ]
    return ["Findings:", *text] if text else []
