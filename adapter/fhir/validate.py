"""Validate FHIR R4 JSON against the ``fhir.resources.R4B`` models (R4B shares R4's shapes for
every resource the adapter writes: ChargeItem, Claim, Communication, Provenance, Bundle)."""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError


@cache
def _model(resource_type: str) -> Any:
    return get_fhir_model_class(resource_type)


def validation_errors(resource: dict[str, Any]) -> list[str]:
    """Problems found by the R4B model, as 'path: message' strings; empty when valid."""
    kind = resource.get("resourceType")
    if not isinstance(kind, str):
        return ["resourceType: missing"]
    try:
        model = _model(kind)
    except (KeyError, ValueError):
        return [f"resourceType: unknown type {kind!r}"]
    try:
        model.model_validate(resource)
    except ValidationError as err:
        return [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()]
    return []
