"""The one place that wires intake -> parse -> evaluate -> build -> write-back.

Every source hands a patient-day's completed Procedures and a ``Lookup`` for their context to
``process_day`` and gets back the decision and the transaction entries. Replay writes them to
files; the live service (webhook, polling) calls ``sync_day``, which gathers the day from the EMR
and writes only the difference to the target server.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Any

from adapter.domain import (
    Authorization,
    DayReview,
    Decision,
    KxSpend,
    PatientDay,
    Rulebook,
    ServiceDay,
)
from adapter.emr.client import FhirClient
from adapter.emr.writeback import existing_for_day
from adapter.errors import FatalServerError, TemporaryServerError
from adapter.fhir.build import BuildOptions, build_day, transaction
from adapter.fhir.diff import (
    WriteResult,
    existing_from,
    existing_searches,
    plan,
    voided_services,
)
from adapter.fhir.parse import DayFacts, Lookup, ParsedDay, service_day
from adapter.fhir.parties import Parties, parties_of
from adapter.fhir.refs import split_key, version_of
from adapter.intake.events import ChangeEvent
from adapter.intake.gather import days_of, gather_day, procedure_day
from adapter.ledger import DayHistory
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
    #: the site's opening balances of the KX total: (patient key, year) -> per group (they win
    #: over the Coverage extensions)
    kx_opening: Mapping[tuple[str, int], KxSpend] = field(default_factory=dict)
    #: the allowed amounts of the adapter's own lines on earlier days of the year, for the day
    #: being processed (the shell's ledger; None: none)
    kx_prior: KxSpend | None = None
    #: the patient's earlier treatment days and evaluations, for the progress-report clock (the
    #: shell's history; None: none known)
    history: DayHistory | None = None
    #: the site's file of authorizations, by patient key (besides the EMR's ClaimResponses)
    authorizations: Mapping[str, tuple[Authorization, ...]] = field(default_factory=dict)
    #: whether the EMR is searched for ClaimResponses (off where it offers none)
    emr_authorizations: bool = True
    #: whether polls search the patient's context (plans of care, documents, authorizations)
    #: for changes, which recompute the patient's days
    poll_context: bool = False
    #: the first date of service the adapter bills: an earlier day is history only (computed
    #: and kept in the ledger for the clocks and the KX total, never written)
    bill_from: date | None = None
    #: whether decisions are written back over FHIR (off: a site whose billing system takes
    #: only the other targets' formats)
    write_fhir: bool = True
    #: the billing office's overrides and released holds for the day synced (the shell's
    #: store; None: none)
    review: DayReview | None = None


@dataclass(frozen=True, slots=True)
class DayResult:
    parsed: ParsedDay
    decision: Decision | None  # None: nothing on the day was therapy
    entries: list[dict[str, Any]]
    #: the day's people and payer as the billing formats name them (HL7 v2, 837P)
    parties: Parties | None = None


def process_day(
    procedures: Sequence[dict[str, Any]],
    lookup: Lookup,
    rulebook: Rulebook,
    *,
    day: PatientDay,
    options: Options,
) -> DayResult:
    """Parse, evaluate and build one patient-day (no I/O beyond the ``lookup``)."""
    parsed = service_day(
        procedures,
        lookup,
        rulebook,
        patient=day.patient,
        service_date=day.service_date.isoformat(),
        payer_override=options.payer_override,
        default_payer=options.default_payer,
        evaluated_at=options.evaluated_at,
        zone=options.zone,
    )
    kx = options.kx_opening.get((day.patient, day.service_date.year))
    site_grants = options.authorizations.get(day.patient, ())
    if kx is not None or options.kx_prior is not None or options.history is not None or site_grants:
        history = options.history or DayHistory()
        parsed = dataclasses.replace(
            parsed,
            day=dataclasses.replace(
                parsed.day,
                kx_spend=kx if kx is not None else parsed.day.kx_spend,
                kx_prior=options.kx_prior or parsed.day.kx_prior,
                treatment_days=history.treatment_days,
                unit_history=history.units,
                progress_reports=tuple(sorted(
                    (*parsed.day.progress_reports, *history.evaluations),
                    key=lambda r: (r.date, r.ref),
                )),
                authorizations=(*parsed.day.authorizations, *site_grants),
            ),
        )  # fmt: skip
    if options.review is not None:
        parsed = dataclasses.replace(
            parsed, day=dataclasses.replace(parsed.day, review=options.review)
        )
    facts = parsed.facts
    people = [
        *(p for ps in facts.performers.values() for p in ps),
        *(p for ps in facts.supervisors.values() for p in ps),
        *([facts.referring] if facts.referring else []),
    ]
    # also for a day with nothing left on it: the other targets credit or void what they have
    parties = parties_of(lookup, day.patient, facts.coverage, people, facts.diagnoses)
    if not parsed.day.interventions:
        return DayResult(parsed, None, [], parties)
    decision = evaluate(parsed.day, rulebook)
    return DayResult(parsed, decision, build_day(decision, facts, options.build), parties)


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What syncing one patient-day with the server did."""

    day: PatientDay
    decision: Decision | None
    write: WriteResult
    problems: int
    inputs: dict[str, str]  # Procedure key -> versionId seen
    decision_hash: str
    #: the day as the other billing formats need it (None: nothing was parsed)
    facts: DayFacts | None = None
    parties: Parties | None = None
    history_only: bool = False  # before bill_from: kept, never written or sent
    #: the day as the rules saw it (the workbench's timeline), None: nothing was parsed
    service_day: ServiceDay | None = None


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
    day: PatientDay,
    options: Options,
    attempts: int = 3,
) -> SyncResult:
    """Recompute one patient-day from the EMR and write the difference to ``target``.

    A concurrent change to one of the day's resources (412 on If-Match) re-reads and retries.
    """
    if options.bill_from is not None and day.service_date < options.bill_from:
        # history only: before the adapter bills, another process billed the day
        result, inputs, _ = _recompute(emr, None, rulebook, day, options)
        log.info("day %s is before bill_from: kept as history, nothing written", day.key)
        return SyncResult(day, result.decision, WriteResult(), len(result.parsed.problems),
                          inputs, decision_hash(result.decision), result.parsed.facts,
                          result.parties, history_only=True,
                          service_day=result.parsed.day)  # fmt: skip
    if not options.write_fhir:  # the other targets alone (their outboxes)
        result, inputs, _ = _recompute(emr, None, rulebook, day, options)
        return SyncResult(day, result.decision, WriteResult(), len(result.parsed.problems),
                          inputs, decision_hash(result.decision), result.parsed.facts,
                          result.parties, service_day=result.parsed.day)  # fmt: skip
    for attempt in range(1, attempts + 1):
        result, inputs, existing = _recompute(emr, target, rulebook, day, options)
        entries, written = plan(
            result.entries,
            existing,
            day=day,
            correction_recipient=options.build.billing_recipient,
        )
        confirm_voids(emr, voided_services(existing, written) - set(inputs), day, options.zone)
        if entries:
            try:
                target.transaction(transaction(entries))
            except FatalServerError as err:
                if err.status in (409, 412) and attempt < attempts:
                    log.info("day %s changed while writing; retrying", day.key)
                    continue
                raise
        log.info(
            "day %s: %d created, %d updated, %d voided, %d unchanged",
            day.key, len(written.created), len(written.updated), len(written.voided),
            len(written.unchanged),
        )  # fmt: skip
        return SyncResult(
            day, result.decision, written, len(result.parsed.problems), inputs,
            decision_hash(result.decision), result.parsed.facts, result.parties,
            service_day=result.parsed.day,
        )  # fmt: skip
    raise AssertionError("unreachable")  # pragma: no cover


def _recompute(
    emr: FhirClient,
    target: FhirClient | None,
    rulebook: Rulebook,
    day: PatientDay,
    options: Options,
) -> tuple[DayResult, dict[str, str], dict[str, list[dict[str, Any]]]]:
    """Gather the day from the EMR and process it: the result, the versions of the procedures
    it was computed from, and what the adapter wrote for the day before (``target`` None:
    not asked)."""
    # one server for both (the usual deployment): ask for the day's earlier writes in the
    # same batch as the EMR data
    same_server = target is not None and (emr is target or emr.base_url == target.base_url)
    spool, earlier = gather_day(
        emr, day, zone=options.zone, also=existing_searches(day) if same_server else (),
        authorizations=options.emr_authorizations,
        signatures=rulebook.clocks.certification.convention == "provenance",
    )  # fmt: skip
    try:
        procedures = spool.procedures_of(day.patient, day.service_date.isoformat())
        result = process_day(procedures, spool, rulebook, day=day, options=options)
    finally:
        spool.close()
    inputs = {str(p["_key"]): version_of(p) or "" for p in procedures}
    if target is None:
        return result, inputs, {}
    existing = existing_from(earlier, day) if same_server else existing_for_day(target, day)
    return result, inputs, existing


def confirm_voids(
    emr: FhirClient, procedures: set[str], day: PatientDay, zone: tzinfo | None
) -> None:
    """Nothing is voided on hearsay: a line whose procedures the day's searches did not return
    is voided only on the EMR's own word, read back procedure by procedure: gone (404/410),
    no longer completed (entered in error, not done), or on another patient-day. A procedure
    the EMR still has, completed, on this day means its searches missed it (an index that lags,
    a notification about something else): nothing is written and the change is retried."""
    for key in sorted(procedures):
        parts = split_key(key)
        if parts is None or parts[0] != "Procedure":
            continue  # not a reference the adapter wrote: nothing to ask the EMR about
        try:
            proc = emr.read(*parts)
        except FatalServerError as err:
            if err.status in (404, 410):
                continue
            raise
        if proc.get("status") != "completed" or procedure_day(emr, proc, zone) != day:
            continue
        log.warning("day %s: %s is on the day in the EMR but its search missed it", day.key, key)
        raise TemporaryServerError(
            f"{key} is still completed on {day.key} in the EMR, but the day's searches did not "
            "return it: its lines are not voided; retrying"
        )


def handle_events(
    emr: FhirClient,
    target: FhirClient,
    rulebook: Rulebook,
    events: Sequence[ChangeEvent],
    options: Options,
) -> list[SyncResult]:
    """Recompute and write back every patient-day a batch of changes touches."""
    return [
        sync_day(emr, target, rulebook, day=day, options=options)
        for day in sorted(days_of(emr, events, zone=options.zone))
    ]
