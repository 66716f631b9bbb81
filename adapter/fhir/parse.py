"""FHIR R4 JSON -> domain: one patient-day's Procedures (plus context) into a ``ServiceDay``.

Works on plain JSON dicts, resolving references through a ``Lookup`` (the replay spool, or a live
FHIR server's search results). Problems in clinical data become domain values the rules core
judges (a missing time is ``start=None``, an unparseable one is ``time_error``); problems that
stop a resource from being placed at all (no subject, no date) are returned as ``Problem``s.
The input conventions are documented in the README ("Input conventions"); the pieces live in
``coding`` (codes, diagnoses), ``clinicians`` (disciplines), ``coverage`` (payer, KX spend) and
``dates`` (dates of service, periods).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from decimal import Decimal
from typing import Any, Protocol

from adapter.domain import (
    BusyPeriod,
    Clinician,
    CodeSource,
    Discipline,
    EncounterContext,
    Intervention,
    PatientDay,
    PlanOfCare,
    ProgressReport,
    Rulebook,
    ServiceDay,
)
from adapter.fhir import codes
from adapter.fhir.authorizations import authorizations_of
from adapter.fhir.clinicians import Clinicians, role_discipline
from adapter.fhir.coding import (
    ResolvedCode,
    coding_keys,
    codings,
    concepts,
    documented_code,
    has_diagnosis,
    icd_codings,
    is_therapy,
    resolve_code,
    texts,
)
from adapter.fhir.coverage import active_coverage, coverage_type, kx_spend
from adapter.fhir.dates import in_period, service_date_of
from adapter.fhir.refs import (
    Resource,
    as_dict,
    as_list,
    is_literal,
    latest,
    meta_of,
    parse_datetime,
    reference_of,
    split_key,
    written_reference,
)
from adapter.rules.payer import choose_payer


class Lookup(Protocol):
    """Where the parser finds referenced resources. Keys are ``Type/id`` (or a ``urn:uuid``)."""

    def get(self, ref: str) -> Resource | None: ...

    def key_of(self, ref: str) -> str: ...

    def roles_of(self, practitioner_key: str) -> Sequence[Resource]: ...

    def coverages_of(self, patient_key: str) -> Sequence[Resource]: ...

    def care_plans_of(self, patient_key: str) -> Sequence[Resource]: ...

    def documents_of(self, patient_key: str) -> Sequence[Resource]: ...

    def authorizations_of(self, patient_key: str) -> Sequence[Resource]: ...

    def provenances_of(self, target_key: str) -> Sequence[Resource]: ...

    def sessions_of(
        self, actor_keys: Iterable[str], service_date: str, exclude_patient: str
    ) -> Sequence[Resource]: ...


@dataclass(frozen=True, slots=True)
class Problem:
    """An input problem outside the rules: a resource that cannot be placed or resolved."""

    where: str
    reason: str


@dataclass(frozen=True, slots=True)
class DayFacts:
    """What the builder needs beyond the decision: references for the written resources."""

    day: PatientDay
    coverage: str | None
    provider: str | None
    encounters: tuple[str, ...]
    diagnoses: tuple[Mapping[str, Any], ...]  # the day's: ICD-10-CM codings, Condition refs
    #: the diagnoses (indices into ``diagnoses``) each intervention, and each encounter, names
    intervention_diagnoses: Mapping[str, tuple[int, ...]]
    encounter_diagnoses: Mapping[str, tuple[int, ...]]
    performers: Mapping[str, tuple[str, ...]]  # intervention id -> clinician ids
    intervention_encounter: Mapping[str, str | None]
    spans: Mapping[str, tuple[str | None, str | None]]  # intervention id -> raw start/end
    recorded: str  # deterministic 'recorded' instant for Provenance
    #: how to write the keys above that are no literal reference (a contained resource of an
    #: input, one known only by identifier): a logical Reference (identifier, display)
    references: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    assistants: frozenset[str] = frozenset()  # clinician ids of assistants (PTA, COTA, SLPA)
    #: the CMS place of service the day's encounters say (class HH: 12, home), else None
    place_of_service: str | None = None
    #: the physician/NPP who certified the plan of care (its author): the Claim's referring
    #: provider (837P loop 2310A)
    referring: str | None = None
    #: intervention id -> the supervising therapists (on its encounter, of its discipline) of
    #: a service an assistant furnished alone
    supervisors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    created: str = ""  # Claim.created: the evaluation's date (the shell's clock)


@dataclass(frozen=True, slots=True)
class ParsedDay:
    day: ServiceDay
    facts: DayFacts
    problems: tuple[Problem, ...]
    not_therapy: tuple[str, ...]  # procedure keys skipped as not therapy


def service_day(
    procedures: Sequence[Resource],
    lookup: Lookup,
    rulebook: Rulebook,
    *,
    patient: str,
    service_date: str,
    payer_override: str | None = None,
    default_payer: str = "medicare",
    evaluated_at: datetime | None = None,
    zone: tzinfo | None = None,
) -> ParsedDay:
    """Build the ``ServiceDay`` for one patient's completed procedures on one date of service.

    With a site time ``zone``, every time is converted to it, so the rules see site-local dates.
    """
    parser = _DayParser(lookup, rulebook, patient, service_date, zone)
    for proc in procedures:
        parser.procedure(proc)
    parser.unmapped()
    encounters, provider = parser.encounters()
    coverage = active_coverage(lookup.coverages_of(patient), service_date, zone)
    choice = choose_payer(
        coverage_type(coverage, rulebook) if coverage is not None else None,
        override=payer_override,
        default=default_payer,
        intake=rulebook.intake,
    )
    plans = [
        cp
        for cp in lookup.care_plans_of(patient)
        if cp.get("status") == "active" and in_period(cp.get("period"), service_date, zone)
    ]
    if provider is None:
        therapists = [p for iv in parser.interventions for p in iv.performers if not p.assistant]
        provider = therapists[0].id if therapists else None
    day = ServiceDay(
        patient_id=patient,
        service_date=date.fromisoformat(service_date),
        payer=choice.payer,
        interventions=tuple(parser.interventions),
        encounters=tuple(encounters),
        plan_of_care=bool(plans),
        plans=_plans(plans, rulebook, lookup),
        planned_visits_per_week=_visits_per_week(plans),
        progress_reports=_progress_reports(
            lookup.documents_of(patient), parser, rulebook, zone, service_date
        ),
        kx_spend=kx_spend(coverage),
        authorizations=authorizations_of(
            lookup.authorizations_of(patient), rulebook, zone, coverage=coverage, lookup=lookup.get
        ),
        other_patient_sessions=parser.busy(),
        evaluated_at=evaluated_at,
        coverage=choice.status,
    )
    facts = DayFacts(
        day=PatientDay.of(patient, service_date),
        coverage=f"Coverage/{coverage['id']}" if coverage and coverage.get("id") else None,
        provider=provider,
        encounters=tuple(parser.encounter_keys),
        diagnoses=tuple(parser.diagnoses),
        intervention_diagnoses={k: tuple(v) for k, v in parser.iv_dx.items()},
        encounter_diagnoses={k: tuple(v) for k, v in parser.enc_dx.items()},
        performers=parser.performers,
        intervention_encounter=parser.iv_encounter,
        spans=parser.spans,
        recorded=latest(parser.recorded) or f"{service_date}T00:00:00Z",
        references=_written_references(parser, provider, lookup),
        referring=_certifier(plans, lookup, rulebook),
        assistants=frozenset(
            p.id for iv in parser.interventions for p in iv.performers if p.assistant
        ),
        place_of_service="12" if "HH" in parser.encounter_classes else None,
        supervisors=_supervisors(parser.interventions, encounters),
        created=_created(evaluated_at, zone, latest(parser.recorded), service_date),
    )
    return ParsedDay(
        day=day, facts=facts, problems=tuple(parser.problems), not_therapy=tuple(parser.not_therapy)
    )


def _progress_reports(
    documents: Sequence[Resource],
    parser: _DayParser,
    rulebook: Rulebook,
    zone: tzinfo | None,
    service_date: str,
) -> tuple[ProgressReport, ...]:
    """The patient's progress reports up to the date of service: current, final (or amended)
    DocumentReferences of a type ``clocks.toml`` names, dated (``date``, else the context
    period's start); the discipline is the type's, else the author's; an author who is an
    assistant makes it not count."""
    types = rulebook.clocks.progress.types
    out: list[ProgressReport] = []
    for doc in documents:
        if doc.get("status") != "current" or doc.get("docStatus") in (
            "preliminary",
            "entered-in-error",
        ):
            continue  # fmt: skip
        kinds = coding_keys(as_dict(doc.get("type")), rulebook)
        kind = next((k for k in kinds if k in types), None)
        when = doc.get("date") or as_dict(as_dict(doc.get("context")).get("period")).get("start")
        dos = service_date_of({"performedDateTime": when}, zone) if isinstance(when, str) else None
        if kind is None or dos is None or dos > service_date:
            continue
        key = f"DocumentReference/{doc.get('id')}"
        authors = [ref for a in as_list(doc.get("author")) if (ref := reference_of(a))]
        who = parser.clinicians.resolve(authors[0], key)[0] if authors else None
        discipline = types[kind] or (
            who.discipline if who and who.discipline in (Discipline.PT, Discipline.OT,
                                                         Discipline.SLP) else None
        )  # fmt: skip
        out.append(ProgressReport(date=date.fromisoformat(dos), discipline=discipline,
                                  by_assistant=bool(who and who.assistant), ref=key))  # fmt: skip
    return tuple(sorted(out, key=lambda r: (r.date, r.ref)))


_DAYS = {"d": Decimal(1), "wk": Decimal(7), "mo": Decimal("30.4375"), "a": Decimal("365.25")}


def _plans(plans: Sequence[Resource], rulebook: Rulebook, lookup: Lookup) -> tuple[PlanOfCare, ...]:
    """The active plans covering the date, as the certification clock reads them: the
    discipline from a ``category`` coding ``clocks.toml`` names (else any), the period, when it
    was certified (convention ``author``: on ``created`` when an ``author`` is named;
    ``provenance``: the dates of the signatures of Provenances targeting it, the first the
    certification, the latest a recertification), a documented reason for a late one, and the
    date of a significant change."""
    rules = rulebook.clocks.certification
    out: list[PlanOfCare] = []
    for plan in plans:
        kinds = coding_keys(as_list(plan.get("category")), rulebook)
        discipline = next((rules.categories[k] for k in kinds if k in rules.categories), None)
        period = as_dict(plan.get("period"))
        key = f"CarePlan/{plan.get('id')}"
        signed = sorted(d for d, _ in _signatures(plan, key, lookup, rulebook))
        out.append(PlanOfCare(
            ref=key, discipline=discipline,
            start=_date_part(period.get("start")), end=_date_part(period.get("end")),
            certified_on=signed[0] if signed else None,
            recertifications=tuple(d for d in dict.fromkeys(signed[1:]) if d > signed[0]),
            delayed_reason=_extension_value(plan, codes.EXT_DELAYED_CERTIFICATION) is not None,
            changed_on=_date_part(_extension_value(plan, codes.EXT_SIGNIFICANT_CHANGE)),
        ))  # fmt: skip
    return tuple(out)


def _extension_value(resource: Resource, url: str) -> Any:
    """The (non-blank) value of the resource's extension ``url``, or None."""
    for e in as_list(resource.get("extension")):
        if isinstance(e, dict) and e.get("url") == url:
            for name in ("valueString", "valueDate", "valueDateTime"):
                value = e.get(name)
                if isinstance(value, str) and value.strip():
                    return value
    return None


def _signatures(
    plan: Resource, key: str, lookup: Lookup, rulebook: Rulebook
) -> list[tuple[date, str]]:
    """(date, signer key) of each certification of the plan by the site's convention."""
    convention = rulebook.clocks.certification.convention
    signer = reference_of(plan.get("author"))
    if convention == "author":
        created = _date_part(plan.get("created"))
        return [(created, lookup.key_of(signer))] if signer and created else []
    if convention != "provenance":
        return []
    out = []
    for prov in lookup.provenances_of(key):
        for sig in as_list(prov.get("signature")):
            who = reference_of(as_dict(sig).get("who"))
            when = _date_part(as_dict(sig).get("when"))
            who_key = lookup.key_of(who) if who else None
            if when and who_key and _physician(who_key, lookup, rulebook):
                out.append((when, who_key))
    return out


def _physician(key: str, lookup: Lookup, rulebook: Rulebook) -> bool:
    """Whether a signer can certify a plan of care: a Practitioner or PractitionerRole the
    input holds that is no therapist or assistant (a therapist's signature on their own plan
    is not the physician's/NPP's certification; one that cannot be read certifies nothing)."""
    resource = lookup.get(key)
    if resource is None or resource.get("resourceType") not in ("Practitioner", "PractitionerRole"):
        return False
    roles = [resource] if resource.get("resourceType") == "PractitionerRole" else [
        *lookup.roles_of(key),
        *({"code": [q.get("code")]} for q in as_list(resource.get("qualification"))
          if isinstance(q, dict)),
    ]  # fmt: skip
    return all(role_discipline(r, rulebook) is None for r in roles)


def _date_part(value: Any) -> date | None:
    """The date of a FHIR date or dateTime (as written), or None."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _certifier(plans: Sequence[Resource], lookup: Lookup, rulebook: Rulebook) -> str | None:
    """The physician or NPP who certified the plan of care (its author, or the latest signer
    under the ``provenance`` convention), a Practitioner or PractitionerRole key; the first
    plan's that names one."""
    convention = rulebook.clocks.certification.convention
    for plan in plans:
        if convention == "provenance":
            signed = sorted(_signatures(plan, f"CarePlan/{plan.get('id')}", lookup, rulebook))
            key = signed[-1][1] if signed else None
        else:
            ref = reference_of(plan.get("author"))
            key = lookup.key_of(ref) if ref else None
        if (
            key
            and key.startswith(("Practitioner/", "PractitionerRole/"))
            and split_key(key) is not None
        ):
            return key
    return None


def _visits_per_week(plans: Sequence[Resource]) -> Decimal | None:
    """The most treatment visits a week any activity of the plans schedules
    (``activity.detail.scheduledTiming.repeat``: ``frequency`` per ``period`` ``periodUnit``,
    e.g. 3 per 1 wk); None when none does."""
    found: list[Decimal] = []
    for plan in plans:
        for activity in as_list(plan.get("activity")):
            detail = as_dict(as_dict(activity).get("detail"))
            repeat = as_dict(as_dict(detail.get("scheduledTiming")).get("repeat"))
            frequency, period = repeat.get("frequency", 1), repeat.get("period")
            unit = _DAYS.get(str(repeat.get("periodUnit")))
            if (
                isinstance(frequency, int) and not isinstance(frequency, bool) and frequency > 0
                and isinstance(period, int | float) and not isinstance(period, bool) and period > 0
                and unit is not None
            ):  # fmt: skip
                found.append(Decimal(frequency) * 7 / (Decimal(str(period)) * unit))
    return max(found) if found else None


def _supervisors(
    interventions: Sequence[Intervention], encounters: Sequence[EncounterContext]
) -> dict[str, tuple[str, ...]]:
    """For each service only assistants furnished: the therapists of their discipline among
    its encounter's participants (who supervise it)."""
    by_id = {e.id: e for e in encounters}
    out: dict[str, tuple[str, ...]] = {}
    for iv in interventions:
        if not iv.performers or not all(p.assistant for p in iv.performers):
            continue
        enc = by_id.get(iv.encounter_id or "")
        kinds = {p.discipline for p in iv.performers}
        found = [
            p.id
            for p in (enc.participants if enc else ())
            if not p.assistant and p.discipline in kinds
        ]
        if found:
            out[iv.id] = tuple(dict.fromkeys(found))
    return out


def _body_sites(value: Any) -> tuple[str, ...]:
    """Every body site of a procedure (a manipulation lists each region), as its codings
    (``system|code``) and its texts, lowercased."""
    keys: list[str] = []
    for concept in concepts(value):
        keys += [
            f"{c['system']}|{c['code']}"
            for c in codings(concept)
            if isinstance(c.get("system"), str) and isinstance(c.get("code"), str)
        ]
        keys += [t.strip().lower() for t in texts(concept) if t.strip()]
    return tuple(dict.fromkeys(keys))


def _created(
    evaluated_at: datetime | None, zone: tzinfo | None, recorded: str | None, service_date: str
) -> str:
    """The date a Claim is created: the evaluation's (the shell's clock, in the site's zone),
    else (no clock given) the date of the day's latest input instant; never before the date of
    service."""
    if evaluated_at is not None:
        day = (evaluated_at.astimezone(zone) if zone else evaluated_at).date().isoformat()
    else:
        day = recorded[:10] if recorded else ""
    return max(day, service_date)


def _written_references(
    parser: _DayParser, provider: str | None, lookup: Lookup
) -> dict[str, Mapping[str, Any]]:
    """The logical References for the day's keys that cannot be written as they are."""
    keys = {p for ids in parser.performers.values() for p in ids}
    keys |= {*parser.encounter_keys, *([provider] if provider else [])}
    return {k: written_reference(k, lookup.get(k)) for k in sorted(keys) if not is_literal(k)}


@dataclass
class _DayParser:
    """One patient-day being read: the interventions and what the builder needs about them."""

    lookup: Lookup
    rulebook: Rulebook
    patient: str
    service_date: str
    zone: tzinfo | None
    problems: list[Problem] = field(default_factory=list)
    interventions: list[Intervention] = field(default_factory=list)
    performers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    iv_encounter: dict[str, str | None] = field(default_factory=dict)
    spans: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    actor_keys: dict[str, set[str]] = field(default_factory=dict)  # clinician id -> keys
    encounter_keys: list[str] = field(default_factory=list)
    diagnoses: list[Mapping[str, Any]] = field(default_factory=list)
    iv_dx: dict[str, list[int]] = field(default_factory=dict)
    enc_dx: dict[str, list[int]] = field(default_factory=dict)
    not_therapy: list[str] = field(default_factory=list)
    unresolved: list[tuple[str, Resource]] = field(default_factory=list)
    encounter_classes: set[str] = field(default_factory=set)
    recorded: list[str] = field(default_factory=list)
    clinicians: Clinicians = field(init=False)

    def __post_init__(self) -> None:
        self.clinicians = Clinicians(
            self.lookup, self.rulebook, self._problem, self.service_date, self.zone
        )

    def _problem(self, where: str, reason: str) -> None:
        self.problems.append(Problem(where, reason))

    def procedure(self, proc: Resource) -> None:
        """One completed Procedure: an intervention, or counted as not therapy."""
        key = f"Procedure/{proc['id']}" if isinstance(proc.get("id"), str) else proc.get("_key")
        if not isinstance(key, str):
            self._problem("Procedure", "procedure without an id or a fullUrl: skipped")
            return
        if isinstance(proc.get("code"), str):
            self._problem(key, "code is a bare string, not a CodeableConcept: not billed")
            self.not_therapy.append(key)
            return
        resolved = resolve_code(proc, self.rulebook)
        if resolved is None:
            self.unresolved.append((key, proc))  # judged once the day's encounters are known
            return
        if not is_therapy(resolved, self.rulebook):
            self.not_therapy.append(key)
            return
        self._intervention(proc, key, resolved)

    def unmapped(self) -> None:
        """Procedures whose code no mapping translates: therapy (by a therapist, or in an
        encounter of the day's therapy) becomes an intervention the rules hold with
        code-unmapped, never silence; anything else is not therapy."""
        therapy_encounters = set(self.encounter_keys)
        for key, proc in self.unresolved:
            enc_ref = reference_of(proc.get("encounter"))
            in_therapy = bool(enc_ref) and self.lookup.key_of(str(enc_ref)) in therapy_encounters
            if not in_therapy and not self._by_a_therapist(proc, key):
                self.not_therapy.append(key)
                continue
            code = documented_code(proc) or "(no code)"
            self._intervention(proc, key, ResolvedCode(code, CodeSource.UNMAPPED, None))

    def _by_a_therapist(self, proc: Resource, key: str) -> bool:
        for perf in as_list(proc.get("performer")):
            ref = reference_of(perf.get("actor")) if isinstance(perf, dict) else None
            if ref and self.clinicians.resolve(ref, key)[0].discipline is not None:
                return True
        return False

    def _intervention(self, proc: Resource, key: str, resolved: ResolvedCode) -> None:
        """The intervention of one procedure, with what the builder needs about it."""
        period = as_dict(proc.get("performedPeriod"))
        raw_start, raw_end = period.get("start"), period.get("end")
        start, start_err = parse_datetime(raw_start, self.zone)
        end, end_err = parse_datetime(raw_end, self.zone)
        people = self._performers(proc, key)
        enc_ref = reference_of(proc.get("encounter"))
        enc_key = self.lookup.key_of(enc_ref) if enc_ref else None
        if enc_key and enc_key not in self.encounter_keys:
            self.encounter_keys.append(enc_key)
        sites = _body_sites(proc.get("bodySite"))
        self.iv_dx[key] = [self._diagnosis(c) for c in icd_codings(proc, self.rulebook)]
        for ref in as_list(proc.get("reasonReference")):
            self.iv_dx[key] += self._conditions(reference_of(ref))
        self.interventions.append(
            Intervention(
                id=key,
                code=resolved.code,
                code_source=resolved.source,
                code_ref=resolved.rule_ref,
                start=start,
                end=end,
                minutes=self._documented_minutes(proc, key),
                performers=tuple(dict.fromkeys(people)),
                encounter_id=enc_key,
                group=_is_group(proc),
                diagnosis=has_diagnosis(proc, self.rulebook, "reasonCode", "reasonReference"),
                note=_note(proc),
                body_sites=sites,
                time_error=start_err or end_err,
            )
        )
        self.performers[key] = tuple(dict.fromkeys(p.id for p in people))
        self.iv_encounter[key] = enc_key
        self.spans[key] = (raw_start if start else None, raw_end if end else None)
        updated = meta_of(proc).get("lastUpdated")
        if isinstance(updated, str):
            self.recorded.append(updated)
        elif end is not None and isinstance(raw_end, str):
            self.recorded.append(raw_end)

    def _conditions(self, ref: str | None) -> list[int]:
        """The diagnoses a Condition reference stands for: the reference itself when it can be
        written (``Condition/id``); for a contained Condition, or one found by identifier, its
        ICD-10-CM codes (a ``#`` reference would dangle in the Claim)."""
        key = self.lookup.key_of(ref) if ref else None
        if key is None:
            return []
        parts = split_key(key)
        if parts is not None:
            return [self._diagnosis({"reference": key})] if parts[0] == "Condition" else []
        cond = self.lookup.get(key)
        if cond is None or cond.get("resourceType") != "Condition":
            return []
        coded = icd_codings({"reasonCode": [cond.get("code")]}, self.rulebook)
        return [self._diagnosis(c) for c in coded]

    def _diagnosis(self, entry: Mapping[str, Any]) -> int:
        """The index of a diagnosis in the day's list (added once)."""
        if entry not in self.diagnoses:
            self.diagnoses.append(entry)
        return self.diagnoses.index(entry)

    def _performers(self, proc: Resource, key: str) -> list[Clinician]:
        people: list[Clinician] = []
        for perf in as_list(proc.get("performer")):
            ref = reference_of(perf.get("actor")) if isinstance(perf, dict) else None
            if ref:
                clinician, aliases = self.clinicians.resolve(ref, key)
                people.append(clinician)
                self.actor_keys.setdefault(clinician.id, set()).update(aliases)
        return people

    def _documented_minutes(self, proc: Resource, key: str) -> int | None:
        """Minutes documented without a time span: the ``documented-minutes`` extension (a
        Duration in UCUM minutes). Anything else in that extension is an input problem."""
        for ext in as_list(proc.get("extension")):
            if not isinstance(ext, dict) or ext.get("url") != codes.EXT_DOCUMENTED_MINUTES:
                continue
            minutes = _minutes(ext.get("valueDuration", ext.get("valueQuantity")))
            if minutes is None:
                self._problem(
                    key, "documented-minutes is not a Duration of whole minutes (UCUM min)"
                )
            return minutes
        return None

    def encounters(self) -> tuple[list[EncounterContext], str | None]:
        """The day's encounters (in the order the procedures name them) and the first
        ``serviceProvider`` among them."""
        found: list[EncounterContext] = []
        provider: str | None = None
        for enc_key in self.encounter_keys:
            enc = self.lookup.get(enc_key)
            if enc is None:
                self._problem(enc_key, "encounter does not resolve")
                continue
            found.append(self._encounter(enc_key, enc))
            org = reference_of(enc.get("serviceProvider"))
            provider = provider or (self.lookup.key_of(org) if org else None)
        return found, provider

    def _encounter(self, enc_key: str, enc: Resource) -> EncounterContext:
        klass = as_dict(enc.get("class")).get("code")
        if isinstance(klass, str):
            self.encounter_classes.add(klass)
        period = as_dict(enc.get("period"))
        e_start, _ = parse_datetime(period.get("start"), self.zone)
        e_end, _ = parse_datetime(period.get("end"), self.zone)
        participants = []
        for part in as_list(enc.get("participant")):
            ref = reference_of(part.get("individual")) if isinstance(part, dict) else None
            if ref:
                participants.append(self.clinicians.resolve(ref, enc_key)[0])
        named = self.enc_dx.setdefault(enc_key, [])
        for dx in as_list(enc.get("diagnosis")):
            named += self._conditions(
                reference_of(dx.get("condition")) if isinstance(dx, dict) else None
            )
        named += [self._diagnosis(c) for c in icd_codings(enc, self.rulebook)]
        return EncounterContext(
            id=enc_key,
            start=e_start,
            end=e_end,
            diagnosis=has_diagnosis(
                enc, self.rulebook, "diagnosis", "reasonCode", "reasonReference"
            ),
            participants=tuple(participants),
        )

    def busy(self) -> tuple[BusyPeriod, ...]:
        """The same clinicians' completed, timed sessions with other patients on the day (the
        concurrent one-on-one care check)."""
        busy: list[BusyPeriod] = []
        for clinician_id, keys in sorted(self.actor_keys.items()):
            for other in self.lookup.sessions_of(sorted(keys), self.service_date, self.patient):
                other_code = resolve_code(other, self.rulebook)
                period = as_dict(other.get("performedPeriod"))
                o_start, _ = parse_datetime(period.get("start"), self.zone)
                o_end, _ = parse_datetime(period.get("end"), self.zone)
                if other_code and o_start and o_end and other.get("status") == "completed":
                    busy.append(
                        BusyPeriod(
                            clinician_id=clinician_id,
                            start=o_start,
                            end=o_end,
                            code=other_code.code,
                        )
                    )
        return tuple(sorted(set(busy), key=lambda b: (b.clinician_id, b.start, b.code)))


def _minutes(duration: Any) -> int | None:
    """A Duration/Quantity in UCUM minutes as whole non-negative minutes, or None."""
    if not isinstance(duration, dict):
        return None
    value = duration.get("value")
    unit_ok = duration.get("code") == "min" and duration.get("system", codes.UCUM) == codes.UCUM
    if isinstance(value, bool) or not isinstance(value, int | float) or not unit_ok:
        return None
    return int(value) if value >= 0 and float(value).is_integer() else None


def _note(procedure: Resource) -> str:
    return " ".join(
        n["text"].strip()
        for n in as_list(procedure.get("note"))
        if isinstance(n, dict) and isinstance(n.get("text"), str)
    )


def _is_group(procedure: Resource) -> bool:
    return any("group" in t.lower() for t in texts(procedure.get("category")))
