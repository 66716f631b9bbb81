"""Which payer profile bills a patient-day (README "Input conventions"), pure.

The patient's active coverage, read by the FHIR edge into a ``CoverageType``, maps to a profile
by the Source of Payment Typology rules of ``mappings/fhir.toml`` (``[[coverage_type]]``: 1… ->
medicare, 2… -> medicaid, 31 and 311… -> tricare, else the ``[coverage]`` default); a caller's
override wins; no coverage, or one without a typology code, falls back to the configured default
profile and says so (``CoverageStatus``), which the day's findings report.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapter.domain import CoverageStatus, IntakeRules


@dataclass(frozen=True, slots=True, kw_only=True)
class CoverageType:
    """An active coverage's type: the code of its first Source of Payment Typology coding
    (``system``), and whether any such coding carries a code at all."""

    system: str
    code: str | None
    typed: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class PayerChoice:
    payer: str
    status: CoverageStatus
    rule_ref: str | None  # the coverage rule that decided it (None: override or default)


def profile_for_type(intake: IntakeRules, system: str | None, code: str | None) -> PayerChoice:
    """The first ``[[coverage_type]]`` rule matching the coding, else the ``[coverage]``
    default profile."""
    for rule in intake.coverage_rules:
        if rule.matches(system, code):
            return PayerChoice(
                payer=rule.payer, status=CoverageStatus.KNOWN, rule_ref=rule.source.ref
            )
    return PayerChoice(
        payer=intake.default_coverage_payer,
        status=CoverageStatus.KNOWN,
        rule_ref="fhir:coverage:default",
    )


def choose_payer(
    coverage: CoverageType | None, *, override: str | None, default: str, intake: IntakeRules
) -> PayerChoice:
    """The profile for a patient-day: the override; else the active coverage's type; else
    (no coverage, or a coverage without a typology code) the ``default`` profile."""
    if override:
        return PayerChoice(payer=override, status=CoverageStatus.KNOWN, rule_ref=None)
    if coverage is None:
        status = CoverageStatus.MISSING if override is None else CoverageStatus.KNOWN
        return PayerChoice(payer=default, status=status, rule_ref=None)
    if not coverage.typed and override is None:
        return PayerChoice(payer=default, status=CoverageStatus.UNTYPED, rule_ref=None)
    return profile_for_type(intake, coverage.system, coverage.code)
