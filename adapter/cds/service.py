"""The CDS Hooks services (a driver: it wires intake, the rules and the store like the live
service does). ``therapy-encounter-review`` on ``encounter-discharge`` (and ``encounter-start``):
the draft day's procedures from the prefetch, evaluated by the same rules as the charges (with
the store's ledger history for the clocks), answered as cards — one per finding, critical for
an error (the line would be held), warning for a warning, and an info card with the expected
lines and units.

Every call carries the CDS client's JWT (``tokens.verify``); a call without a valid one is
refused with 401 before anything is read. A request without the prefetch the service asks for
is answered with one card saying so (the EMR reads with the client's ``fhirAuthorization`` are
not done yet). Logs carry the hook, the service id and counts only.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import orjson
from pydantic import ValidationError

from adapter.cds.models import (
    Card,
    Coding,
    Discovery,
    Feedback,
    HookRequest,
    HookResponse,
    Link,
    Service,
    Source,
)
from adapter.cds.suggest import stable_uuid, suggestions
from adapter.cds.tokens import CdsClient, TokenError, verify
from adapter.domain import (
    Decision,
    Finding,
    KxGroup,
    PatientDay,
    Rulebook,
    Severity,
)
from adapter.emr.auth import BearerAuth
from adapter.emr.client import FhirClient, RetryPolicy
from adapter.errors import FatalServerError
from adapter.fhir import codes
from adapter.fhir.coding import coding_keys
from adapter.fhir.dates import service_date_of
from adapter.fhir.refs import is_id
from adapter.ledger import as_spend, history_of
from adapter.pipeline import Options
from adapter.replay import evaluate_bundle
from adapter.rules.sources import finding_source
from adapter.store import SqlStore

log = logging.getLogger(__name__)
REVIEW = "therapy-encounter-review"
#: what the review needs, fetched by the EMR before it calls (CDS Hooks prefetch templates)
PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "encounter": "Encounter/{{context.encounterId}}",
    "procedures": "Procedure?encounter={{context.encounterId}}&_include=Procedure:performer",
    "coverage": "Coverage?patient={{context.patientId}}&status=active",
    "careplans": "CarePlan?subject={{context.patientId}}&status=active",
    "roles": "PractitionerRole?_has:Procedure:performer:encounter={{context.encounterId}}",
}
CHECK = "therapy-appointment-check"
CHECK_PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "coverage": "Coverage?patient={{context.patientId}}&status=active",
    "careplans": "CarePlan?subject={{context.patientId}}&status=active",
    "documents": "DocumentReference?subject={{context.patientId}}",
    "authorizations": "ClaimResponse?patient={{context.patientId}}&use=preauthorization",
}
#: a visit booked is checked as a 15-minute treatment of its discipline would be
PROBE = {"PT": ("97110", "225100000X"), "OT": ("97110", "225X00000X"),
         "SLP": ("92507", "235Z00000X")}  # fmt: skip
#: the findings an appointment check reports (the clocks and the KX total)
CLOCKS = frozenset({
    "plan-uncertified", "plan-certified-late", "plan-recertification-due", "no-plan-of-care",
    "progress-report-due", "progress-report-missing", "authorization-missing",
    "authorization-exceeded", "authorization-running-out", "kx-applied", "kx-targeted-review",
    "kx-forecast",
})  # fmt: skip
#: a draft procedure (not signed yet) is reviewed as the completed service it will be
DRAFT = frozenset({"preparation", "in-progress", "completed"})
OVERRIDE = [Coding(system=codes.CS_FINDING, code="clinician-reviewed",
                   display="Reviewed: the documentation is right as it is")]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]


@dataclass
class CdsServices:
    """The CDS Hooks services of one site."""

    rulebook: Rulebook
    options: Options
    store: SqlStore
    clients: Mapping[str, CdsClient]
    base_url: str  # the public URL the EMR calls, without /cds-services
    #: FHIR servers the service may read with the request's fhirAuthorization when the
    #: prefetch is missing (never with the adapter's own credentials); none: never read
    fhir_servers: frozenset[str] = frozenset()
    budget: float = 0.4  # seconds the EHR reads may take before the answer goes without them
    #: the billing workbench's base URL (``…/review``): a card links to the day there
    review_url: str | None = None
    services: Sequence[Service] = field(default_factory=lambda: [
        *(Service(hook=hook, id=REVIEW if hook == "encounter-discharge" else f"{REVIEW}-start",
                  title="Therapy charge review",
                  description="The day's therapy documentation checked against the billing "
                  "rules (8-minute rule, modifiers, edits, plan of care, progress reports, "
                  "authorizations) before the note is signed", prefetch=PREFETCH)
          for hook in ("encounter-discharge", "encounter-start")),
        Service(hook="appointment-book", id=CHECK, title="Therapy appointment check",
                description="For each therapy visit being booked: the plan of care's "
                "certification and end, the progress report due, the authorization's visits "
                "and units left, the KX total", prefetch=CHECK_PREFETCH),
    ])  # fmt: skip

    def discovery(self) -> Answer:
        return Answer(200, Discovery(services=list(self.services)).model_dump(exclude_none=True))

    def call(self, service_id: str, body: bytes, authorization: str | None) -> Answer:
        service = next((s for s in self.services if s.id == service_id), None)
        if service is None:
            return Answer(404, {"error": "no such CDS service"})
        refused = self._refused(service_id, authorization)
        if refused is not None:
            return refused
        try:
            request = HookRequest.model_validate(orjson.loads(body))
        except (orjson.JSONDecodeError, ValidationError):
            return Answer(400, {"error": "not a CDS Hooks request"})
        if request.hook != service.hook:
            return Answer(400, {"error": f"this service answers {service.hook}"})
        cards = self._check(request) if service.id == CHECK else self._review(request)
        log.info("cds %s %s: %d card(s)", service_id, request.hook, len(cards))
        return Answer(200, HookResponse(cards=cards).model_dump(exclude_none=True))

    def feedback(self, service_id: str, body: bytes, authorization: str | None) -> Answer:
        if not any(s.id == service_id for s in self.services):
            return Answer(404, {"error": "no such CDS service"})
        refused = self._refused(f"{service_id}/feedback", authorization)
        if refused is not None:
            return refused
        try:
            feedback = Feedback.model_validate(orjson.loads(body))
        except (orjson.JSONDecodeError, ValidationError):
            return Answer(400, {"error": "not CDS Hooks feedback"})
        for item in feedback.feedback:  # kept per card (the reason code, never free text)
            why = item.overrideReason.reason if item.overrideReason else None
            self.store.cds_feedback_add(service_id, item.card, item.outcome,
                                        why.code if why else "", item.outcomeTimestamp)  # fmt: skip
        log.info("cds %s feedback: %d item(s)", service_id, len(feedback.feedback))
        return Answer(200, {})

    def feedback_counts(self, service_id: str) -> dict[str, int]:
        """Feedback so far, by outcome (and override reason)."""
        return {f"{o}:{r}" if r else o: n
                for (o, r), n in self.store.cds_feedback_counts(service_id).items()}  # fmt: skip

    # -- internals ---------------------------------------------------------------------------
    def _refused(self, path: str, authorization: str | None) -> Answer | None:
        try:
            verify(authorization, clients=self.clients,
                   audience=f"{self.base_url}/cds-services/{path.removesuffix('/feedback')}",
                   remember=self._remember)  # fmt: skip
        except TokenError as why:
            log.warning("cds %s: refused (%s)", path, why)
            return Answer(401, {"error": "unauthorized"})
        return None

    def _remember(self, key: str, until: float) -> bool:
        """A token id recorded once (a second use is refused)."""
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return self.store.jti_first_use(f"cds-jti:{digest}", until)

    def _review(self, request: HookRequest) -> list[Card]:
        patient = request.context.get("patientId")
        prefetch = dict(request.prefetch or {})
        if not isinstance(patient, str) or not is_id(patient):
            text = "The request names no patient id; nothing was reviewed."
            return [_card("info", "Therapy charge review needs the patient", text, "patient")]
        if not prefetch.get("procedures"):
            fetched = self._fetch(request, PREFETCH, "procedures")
            if isinstance(fetched, Card):
                return [fetched]
            prefetch = fetched
        resources = _resources(prefetch)
        draft = [r for r in resources if r.get("resourceType") == "Procedure"
                 and r.get("status") in DRAFT]  # fmt: skip
        for proc in draft:
            proc["status"] = "completed"
        dates = sorted({d for p in draft if (d := service_date_of(p, self.options.zone))})
        options = self._with_history(f"Patient/{patient}", dates)
        bundle = {"resourceType": "Bundle", "type": "collection",
                  "entry": [{"resource": r} for r in resources]}  # fmt: skip
        _, decisions, _ = evaluate_bundle(bundle, self.rulebook, options)
        mine = [d for d in decisions if d.patient_id in (patient, f"Patient/{patient}")]
        procedures = {f"Procedure/{p['id']}": p for p in draft if isinstance(p.get("id"), str)}
        cards = [self._linked(c, d) for d in mine
                 for c in _cards(d, request.hookInstance, self.rulebook, procedures)]  # fmt: skip
        return cards or [_card("info", "No billable therapy on this encounter",
                               "No completed or draft therapy procedure was found in the "
                               "prefetch.", "none")]  # fmt: skip

    def _check(self, request: HookRequest) -> list[Card]:
        """Each booked therapy visit's clocks: the rules run on the visit as a short treatment
        of its discipline would be (the appointment's serviceType/specialty coding says which,
        by clocks.toml's categories; PT when none does), with the patient's context from the
        prefetch and the store's history."""
        patient = request.context.get("patientId")
        if not isinstance(patient, str) or not is_id(patient):
            text = "The request names no patient id; nothing was checked."
            return [_card("info", "Therapy appointment check needs the patient", text, "patient")]
        prefetch = dict(request.prefetch or {})
        if not prefetch:  # none sent: read from the EHR (the allow-list, the budget)
            fetched = self._fetch(request, CHECK_PREFETCH, "patient")
            if isinstance(fetched, Card):
                return [fetched]
            prefetch = fetched
        context = _resources(prefetch)
        appointments = _resources({"a": request.context.get("appointments")})
        cards: list[Card] = []
        for n, appt in enumerate(a for a in appointments if a.get("resourceType") == "Appointment"):
            on = service_date_of({"performedDateTime": appt.get("start")}, self.options.zone)
            if on is None:
                continue
            discipline = self._discipline(appt)
            probe = _probe(patient, on, discipline, n)
            options = self._with_history(f"Patient/{patient}", [on])
            bundle = {"resourceType": "Bundle", "type": "collection",
                      "entry": [{"resource": r} for r in [*context, *probe]]}  # fmt: skip
            _, found, _ = evaluate_bundle(bundle, self.rulebook, options)
            for d in (d for d in found if d.service_date.isoformat() == on):
                key = f"{request.hookInstance}:{appt.get('id')}"
                shown = [f for f in d.findings if f.severity is not Severity.INFO]
                clocks = [f for f in shown if f.code.value in CLOCKS]
                cards += [
                    _finding_card(
                        f, d, lines="", instance=key, rulebook=self.rulebook, procedures={}
                    )
                    for f in clocks
                ]
                state = [e for e in d.explanation if e.startswith(
                    ("Authorization", "Certification", "Progress report", "KX"))]  # fmt: skip
                summary = f"Therapy visit {on} ({discipline}): {len(state)} clock(s) checked"
                detail = "\n".join(state) or "No clock applies."
                cards.append(_card("info", summary[:140], detail, f"{key}:state"))
        text = "The request lists no appointment with a start."
        return cards or [_card("info", "No therapy appointment to check", text, "none")]

    def _linked(self, card: Card, decision: Decision) -> Card:
        """The card with a link to its day in the billing workbench (when one is served)."""
        if self.review_url is None:
            return card
        key = PatientDay(
            decision.patient_id if "/" in decision.patient_id else f"Patient/{decision.patient_id}",
            decision.service_date,
        ).key
        card.links = [
            Link(
                label="Open the day in the billing workbench",
                url=f"{self.review_url.rstrip('/')}/days/{key}",
            )
        ]
        return card

    def _discipline(self, appointment: Mapping[str, Any]) -> str:
        kinds = self.rulebook.clocks.certification.categories
        for element in ("serviceType", "specialty", "serviceCategory"):
            for key in coding_keys(list(appointment.get(element) or []), self.rulebook):
                if key in kinds:
                    return kinds[key].value
        return "PT"

    def _fetch(
        self, request: HookRequest, templates: Mapping[str, str], needed: str
    ) -> dict[str, Any] | Card:
        """The prefetch ``templates`` read from the EHR the request names, with its
        ``fhirAuthorization``, when that server is on the allow-list; within the budget, else a
        card saying so. ``needed``: the template without which nothing can be said."""
        server = (request.fhirServer or "").rstrip("/")
        auth = request.fhirAuthorization
        if not server or auth is None or server not in self.fhir_servers:
            return _card("info", f"Therapy charge review needs the {needed} prefetch",
                         "The EHR did not send the prefetch this service asks for, and its "
                         "FHIR server is not one this service may read; nothing was reviewed.",
                         "prefetch")  # fmt: skip
        ids = {k: v for k, v in request.context.items() if isinstance(v, str) and is_id(v)}
        future = _READS.submit(_read_prefetch, server, auth.access_token, ids, templates, needed)
        try:
            return future.result(timeout=self.budget)
        except FutureTimeout:
            log.warning("cds: the EHR's reads took longer than %.0f ms", self.budget * 1000)
            return _card("warning", "Therapy charge review incomplete: the EHR did not answer "
                         "in time", f"Reading the encounter's procedures from the EHR took "
                         f"longer than {self.budget * 1000:.0f} ms; nothing was reviewed. Send "
                         "the prefetch to avoid the reads.", "budget")  # fmt: skip
        except Exception as err:  # the EHR refused or failed: said, not raised
            log.warning("cds: the EHR's reads failed: %s", type(err).__name__)
            return _card("warning", "Therapy charge review incomplete: the EHR's reads failed",
                         "The EHR's FHIR server refused or failed the reads this review "
                         "needs; nothing was reviewed.", "reads")  # fmt: skip

    def _with_history(self, patient: str, dates: Sequence[str]) -> Options:
        """The store's history of the patient's earlier days (the clocks, the KX total), for
        the day reviewed."""
        if not dates:
            return self.options
        key = PatientDay(patient, date.fromisoformat(dates[0])).key
        prior = self.store.kx_prior(key)
        spend = {g: prior[g.value] for g in KxGroup if g.value in prior}
        return replace(self.options, history=history_of(self.store.treatment_history(key)),
                       kx_prior=as_spend(spend))  # fmt: skip


def _probe(patient: str, on: str, discipline: str, n: int) -> list[dict[str, Any]]:
    """A 15-minute treatment of the discipline on the visit's date by a therapist of it: what
    the rules need to say which clocks the visit meets (never written anywhere)."""
    code, taxonomy = PROBE.get(discipline, PROBE["PT"])
    role = {"resourceType": "PractitionerRole", "id": f"cds-probe-role-{discipline.lower()}",
            "code": [{"coding": [{"system": codes.NUCC, "code": taxonomy}]}]}  # fmt: skip
    proc = {"resourceType": "Procedure", "id": f"cds-probe-{n}", "status": "completed",
            "subject": {"reference": f"Patient/{patient}"},
            "code": {"coding": [{"system": codes.CPT, "code": code}]},
            "performedPeriod": {"start": f"{on}T12:00:00+00:00", "end": f"{on}T12:15:00+00:00"},
            "performer": [{"actor": {"reference": f"PractitionerRole/{role['id']}"}}]}  # fmt: skip
    return [role, proc]


_READS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="cds-reads")


def _read_prefetch(
    server: str, token: str, ids: Mapping[str, str], templates: Mapping[str, str], needed: str
) -> dict[str, Any]:
    """The prefetch templates' reads and searches (context ids filled in), with the client's
    token, at the server it named; a template whose ids the context lacks is left out."""
    # no retries and short timeouts: the answer cannot wait for them (the budget), and a read
    # left behind must not outlive the call by long
    client = FhirClient(server, BearerAuth(token), timeout=(2.0, 5.0), deadline=10.0,
                        retry=RetryPolicy(attempts=1))  # fmt: skip
    out: dict[str, Any] = {}
    for key, template in templates.items():
        text = template
        for name, value in ids.items():
            text = text.replace("{{context." + name + "}}", value)
        if "{{" in text:
            continue
        kind, _, rest = text.partition("?")
        if rest:
            params = [tuple(p.split("=", 1)) for p in rest.split("&") if "=" in p]
            try:
                found = list(client.search(kind, params))  # type: ignore[arg-type]
            except FatalServerError:
                if key == needed:
                    raise
                continue  # a search the server does not offer (e.g. _has): without it
            out[key] = {"resourceType": "Bundle", "type": "searchset",
                        "entry": [{"resource": r} for r in found]}  # fmt: skip
        else:
            kind, _, rid = text.partition("/")
            try:
                out[key] = client.read(kind, rid)
            except FatalServerError:
                if key == needed:
                    raise
    return out


def _resources(prefetch: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every resource of the prefetch (a resource, or a Bundle's entries), copied."""
    out: list[dict[str, Any]] = []
    for value in prefetch.values():
        if not isinstance(value, dict):
            continue
        if value.get("resourceType") == "Bundle":
            out += [copy.deepcopy(e["resource"]) for e in value.get("entry") or []
                    if isinstance(e, dict) and isinstance(e.get("resource"), dict)]  # fmt: skip
        elif isinstance(value.get("resourceType"), str):
            out.append(copy.deepcopy(value))
    return out


def _cards(
    decision: Decision,
    instance: str,
    rulebook: Rulebook,
    procedures: Mapping[str, Mapping[str, Any]],
) -> list[Card]:
    lines = ", ".join(" ".join([ln.code, f"x{ln.units}", *ln.modifiers]) for ln in decision.lines)
    cards = [_finding_card(f, decision, lines=lines, instance=instance, rulebook=rulebook,
                           procedures=procedures)
             for f in decision.findings
             if f.severity is not Severity.INFO]  # fmt: skip
    summary = f"Expected charges: {lines}" if lines else "No line would be billed as documented"
    detail = (f"Expected lines for {decision.service_date} (payer profile {decision.payer}, "
              f"{decision.method} units): {lines or 'none'}.")  # fmt: skip
    cards.append(_card("info", summary[:140], detail, f"{instance}:lines"))
    return cards


def _finding_card(
    f: Finding,
    decision: Decision,
    *,
    lines: str,
    instance: str,
    rulebook: Rulebook,
    procedures: Mapping[str, Mapping[str, Any]],
) -> Card:
    """One finding's card: the rule and its ``mappings/`` entry as the source, the mechanical
    fixes as suggestions, override reasons for a warning."""
    error = f.severity is Severity.ERROR
    text = f.message[0].upper() + f.message[1:]
    summary = (f"{'Blocks billing' if error else 'Review'}: {text}")[:137]
    summary = summary + "..." if len(summary) == 137 else summary
    detail = (f"{text}.\n\nFinding {f.code.value}"
              + (f" on {', '.join(f.intervention_ids)}" if f.intervention_ids else "")
              + f". Expected lines as documented now: {lines or 'none'}.")  # fmt: skip
    card = _card("critical" if error else "warning", summary, detail,
                 f"{instance}:{f.code.value}:{','.join(f.intervention_ids)}")  # fmt: skip
    card.source.topic = Coding(system=codes.CS_FINDING, code=f.code.value)
    rule = finding_source(f, decision, rulebook)
    if rule is not None:  # the rule and its mappings/ entry
        card.source.label = f"Therapy charge adapter: {rule.ref}"
        card.detail = f"{card.detail}\n\nRule ({rule.ref}, {rule.confidence}): {rule.citation}"
    fixes = suggestions(f, decision, procedures, rulebook)
    if fixes:
        card.suggestions = fixes
        card.selectionBehavior = "at-most-one"
    if not error:
        card.overrideReasons = OVERRIDE
    return card


def _card(indicator: str, summary: str, detail: str, key: str) -> Card:
    return Card.model_validate({
        "uuid": stable_uuid(key),
        "summary": summary, "detail": detail, "indicator": indicator,
        "source": Source(label="Therapy charge adapter"),
    })  # fmt: skip
