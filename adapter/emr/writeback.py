"""The write-back's reads and writes on the target FHIR server (the pure plan is
``adapter.fhir.diff``).

- ``existing_for_day``: what the adapter wrote for a patient-day before (one batch of searches
  by the day's tag);
- ``billed_days``: the patient-days a procedure was billed on, from the day tags of the
  adapter's ChargeItems whose ``service`` names it.
"""

from __future__ import annotations

import logging
from typing import Any

from adapter.domain import PatientDay
from adapter.emr.client import FhirClient
from adapter.errors import FatalServerError
from adapter.fhir import codes
from adapter.fhir.diff import existing_from, existing_searches
from adapter.fhir.refs import meta_of, ref_key, reference_of

log = logging.getLogger(__name__)
Resource = dict[str, Any]
#: unrelated ChargeItems in a row after which the target is taken to ignore ``service``
IGNORED_SEARCH_LIMIT = 200


def existing_for_day(target: FhirClient, day: PatientDay) -> dict[str, list[Resource]]:
    """What the adapter wrote for a patient-day before, by resource type (one batch request)."""
    return existing_from(target.search_batch(existing_searches(day)), day)


def billed_days(target: FhirClient, procedure: str, *, strict: bool) -> set[PatientDay]:
    """The patient-days of the adapter's ChargeItems for ``procedure`` (``Procedure/id``), from
    their day tags on the write target: a deleted procedure is voided even when the store has
    no ledger row for it (a new state directory, another replica's store).

    A target that ignores ``service`` is not paged through: for a delete (``strict``) that is
    an error (its lines could stay billed), otherwise a warning."""
    days: set[PatientDay] = set()
    unrelated = 0
    for item in target.search("ChargeItem", [("service", procedure), ("_count", "200")]):
        services = {ref_key(ref) for s in item.get("service") or [] if (ref := reference_of(s))}
        if procedure not in services:
            unrelated += 1
            if unrelated >= IGNORED_SEARCH_LIMIT:
                message = (
                    f"the target ignores ChargeItem?service=: {procedure}'s billed days unknown"
                )
                if strict:
                    raise FatalServerError(message)
                log.warning(message)
                break
            continue
        for tag in meta_of(item).get("tag") or []:
            if isinstance(tag, dict) and tag.get("system") == codes.CS_PATIENT_DAY:
                try:
                    days.add(PatientDay.from_key(str(tag.get("code") or "")))
                except ValueError:  # not one of ours: skipped, the other days still count
                    log.warning("ChargeItem/%s has a malformed patient-day tag", item.get("id"))
    return days
