"""The one place that wires intake -> parse -> evaluate -> build -> write-back.

Every source hands a patient-day's completed Procedures and a ``Lookup`` for their context to
``process_day`` and gets back the decision and the transaction entries. Replay writes them to
files; the live service (webhook, polling) calls ``sync_day``, which gathers the day from the EMR
and writes only the difference to the target server.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from adapter.domain import Decision, Rulebook
from adapter.errors import FatalServerError
from adapter.fhir.build import BuildOptions, build_day, day_key_of, transaction
from adapter.fhir.client import FhirClient
from adapter.fhir.parse import Lookup, ParsedDay, service_day
from adapter.fhir.writeback import (
    WriteResult,
    existing_for_day,
    existing_from,
    existing_searches,
    plan,
)
from adapter.intake.live import ChangeEvent, days_of, gather_day
from adapter.rules import evaluate

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """Choices that shape a run: payer selection, evaluation time and what gets written."""

    payer_override: str | None = None
    default_payer: str = "medicare"
    evaluated_at: datetime | None = None
    build: BuildOptions = field(default_factory=BuildOptions)
    # the site's time zone: dates of service are dates there (None: each time's own offset)
    zone: tzinfo | None = None


@dataclass(frozen=True, slots=True)
class DayResult:
    parsed: ParsedDay
    decision: Decision | None  # None: nothing on the day was therapy
    entries: list[dict[str, Any]]


def process_day(
    procedures: Sequence[dict[str, Any]],
    lookup: Lookup,
    rulebook: Rulebook,
    *,
    patient: str,
    service_date: str,
    options: Options,
) -> DayResult:
    parsed = service_day(
        procedures,
        lookup,
        rulebook,
        patient=patient,
        service_date=service_date,
        payer_override=options.payer_override,
        default_payer=options.default_payer,
        evaluated_at=options.evaluated_at,
        zone=options.zone,
    )
    if not parsed.day.interventions:
        return DayResult(parsed, None, [])
    decision = evaluate(parsed.day, rulebook)
    return DayResult(parsed, decision, build_day(decision, parsed.facts, options.build))


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What syncing one patient-day with the server did."""

    patient: str
    service_date: str
    decision: Decision | None
    write: WriteResult
    problems: int
    inputs: dict[str, str]  # Procedure key -> versionId seen
    decision_hash: str

    @property
    def day_key(self) -> str:
        return day_key_of(self.patient, self.service_date)


def _version(resource: dict[str, Any]) -> str:
    meta = resource.get("meta")
    version = meta.get("versionId") if isinstance(meta, dict) else None
    return str(version) if isinstance(version, str | int) else ""


def decision_hash(decision: Decision | None) -> str:
    """A stable hash of what a decision bills and flags (lines and finding codes)."""
    if decision is None:
        return "none"
    body = {
        "lines": [
            [ln.code, ln.units, list(ln.modifiers), list(ln.intervention_ids)]
            for ln in decision.lines
        ],
        "findings": sorted(
            {f"{f.code.value}:{','.join(f.intervention_ids)}" for f in decision.findings}
        ),
        "rulebook": decision.rulebook_version,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def sync_day(
    emr: FhirClient,
    target: FhirClient,
    rulebook: Rulebook,
    *,
    patient: str,
    service_date: str,
    options: Options,
    attempts: int = 3,
) -> SyncResult:
    """Recompute one patient-day from the EMR and write the difference to ``target``.

    A concurrent change to one of the day's resources (412 on If-Match) re-reads and retries.
    """
    day_key = day_key_of(patient, service_date)
    for attempt in range(1, attempts + 1):
        # one server for both (the usual deployment): ask for the day's earlier writes in the
        # same batch as the EMR data
        same_server = emr is target or emr.base_url == target.base_url
        spool, earlier = gather_day(
            emr, patient, service_date, zone=options.zone,
            also=existing_searches(day_key) if same_server else (),
        )  # fmt: skip
        try:
            procedures = spool.procedures_of(patient, service_date)
            result = process_day(
                procedures, spool, rulebook,
                patient=patient, service_date=service_date, options=options,
            )  # fmt: skip
        finally:
            spool.close()
        inputs = {
            str(p["_key"]): str((p.get("meta") or {}).get("versionId", "")) for p in procedures
        }
        existing = existing_from(earlier) if same_server else existing_for_day(target, day_key)
        entries, written = plan(
            result.entries,
            existing,
            day_key=day_key,
            correction_recipient=options.build.billing_recipient,
        )
        if entries:
            try:
                target.transaction(transaction(entries))
            except FatalServerError as err:
                if err.status in (409, 412) and attempt < attempts:
                    log.info("day %s changed while writing; retrying", day_key)
                    continue
                raise
        log.info(
            "day %s: %d created, %d updated, %d voided, %d unchanged",
            day_key, len(written.created), len(written.updated), len(written.voided),
            len(written.unchanged),
        )  # fmt: skip
        return SyncResult(
            patient, service_date, result.decision, written, len(result.parsed.problems),
            inputs, decision_hash(result.decision),
        )  # fmt: skip
    raise AssertionError("unreachable")  # pragma: no cover


def handle_events(
    emr: FhirClient,
    target: FhirClient,
    rulebook: Rulebook,
    events: Sequence[ChangeEvent],
    options: Options,
) -> list[SyncResult]:
    """Recompute and write back every patient-day a batch of changes touches."""
    return [
        sync_day(emr, target, rulebook, patient=p, service_date=d, options=options)
        for p, d in sorted(days_of(emr, events, zone=options.zone))
    ]
