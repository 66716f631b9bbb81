"""Who a day's charges are about and by, as the billing formats name them (HL7 v2 PID/PV1/FT1,
X12 837P loops 2010BA/2010BB/2310): the patient's identifiers and demographics, the coverage's
subscriber id and payer, each clinician's NPI and name. Read from the day's context (the same
``Lookup`` the parser used); plain values, so the outbound builders need no FHIR."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from adapter.fhir.refs import Resource, as_dict, as_list, reference_of

NPI = "http://hl7.org/fhir/sid/us-npi"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"


@dataclass(frozen=True, slots=True)
class Person:
    """A person as a billing message names one (empty: not documented)."""

    key: str  # Patient/…, Practitioner/…, PractitionerRole/…
    family: str = ""
    given: str = ""
    npi: str = ""


@dataclass(frozen=True, slots=True)
class Parties:
    """The day's people and payer for the billing formats."""

    patient: Person
    mrn: str  # the patient's first identifier value, else its id
    birth_date: str = ""  # YYYY-MM-DD
    gender: str = ""  # FHIR administrative gender
    address: tuple[str, str, str, str] = ("", "", "", "")  # line, city, state, postal code
    subscriber_id: str = ""
    relationship: str = "self"  # Coverage.relationship
    payer_name: str = ""
    payer_id: str = ""
    clinicians: Mapping[str, Person] = field(default_factory=dict)
    #: the ICD-10-CM code of each of the day's diagnoses (``DayFacts.diagnoses``, by index; a
    #: Condition's own coding; "" when it has none)
    diagnoses: tuple[str, ...] = ()


class Reader(Protocol):
    """What this module reads from the parser's ``Lookup``."""

    def get(self, ref: str) -> Resource | None: ...


def parties_of(
    lookup: Reader,
    patient: str,
    coverage: str | None,
    clinicians: Iterable[str],
    diagnoses: Iterable[Mapping[str, object]] = (),
) -> Parties:
    """The parties of a day: ``patient`` and ``coverage`` keys, the clinician keys its lines
    and claim name (performers, supervisors, the referring provider), and its diagnoses."""
    pat = as_dict(lookup.get(patient))
    given, family = _name(pat)
    ids = [i for i in as_list(pat.get("identifier")) if isinstance(i, dict)]
    mrn = next((str(i["value"]) for i in ids if isinstance(i.get("value"), str)), "")
    cov = as_dict(lookup.get(coverage)) if coverage else {}
    payor = reference_of(next(iter(as_list(cov.get("payor"))), None))
    org = as_dict(lookup.get(payor)) if payor else {}
    payer_name = org.get("name") or as_dict(next(iter(as_list(cov.get("payor"))), {})).get(
        "display"
    )
    payer_ids = [i for i in as_list(org.get("identifier")) if isinstance(i, dict)]
    address = as_dict(next(iter(as_list(pat.get("address"))), {}))
    relationship = next(
        (c.get("code") for c in as_list(as_dict(cov.get("relationship")).get("coding"))
         if isinstance(c, dict) and isinstance(c.get("code"), str)),
        "self",
    )  # fmt: skip
    return Parties(
        patient=Person(key=patient, family=family, given=given),
        mrn=mrn or patient.partition("/")[2],
        birth_date=str(pat.get("birthDate") or ""),
        gender=str(pat.get("gender") or ""),
        address=(
            " ".join(str(x) for x in as_list(address.get("line")) if isinstance(x, str)),
            str(address.get("city") or ""),
            str(address.get("state") or ""),
            str(address.get("postalCode") or ""),
        ),
        subscriber_id=str(cov.get("subscriberId") or ""),
        relationship=str(relationship),
        payer_name=str(payer_name or ""),
        payer_id=next((str(i["value"]) for i in payer_ids if isinstance(i.get("value"), str)), ""),
        clinicians={k: _person(lookup, k) for k in dict.fromkeys(clinicians)},
        diagnoses=tuple(_icd(lookup, d) for d in diagnoses),
    )


def _icd(lookup: Reader, diagnosis: Mapping[str, object]) -> str:
    """A diagnosis's ICD-10-CM code: the coding's, or the referenced Condition's."""
    if diagnosis.get("system") == ICD10CM and isinstance(diagnosis.get("code"), str):
        return str(diagnosis["code"])
    ref = diagnosis.get("reference")
    condition = as_dict(lookup.get(ref)) if isinstance(ref, str) else {}
    return next(
        (str(c["code"]) for c in as_list(as_dict(condition.get("code")).get("coding"))
         if isinstance(c, dict) and c.get("system") == ICD10CM and isinstance(c.get("code"), str)),
        "",
    )  # fmt: skip


def _person(lookup: Reader, key: str) -> Person:
    """A clinician: a PractitionerRole's practitioner for the name; the NPI from either."""
    found = as_dict(lookup.get(key))
    people = [found]
    if found.get("resourceType") == "PractitionerRole":
        practitioner = reference_of(found.get("practitioner"))
        people.append(as_dict(lookup.get(practitioner)) if practitioner else {})
    npi = next(
        (str(i["value"]) for p in people for i in as_list(p.get("identifier"))
         if isinstance(i, dict) and i.get("system") == NPI and isinstance(i.get("value"), str)),
        "",
    )  # fmt: skip
    given, family = _name(people[-1])
    return Person(key=key, family=family, given=given, npi=npi)


def _name(resource: Resource) -> tuple[str, str]:
    """(given, family) of a resource's first name (``text`` split when that is all)."""
    name = as_dict(next(iter(as_list(resource.get("name"))), {}))
    family = name.get("family")
    given = [g for g in as_list(name.get("given")) if isinstance(g, str)]
    if isinstance(family, str):
        return " ".join(given), family
    text = name.get("text")
    if isinstance(text, str) and text.strip():
        *first, last = text.split()
        return " ".join(first), last
    return "", ""
