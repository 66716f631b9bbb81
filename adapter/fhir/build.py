"""Domain -> FHIR R4 JSON: the resources the adapter writes for one patient-day.

Every resource carries a deterministic business identifier and goes into the transaction as a
conditional create (``POST`` with ``ifNoneExist: identifier=system|value``; Provenance, which has
no identifier, by ``_tag``), so posting the same bundle twice changes nothing; ``write_mode``
"update" uses conditional updates (``PUT Type?identifier=...``) instead, for write-back that must
replace earlier content. Nothing here reads a clock: the same
decision always gives byte-identical JSON. Output conventions are documented in the README.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from adapter.domain import BILLING_FINDINGS, ChargeLine, Decision, Finding, PatientDay, Severity
from adapter.fhir import codes
from adapter.fhir.parse import DayFacts
from adapter.fhir.refs import bare_id, fhir_datetime, parse_datetime, token_query

Resource = dict[str, Any]
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, codes.BASE)


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildOptions:
    """Deployment choices for what is written."""

    agent: str = "therapy-charge-adapter"
    billing_recipient: str | None = None  # e.g. "Organization/billing-office"; None: not posted
    #: "create": conditional create (POST + ifNoneExist): posting the same bundle again is a no-op.
    #: "update": conditional update (PUT Type?identifier=...): later corrections replace content.
    write_mode: Literal["create", "update"] = "create"
    #: the billing provider on every Claim (e.g. "Organization/clinic"); None: the encounter's
    #: serviceProvider, else the treating therapist
    billing_provider: str | None = None
    #: the CMS place of service for Claim items when the encounter does not say (e.g. "11",
    #: office; "22", on-campus outpatient hospital); None: not written
    place_of_service: str | None = None
    #: the URL of the ChargeItem modifier extension (a target that expects its own)
    modifier_extension: str = codes.EXT_MODIFIER


def day_tag(day: PatientDay) -> Resource:
    """The tag on everything written for one patient-day (finds it again; marks our own writes)."""
    return {"system": codes.CS_PATIENT_DAY, "code": day.key}


def _entry(resource: Resource, system: str, value: str, mode: str, day: PatientDay) -> Resource:
    full_url = f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{system}|{value}')}"
    kind = resource["resourceType"]
    if kind != "Provenance":
        resource = {"resourceType": kind, "meta": {"tag": [day_tag(day)]}} | resource
    query = token_query("_tag" if kind == "Provenance" else "identifier", system, value)
    if mode == "update":
        request = {"method": "PUT", "url": f"{kind}?{query}"}
    else:
        request = {"method": "POST", "url": kind, "ifNoneExist": query}
    return {"fullUrl": full_url, "resource": resource, "request": request}


def _ref(key: str, facts: DayFacts | None = None) -> Resource:
    """A Reference to ``key``: literal, or (a contained resource of an input, one known only
    by identifier) the logical Reference the parser made for it."""
    written = facts.references.get(key) if facts is not None else None
    return dict(written) if written is not None else {"reference": key}


def _line_value(day_key: str, line: ChargeLine) -> str:
    assistant = "A" if {"CQ", "CO"} & set(line.modifiers) else "T"
    return f"{day_key}:{line.code}:{line.discipline.value}:{assistant}"


def _span(line: ChargeLine, facts: DayFacts) -> Resource:
    """The period the line's services cover (earliest start, latest end, by instant)."""
    starts = [s for i in line.intervention_ids if (s := facts.spans.get(i, (None, None))[0])]
    ends = [e for i in line.intervention_ids if (e := facts.spans.get(i, (None, None))[1])]
    if len(starts) == len(ends) == len(line.intervention_ids):
        start = min(starts, key=lambda v: parse_datetime(v)[0] or datetime.max.replace(tzinfo=UTC))
        end = max(ends, key=lambda v: parse_datetime(v)[0] or datetime.min.replace(tzinfo=UTC))
        return {"occurrencePeriod": {"start": fhir_datetime(start), "end": fhir_datetime(end)}}
    return {"occurrenceDateTime": facts.day.service_date.isoformat()}


def line_diagnoses(line: ChargeLine, facts: DayFacts) -> list[int]:
    """The diagnoses of a line, in order: its own procedures' reasons first, then their
    encounters' (indices into the day's list, each once)."""
    own = [i for iv in line.intervention_ids for i in facts.intervention_diagnoses.get(iv, ())]
    encounters = [facts.intervention_encounter.get(iv) for iv in line.intervention_ids]
    theirs = [i for e in encounters if e for i in facts.encounter_diagnoses.get(e, ())]
    return list(dict.fromkeys([*own, *theirs]))


def _pointers(line: ChargeLine, facts: DayFacts) -> list[int]:
    """A Claim item's diagnosis pointers: the line's diagnoses, at most four (an 837P line)."""
    return line_diagnoses(line, facts)[:4]


def _line_icd(line: ChargeLine, facts: DayFacts) -> list[dict[str, Any]]:
    """The ICD-10-CM codings among a line's diagnoses, for ChargeItem.reason."""
    return [
        dict(facts.diagnoses[i])
        for i in line_diagnoses(line, facts)
        if "system" in facts.diagnoses[i]
    ]


def _performers(ids: Sequence[str], facts: DayFacts) -> list[str]:
    return list(dict.fromkeys(p for i in ids for p in facts.performers.get(i, ())))


def _encounter_of(ids: Sequence[str], facts: DayFacts) -> str | None:
    return next((e for i in ids if (e := facts.intervention_encounter.get(i))), None)


def build_day(decision: Decision, facts: DayFacts, options: BuildOptions) -> list[Resource]:
    """The transaction entries for one patient-day, in a fixed order."""
    day = facts.day
    version_ext = {"url": codes.EXT_RULEBOOK, "valueString": decision.rulebook_version}
    entries: list[Resource] = []
    charge_urls: list[str] = []

    for line in decision.lines:
        value = _line_value(day.key, line)
        performers = _performers(line.intervention_ids, facts)
        encounter = _encounter_of(line.intervention_ids, facts)
        item: Resource = {
            "resourceType": "ChargeItem",
            "extension": [
                *(
                    {
                        "url": options.modifier_extension,
                        "valueCoding": {"system": codes.modifier_system(m), "code": m},
                    }
                    for m in line.modifiers
                ),
                version_ext,
                {"url": codes.EXT_METHOD, "valueCode": line.method},
                {"url": codes.EXT_MINUTES, "valueInteger": line.minutes},
                *({"url": codes.EXT_RULE_REF, "valueString": r} for r in line.rule_refs),
                *_allowed_ext(line),
            ],
            "identifier": [{"system": codes.ID_CHARGE_ITEM, "value": value}],
            "status": "billable",
            "code": {"coding": [{"system": codes.code_system(line.code), "code": line.code}]},
            "subject": _ref(facts.day.patient),
            **({"context": _ref(encounter, facts)} if encounter else {}),
            **_span(line, facts),
            **(
                {"performer": [{"actor": _ref(p, facts)} for p in performers]} if performers else {}
            ),
            "quantity": {"value": line.units},
            # R4: "total price of the charge overriding the list price" (units x unit price)
            **({"priceOverride": money(line.price.net)} if line.price.net is not None else {}),
            **(
                {"reason": [{"coding": [c]} for c in icd]}
                if (icd := _line_icd(line, facts))
                else {}
            ),
            "service": [_ref(i) for i in line.intervention_ids],
            "note": [{"text": "; ".join(line.reasons)}],
        }
        entry = _entry(item, codes.ID_CHARGE_ITEM, value, options.write_mode, day)
        charge_urls.append(entry["fullUrl"])
        entries.append(entry)

    if decision.lines:
        entries.append(_claim(decision, facts, charge_urls, version_ext, options=options))

    entries += _communications(decision, facts, options)

    targets = [e["fullUrl"] for e in entries]
    if targets:
        entries.append(_provenance(decision, facts, targets, options))
    return entries


def _claim(
    decision: Decision,
    facts: DayFacts,
    charge_urls: Sequence[str],
    version_ext: Resource,
    *,
    options: BuildOptions,
) -> Resource:
    """The day's draft professional Claim: one item per line, pointing at its ChargeItem."""
    performed = [p for ln in decision.lines for p in _performers(ln.intervention_ids, facts)]
    supervising = [p for ln in decision.lines for p in _supervisors(ln, facts)]
    team = list(dict.fromkeys([*performed, *supervising]))
    diagnoses: list[Resource] = []
    for n, d in enumerate(facts.diagnoses, start=1):
        kind = {"type": [_concept(codes.DIAGNOSIS_TYPE, "principal" if n == 1 else "clinical")]}
        if "system" in d:
            diagnoses.append({"sequence": n, "diagnosisCodeableConcept": {"coding": [dict(d)]},
                              **kind})  # fmt: skip
        else:
            diagnoses.append({"sequence": n, "diagnosisReference": _ref(str(d["reference"])),
                              **kind})  # fmt: skip
    place = facts.place_of_service or options.place_of_service
    items = [
        _claim_item(
            n,
            line,
            url,
            facts,
            team=team,
            diagnosis_sequence=[i + 1 for i in _pointers(line, facts)],
            place=place,
        )
        for n, (line, url) in enumerate(zip(decision.lines, charge_urls, strict=True), start=1)
    ]
    coverage = (
        _ref(facts.coverage)
        if facts.coverage
        else {"display": f"no active coverage found; billed under profile {decision.payer}"}
    )
    claim: Resource = {
        "resourceType": "Claim",
        "extension": [version_ext],
        "identifier": [{"system": codes.ID_CLAIM, "value": facts.day.key}],
        "status": "draft",
        "type": {"coding": [{"system": codes.CLAIM_TYPE, "code": "professional"}]},
        "use": "claim",
        "patient": _ref(facts.day.patient),
        "created": facts.created or facts.day.service_date.isoformat(),
        "provider": _provider(facts, options),
        "priority": {"coding": [{"system": codes.PROCESS_PRIORITY, "code": "normal"}]},
        **(
            {
                "careTeam": [
                    {
                        "sequence": n,
                        "provider": _ref(p, facts),
                        "role": _concept(codes.CARE_TEAM_ROLE, _role(p, performed, facts)),
                    }
                    for n, p in enumerate(team, 1)
                ]
                + _referring(facts, len(team))
            }
            if team
            else {}
        ),
        **({"diagnosis": diagnoses} if diagnoses else {}),
        "insurance": [
            {
                "sequence": 1,
                "focal": True,
                "coverage": coverage,
                # the payer's authorization numbers the lines are under (837P loop 2300 REF*G1)
                **(
                    {"preAuthRef": refs}
                    if (
                        refs := sorted(
                            {ln.authorization for ln in decision.lines if ln.authorization}
                        )
                    )
                    else {}
                ),
            }
        ],
        "item": items,
        # the day's charges, when every line is priced (an unpriced line has an error finding)
        **({"total": money(total)} if (total := decision.total) is not None else {}),
    }
    return _entry(claim, codes.ID_CLAIM, facts.day.key, options.write_mode, facts.day)


def _referring(facts: DayFacts, after: int) -> list[Resource]:
    """The certifying physician of the plan of care as the referring provider (CARIN's
    ``referring`` role; R4's own role codes have none)."""
    if not facts.referring:
        return []
    return [
        {
            "sequence": after + 1,
            "provider": _ref(facts.referring, facts),
            "role": _concept(codes.CARE_TEAM_ROLE_C4BB, "referring"),
        }
    ]


def _supervisors(line: ChargeLine, facts: DayFacts) -> list[str]:
    """The therapists supervising a line an assistant furnished alone."""
    return list(
        dict.fromkeys(p for i in line.intervention_ids for p in facts.supervisors.get(i, ()))
    )


def _role(member: str, performed: Sequence[str], facts: DayFacts) -> str:
    """A care team member's role: ``primary`` for a therapist who furnished a line,
    ``assist`` for an assistant, ``supervisor`` for a therapist who only supervised."""
    if member in facts.assistants:
        return "assist"
    return "primary" if member in performed else "supervisor"


def _concept(system: str, code: str) -> Resource:
    return {"coding": [{"system": system, "code": code}]}


def _provider(facts: DayFacts, options: BuildOptions) -> Resource:
    """The billing provider: the site's, else the encounter's serviceProvider, else the
    treating therapist."""
    if options.billing_provider:
        return _ref(options.billing_provider)
    return _ref(facts.provider, facts) if facts.provider else {"display": "unknown provider"}


def _claim_item(
    n: int,
    line: ChargeLine,
    url: str,
    facts: DayFacts,
    *,
    team: list[str],
    diagnosis_sequence: list[int],
    place: str | None,
) -> Resource:
    """Claim item ``n`` for one line (at most four diagnosis pointers, as an 837P line)."""
    people = list(dict.fromkeys([*_performers(line.intervention_ids, facts),
                                 *_supervisors(line, facts)]))  # fmt: skip
    encounter = _encounter_of(line.intervention_ids, facts)
    modifiers = [
        {"coding": [{"system": codes.modifier_system(m), "code": m}]} for m in line.modifiers
    ]
    price = line.price
    return {
        "extension": [
            {"url": codes.EXT_CHARGE_ITEM, "valueReference": {"reference": url}},
            *_allowed_ext(line),
        ],
        "sequence": n,
        **({"careTeamSequence": [team.index(p) + 1 for p in people]} if people else {}),
        **({"diagnosisSequence": diagnosis_sequence} if diagnosis_sequence else {}),
        "productOrService": {
            "coding": [{"system": codes.code_system(line.code), "code": line.code}]
        },
        **({"modifier": modifiers} if modifiers else {}),
        "servicedDate": facts.day.service_date.isoformat(),
        **({"locationCodeableConcept": _concept(codes.PLACE_OF_SERVICE, place)} if place else {}),
        "quantity": {"value": line.units},
        **({"unitPrice": money(price.unit_price)} if price.unit_price is not None else {}),
        **({"net": money(price.net)} if price.net is not None else {}),
        **({"encounter": [_ref(encounter, facts)]} if encounter else {}),
    }


def money(amount: Decimal) -> Resource:
    """A FHIR Money in US dollars (a whole amount as an integer, else two decimals)."""
    value: int | float = int(amount) if amount == amount.to_integral() else float(amount)
    return {"value": value, "currency": "USD"}


def _allowed_ext(line: ChargeLine) -> list[Resource]:
    """The expected allowed amount, when known."""
    if line.price.allowed is None:
        return []
    return [{"url": codes.EXT_ALLOWED, "valueMoney": money(line.price.allowed)}]


def _sentence(f: Finding) -> str:
    what = "Blocks billing" if f.severity is Severity.ERROR else "Please review"
    about = f" ({', '.join(f.intervention_ids)})" if f.intervention_ids else ""
    return f"{what}{about}: {f.message}."


def _communications(decision: Decision, facts: DayFacts, options: BuildOptions) -> list[Resource]:
    groups: dict[tuple[str, ...], tuple[list[Finding], tuple[str, ...]]] = {}
    for f in decision.findings:
        if f.severity is Severity.INFO:
            continue
        if f.code in BILLING_FINDINGS:  # for the billing office; unaddressed when none is set
            key: tuple[str, ...] = ("billing",)
            recipients: tuple[str, ...] = (
                (options.billing_recipient,) if options.billing_recipient else ()
            )
        else:
            recipients = tuple(sorted(_performers(f.intervention_ids, facts)))
            key = recipients
        groups.setdefault(key, ([], recipients))[0].append(f)
    out = []
    for key, (findings, recipients) in sorted(groups.items()):
        value = f"{facts.day.key}:{'+'.join(bare_id(r) for r in key) or 'unassigned'}"
        about_ids = list(dict.fromkeys(i for f in findings for i in f.intervention_ids))
        encounters = list(
            dict.fromkeys(e for i in about_ids if (e := facts.intervention_encounter.get(i)))
        )
        codes_seen = list(dict.fromkeys(f.code for f in findings))
        errors = sum(f.severity is Severity.ERROR for f in findings)
        opening = (
            f"Therapy charge review for {facts.day.service_date}: {len(findings)} item(s) to fix"
            + (f", {errors} blocking billing" if errors else "")
            + "."
        )
        resource: Resource = {
            "resourceType": "Communication",
            "identifier": [{"system": codes.ID_COMMUNICATION, "value": value}],
            "status": "completed",
            "category": [{"coding": [{"system": codes.COMMUNICATION_CATEGORY, "code": "alert"}]}],
            "priority": "urgent" if errors else "routine",
            "subject": _ref(facts.day.patient),
            **(
                {"about": [_ref(r, facts) for r in [*about_ids, *encounters]]}
                if about_ids or encounters
                else {}
            ),
            **({"recipient": [_ref(r, facts) for r in recipients]} if recipients else {}),
            "reasonCode": [
                {"coding": [{"system": codes.CS_FINDING, "code": c.value}]} for c in codes_seen
            ],
            "payload": [{"contentString": opening}]
            + [{"contentString": _sentence(f)} for f in findings],
        }
        out.append(_entry(resource, codes.ID_COMMUNICATION, value, options.write_mode, facts.day))
    return out


def _provenance(
    decision: Decision,
    facts: DayFacts,
    targets: Sequence[str],
    options: BuildOptions,
) -> Resource:
    sources = list(dict.fromkeys(i for ln in decision.lines for i in ln.intervention_ids))
    sources += [m for m in dict.fromkeys(i for m in decision.minutes for i in m.intervention_ids)
                if m not in sources]  # fmt: skip
    sources += [i for f in decision.findings for i in f.intervention_ids if i not in sources]
    div = (
        '<div xmlns="http://www.w3.org/1999/xhtml"><pre>'
        + html.escape(decision.explain(), quote=False)
        + "</pre></div>"
    )
    resource: Resource = {
        "resourceType": "Provenance",
        "meta": {"tag": [day_tag(facts.day)]},
        "text": {"status": "generated", "div": div},
        "target": [{"reference": t} for t in targets],
        "recorded": facts.recorded,
        "policy": [f"urn:therapy-charge-adapter:rulebook:{decision.rulebook_version}"],
        "activity": {"coding": [{"system": codes.DATA_OPERATION, "code": "CREATE"}]},
        "agent": [
            {
                "type": {"coding": [{"system": codes.PROVENANCE_AGENT_TYPE, "code": "assembler"}]},
                # the adapter itself, a Device known by identifier
                "who": {
                    "type": "Device",
                    "identifier": {"system": codes.ID_DEVICE, "value": "therapy-charge-adapter"},
                    "display": options.agent,
                },
            }
        ],
        "entity": [
            *({"role": "source", "what": _ref(i)} for i in dict.fromkeys(sources)),
            {
                # the rules every number was computed by
                "role": "derivation",
                "what": {
                    "identifier": {"system": codes.ID_RULEBOOK, "value": decision.rulebook_version},
                    "display": f"rulebook {decision.rulebook_version}",
                },
            },
        ],
    }
    return _entry(resource, codes.CS_PATIENT_DAY, facts.day.key, options.write_mode, facts.day)


def transaction(entries: Sequence[Mapping[str, Any]]) -> Resource:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}
