"""FHIR R4 JSON -> domain: one patient-day's Procedures (plus context) into a ``ServiceDay``.

Works on plain JSON dicts, resolving references through a ``Lookup`` (the replay spool, or a live
FHIR server's search results). Problems in clinical data become domain values the rules core
judges (a missing time is ``start=None``, an unparseable one is ``time_error``); problems that
stop a resource from being placed at all (no subject, no date) are returned as ``Problem``s.
The input conventions are documented in the README ("Input conventions").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from adapter.domain import (
    BusyPeriod,
    Clinician,
    CodeSource,
    CoverageStatus,
    Discipline,
    EncounterContext,
    Intervention,
    KxSpend,
    PatientDay,
    Rulebook,
    ServiceDay,
)
from adapter.fhir import codes
from adapter.fhir.refs import DATE, DATETIME, parse_datetime, reference_of

Resource = dict[str, Any]


class Lookup(Protocol):
    """Where the parser finds referenced resources. Keys are ``Type/id`` (or a ``urn:uuid``)."""

    def get(self, ref: str) -> Resource | None: ...

    def key_of(self, ref: str) -> str: ...

    def roles_of(self, practitioner_key: str) -> Sequence[Resource]: ...

    def coverages_of(self, patient_key: str) -> Sequence[Resource]: ...

    def care_plans_of(self, patient_key: str) -> Sequence[Resource]: ...

    def sessions_of(
        self, actor_keys: Iterable[str], service_date: str, exclude_patient: str
    ) -> Sequence[Resource]: ...


@dataclass(frozen=True, slots=True)
class Problem:
    """An input problem outside the rules: a resource that cannot be placed or resolved."""

    where: str
    reason: str


def _dict(value: Any) -> Resource:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def service_date_of(procedure: Resource, zone: tzinfo | None = None) -> str | None:
    """The date of service: the date of the procedure's start in the site's time ``zone`` when
    one is set (right for EMRs that send UTC instants), else in the start's own offset. A bare
    date is taken as it is."""
    period = procedure.get("performedPeriod")
    start = period.get("start") if isinstance(period, dict) else None
    for value in (start, procedure.get("performedDateTime")):
        if isinstance(value, str) and DATE.match(value):
            if zone is not None and DATETIME.match(value):
                moment, _ = parse_datetime(value, zone)
                return moment.date().isoformat() if moment is not None else None
            try:
                return date.fromisoformat(value[:10]).isoformat()
            except ValueError:
                return None
    return None


def _codings(concept: Any) -> list[Resource]:
    if not isinstance(concept, dict):
        return []
    return [c for c in _list(concept.get("coding")) if isinstance(c, dict)]


def _concepts(value: Any) -> list[Resource]:
    return [c for c in _list(value) if isinstance(c, dict)]


def _texts(concept: Any) -> list[str]:
    if not isinstance(concept, dict):
        return []
    out = [concept["text"]] if isinstance(concept.get("text"), str) else []
    out += [c["display"] for c in _codings(concept) if isinstance(c.get("display"), str)]
    return out


@dataclass(frozen=True, slots=True)
class ResolvedCode:
    code: str
    source: CodeSource
    rule_ref: str | None


def resolve_code(procedure: Resource, rulebook: Rulebook) -> ResolvedCode | None:
    """CPT/HCPCS coding first, then a ConceptMap translation, then a text match (suggestion)."""
    concept = procedure.get("code")
    codings = _codings(concept)
    for c in codings:
        if c.get("system") in (codes.CPT, codes.HCPCS) and isinstance(c.get("code"), str):
            return ResolvedCode(
                code=c["code"].strip().upper(), source=CodeSource.CPT, rule_ref=None
            )
    for c in codings:
        target = rulebook.intake.concept_map.get((str(c.get("system")), str(c.get("code"))))
        if target is not None:
            return ResolvedCode(
                code=target.code, source=CodeSource.CONCEPT_MAP, rule_ref=target.source.ref
            )
    texts = [t.lower() for t in _texts(concept)]
    for match in sorted(rulebook.text_matches, key=lambda m: (-len(m.phrase), m.phrase)):
        if any(match.phrase in t for t in texts):
            return ResolvedCode(code=match.code, source=CodeSource.TEXT, rule_ref=match.source.ref)
    return None


def is_therapy(code: ResolvedCode | None, rulebook: Rulebook) -> bool:
    return code is not None and (code.code in rulebook.codes or rulebook.intake.in_scope(code.code))


def _role_discipline(role: Resource, rulebook: Rulebook) -> tuple[Discipline, bool] | None:
    for concept in _concepts(role.get("code")) + _concepts(role.get("specialty")):
        for c in _codings(concept):
            entry = rulebook.intake.roles.get((str(c.get("system")), str(c.get("code"))))
            if entry is not None:
                return entry.discipline, entry.assistant
    return None


@dataclass
class _Clinicians:
    """Resolves performer/participant references to clinicians, caching per patient-day."""

    lookup: Lookup
    rulebook: Rulebook
    problems: list[Problem]
    service_date: str
    zone: tzinfo | None = None
    cache: dict[str, tuple[Clinician, frozenset[str]]] = field(default_factory=dict)

    def resolve(self, ref: str, where: str) -> tuple[Clinician, frozenset[str]]:
        """The clinician and every reference key that denotes them (role and practitioner)."""
        key = self.lookup.key_of(ref)
        if key in self.cache:
            return self.cache[key]
        resource = self.lookup.get(key)
        aliases = {key}
        discipline: tuple[Discipline, bool] | None = None
        ident = key
        if resource is None:
            self.problems.append(Problem(where, f"reference {key} does not resolve"))
        elif resource.get("resourceType") == "PractitionerRole":
            discipline = _role_discipline(resource, self.rulebook)
            practitioner = reference_of(resource.get("practitioner"))
            if practitioner:
                ident = self.lookup.key_of(practitioner)
                aliases.add(ident)
        elif resource.get("resourceType") == "Practitioner":
            roles = [
                r
                for r in self.lookup.roles_of(key)
                if _role_in_effect(r, self.service_date, self.zone)
            ]
            found = {
                d for role in roles if (d := _role_discipline(role, self.rulebook)) is not None
            }
            aliases |= {f"PractitionerRole/{r.get('id')}" for r in roles}
            if not found:
                quals = [
                    {"code": [q.get("code")]}
                    for q in _list(resource.get("qualification"))
                    if isinstance(q, dict)
                ]
                found = {d for q in quals if (d := _role_discipline(q, self.rulebook)) is not None}
            if len(found) == 1:
                discipline = found.pop()
            elif len(found) > 1:
                self.problems.append(
                    Problem(where, f"{key} has roles in several disciplines; name the role")
                )
        clinician = Clinician(
            id=ident,
            discipline=discipline[0] if discipline else None,
            assistant=discipline[1] if discipline else False,
        )
        self.cache[key] = (clinician, frozenset(aliases))
        return self.cache[key]


def _role_in_effect(role: Resource, service_date: str, zone: tzinfo | None) -> bool:
    return role.get("active") is not False and _in_period(role.get("period"), service_date, zone)


def _has_diagnosis(resource: Resource, *fields: str) -> bool:
    for name in fields:
        value = resource.get(name)
        if name == "reasonCode":
            if any(
                c.get("system") == codes.ICD10CM for rc in _concepts(value) for c in _codings(rc)
            ):
                return True
        elif isinstance(value, list) and value:
            return True
    return False


def icd_codings(resource: Resource) -> list[Resource]:
    """ICD-10-CM codings on a resource's reasonCode."""
    return [
        {
            "system": codes.ICD10CM,
            "code": c["code"],
            **({"display": c["display"]} if "display" in c else {}),
        }
        for rc in _concepts(resource.get("reasonCode"))
        for c in _codings(rc)
        if c.get("system") == codes.ICD10CM and isinstance(c.get("code"), str)
    ]


def _note(procedure: Resource) -> str:
    return " ".join(
        n["text"].strip()
        for n in _list(procedure.get("note"))
        if isinstance(n, dict) and isinstance(n.get("text"), str)
    )


def _is_group(procedure: Resource) -> bool:
    return any("group" in t.lower() for t in _texts(procedure.get("category")))


def _money(value: Any) -> Decimal | None:
    amount = value.get("value") if isinstance(value, dict) else None
    if isinstance(amount, bool) or not isinstance(amount, int | float | str):
        return None
    try:
        money = Decimal(str(amount))
    except (InvalidOperation, ValueError):
        return None
    return money if money.is_finite() and money >= 0 else None


def _bound_date(value: Any, zone: tzinfo | None) -> str | None:
    """A period bound's date: in the site's ``zone`` when it has a time and one is set (as
    dates of service are), else as written."""
    if not isinstance(value, str):
        return None
    if zone is not None and DATETIME.match(value):
        moment, _ = parse_datetime(value, zone)
        if moment is not None:
            return moment.date().isoformat()
    return value[:10]


def _in_period(period: Any, service_date: str, zone: tzinfo | None = None) -> bool:
    if not isinstance(period, dict):
        return True
    start, end = _bound_date(period.get("start"), zone), _bound_date(period.get("end"), zone)
    if start is not None and start > service_date:
        return False
    return not (end is not None and end < service_date)


@dataclass(frozen=True, slots=True)
class DayFacts:
    """What the builder needs beyond the decision: references for the written resources."""

    day: PatientDay
    coverage: str | None
    provider: str | None
    encounters: tuple[str, ...]
    diagnoses: tuple[Mapping[str, Any], ...]
    performers: Mapping[str, tuple[str, ...]]  # intervention id -> clinician ids
    intervention_encounter: Mapping[str, str | None]
    spans: Mapping[str, tuple[str | None, str | None]]  # intervention id -> raw start/end
    recorded: str  # deterministic 'recorded' instant for Provenance


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
    problems: list[Problem] = []
    clinicians = _Clinicians(lookup, rulebook, problems, service_date, zone)
    interventions: list[Intervention] = []
    performers: dict[str, tuple[str, ...]] = {}
    iv_encounter: dict[str, str | None] = {}
    spans: dict[str, tuple[str | None, str | None]] = {}
    actor_keys: dict[str, set[str]] = {}  # clinician id -> reference keys
    encounter_keys: list[str] = []
    diagnoses: list[Mapping[str, Any]] = []
    not_therapy: list[str] = []
    recorded: list[str] = []
    for proc in procedures:
        key = f"Procedure/{proc['id']}" if isinstance(proc.get("id"), str) else proc.get("_key")
        if not isinstance(key, str):
            problems.append(Problem("Procedure", "procedure without an id or a fullUrl: skipped"))
            continue
        resolved = resolve_code(proc, rulebook)
        if not is_therapy(resolved, rulebook):
            not_therapy.append(key)
            continue
        assert resolved is not None
        period = _dict(proc.get("performedPeriod"))
        raw_start, raw_end = period.get("start"), period.get("end")
        start, start_err = parse_datetime(raw_start, zone)
        end, end_err = parse_datetime(raw_end, zone)
        people: list[Clinician] = []
        for perf in _list(proc.get("performer")):
            ref = reference_of(perf.get("actor")) if isinstance(perf, dict) else None
            if ref:
                clinician, aliases = clinicians.resolve(ref, key)
                people.append(clinician)
                actor_keys.setdefault(clinician.id, set()).update(aliases)
        enc_ref = reference_of(proc.get("encounter"))
        enc_key = lookup.key_of(enc_ref) if enc_ref else None
        if enc_key and enc_key not in encounter_keys:
            encounter_keys.append(enc_key)
        site = next(iter(_texts(next(iter(_concepts(proc.get("bodySite"))), None))), None)
        has_dx = _has_diagnosis(proc, "reasonCode", "reasonReference")
        diagnoses += [c for c in icd_codings(proc) if c not in diagnoses]
        interventions.append(
            Intervention(
                id=key,
                code=resolved.code,
                code_source=resolved.source,
                start=start,
                end=end,
                minutes=None,
                performers=tuple(dict.fromkeys(people)),
                encounter_id=enc_key,
                group=_is_group(proc),
                diagnosis=has_dx,
                note=_note(proc),
                body_site=site.lower() if site else None,
                time_error=start_err or end_err,
            )
        )
        performers[key] = tuple(dict.fromkeys(p.id for p in people))
        iv_encounter[key] = enc_key
        spans[key] = (raw_start if start else None, raw_end if end else None)
        meta = proc.get("meta")
        if isinstance(meta, dict) and isinstance(meta.get("lastUpdated"), str):
            recorded.append(meta["lastUpdated"])
        elif end is not None and isinstance(raw_end, str):
            recorded.append(raw_end)

    encounters: list[EncounterContext] = []
    provider: str | None = None
    for enc_key in encounter_keys:
        enc = lookup.get(enc_key)
        if enc is None:
            problems.append(Problem(enc_key, "encounter does not resolve"))
            continue
        period = _dict(enc.get("period"))
        e_start, _ = parse_datetime(period.get("start"), zone)
        e_end, _ = parse_datetime(period.get("end"), zone)
        participants = []
        for part in _list(enc.get("participant")):
            ref = reference_of(part.get("individual")) if isinstance(part, dict) else None
            if ref:
                participants.append(clinicians.resolve(ref, enc_key)[0])
        for dx in _list(enc.get("diagnosis")):
            cond = reference_of(dx.get("condition")) if isinstance(dx, dict) else None
            if cond and {"reference": cond} not in diagnoses:
                diagnoses.append({"reference": lookup.key_of(cond)})
        diagnoses += [c for c in icd_codings(enc) if c not in diagnoses]
        org = reference_of(enc.get("serviceProvider"))
        provider = provider or (lookup.key_of(org) if org else None)
        encounters.append(
            EncounterContext(
                id=enc_key,
                start=e_start,
                end=e_end,
                diagnosis=_has_diagnosis(enc, "diagnosis", "reasonCode", "reasonReference"),
                participants=tuple(participants),
            )
        )

    # coverage -> payer profile; year-to-date therapy spend for KX
    coverage = _active_coverage(lookup.coverages_of(patient), service_date, zone)
    coverage_key = f"Coverage/{coverage['id']}" if coverage and coverage.get("id") else None
    if payer_override:
        payer = payer_override
    elif coverage is not None:
        coding = next(
            (c for c in _codings(coverage.get("type")) if c.get("system") == codes.SOPT),
            None,
        )
        payer, _ = rulebook.intake.payer_for(
            coding.get("system") if coding else None, coding.get("code") if coding else None
        )
    else:
        payer = default_payer
    coverage_status = CoverageStatus.KNOWN
    if payer_override is None and coverage is None:
        coverage_status = CoverageStatus.MISSING
    elif (
        payer_override is None
        and coverage is not None
        and not any(
            c.get("system") == codes.SOPT and isinstance(c.get("code"), str)
            for c in _codings(coverage.get("type"))
        )
    ):
        payer, coverage_status = default_payer, CoverageStatus.UNTYPED
    kx = KxSpend()
    if coverage is not None:
        ext = {
            e["url"]: _money(e.get("valueMoney"))
            for e in _list(coverage.get("extension"))
            if isinstance(e, dict) and isinstance(e.get("url"), str)
        }
        kx = KxSpend(pt_slp=ext.get(codes.EXT_YTD_PT_SLP), ot=ext.get(codes.EXT_YTD_OT))

    plans = [
        cp
        for cp in lookup.care_plans_of(patient)
        if cp.get("status") == "active" and _in_period(cp.get("period"), service_date, zone)
    ]

    # the same clinicians with other patients on the day (concurrent one-on-one care)
    busy: list[BusyPeriod] = []
    for clinician_id, keys in sorted(actor_keys.items()):
        for other in lookup.sessions_of(sorted(keys), service_date, patient):
            other_code = resolve_code(other, rulebook)
            period = _dict(other.get("performedPeriod"))
            o_start, _ = parse_datetime(period.get("start"), zone)
            o_end, _ = parse_datetime(period.get("end"), zone)
            if other_code and o_start and o_end and other.get("status") == "completed":
                busy.append(
                    BusyPeriod(
                        clinician_id=clinician_id, start=o_start, end=o_end, code=other_code.code
                    )
                )

    if provider is None:
        therapists = [p for iv in interventions for p in iv.performers if not p.assistant]
        provider = therapists[0].id if therapists else None

    day = ServiceDay(
        patient_id=patient,
        service_date=date.fromisoformat(service_date),
        payer=payer,
        interventions=tuple(interventions),
        encounters=tuple(encounters),
        plan_of_care=bool(plans),
        kx_spend=kx,
        other_patient_sessions=tuple(
            sorted(set(busy), key=lambda b: (b.clinician_id, b.start, b.code))
        ),
        evaluated_at=evaluated_at,
        coverage=coverage_status,
    )
    facts = DayFacts(
        day=PatientDay.of(patient, service_date),
        coverage=coverage_key,
        provider=provider,
        encounters=tuple(encounter_keys),
        diagnoses=tuple(diagnoses),
        performers=performers,
        intervention_encounter=iv_encounter,
        spans=spans,
        recorded=max(recorded) if recorded else f"{service_date}T00:00:00Z",
    )
    return ParsedDay(day=day, facts=facts, problems=tuple(problems), not_therapy=tuple(not_therapy))


def _active_coverage(
    coverages: Sequence[Resource], service_date: str, zone: tzinfo | None
) -> Resource | None:
    active = [
        c
        for c in coverages
        if c.get("status") == "active" and _in_period(c.get("period"), service_date, zone)
    ]

    def order(c: Resource) -> tuple[int, str]:
        o = c.get("order")
        return (o if isinstance(o, int) else 99, str(c.get("id")))

    return min(active, key=order) if active else None
