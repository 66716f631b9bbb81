"""The library API (README "Library use"): a FHIR Bundle in, the transaction Bundle the adapter
would write and the decision of every patient-day out, or their explanation as text."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from adapter.domain import Decision, Rulebook
from adapter.fhir.build import BuildOptions
from adapter.pipeline import Options
from adapter.replay import evaluate_bundle as _evaluate

VERSION = "0.1.0"


def evaluate_bundle(
    bundle: dict[str, Any],
    rulebook: Rulebook,
    *,
    payer: str | None = None,
    default_payer: str = "medicare",
    evaluated_at: datetime | None = None,
    billing_recipient: str | None = None,
) -> tuple[dict[str, Any], list[Decision]]:
    """Evaluate a FHIR R4 Bundle (or a single resource): the output transaction Bundle and the
    decision of every patient-day in it. ``payer`` forces a payer profile for every day."""
    options = Options(
        payer_override=payer,
        default_payer=default_payer,
        evaluated_at=evaluated_at,
        build=BuildOptions(
            agent=f"therapy-charge-adapter {VERSION}", billing_recipient=billing_recipient
        ),
    )
    out, decisions, _ = _evaluate(bundle, rulebook, options)
    return out, decisions


def explain_bundle(bundle: dict[str, Any], rulebook: Rulebook, **kwargs: Any) -> str:
    """The explanation of every patient-day in a FHIR Bundle, as readable text."""
    _, decisions = evaluate_bundle(bundle, rulebook, **kwargs)
    return "\n\n".join(d.explain() for d in decisions)
