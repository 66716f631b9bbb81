"""Performers and participants -> clinicians with a discipline (PT, OT, SLP; therapist or
assistant), from ``PractitionerRole.code``/``specialty`` (or a Practitioner's roles in effect on
the date, or its ``qualification``) by the role table in ``mappings/fhir.toml``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Protocol

from adapter.domain import Clinician, Discipline, Rulebook
from adapter.fhir.coding import codings, concepts
from adapter.fhir.dates import in_period
from adapter.fhir.refs import Resource, as_list, reference_of

Role = tuple[Discipline, bool]  # discipline, assistant


class RoleLookup(Protocol):
    """What resolving a clinician needs of the parser's ``Lookup``."""

    def get(self, ref: str) -> Resource | None: ...

    def key_of(self, ref: str) -> str: ...

    def roles_of(self, practitioner_key: str) -> Sequence[Resource]: ...


def role_discipline(role: Resource, rulebook: Rulebook) -> Role | None:
    """The discipline a role (or a qualification shaped like one) means, if the table knows it."""
    for concept in concepts(role.get("code")) + concepts(role.get("specialty")):
        for c in codings(concept):
            system = rulebook.intake.canonical(c.get("system"))
            entry = rulebook.intake.roles.get((str(system), str(c.get("code"))))
            if entry is not None:
                return entry.discipline, entry.assistant
    return None


def role_in_effect(role: Resource, service_date: str, zone: tzinfo | None) -> bool:
    return role.get("active") is not False and in_period(role.get("period"), service_date, zone)


@dataclass
class Clinicians:
    """Resolves performer/participant references to clinicians, caching per patient-day.
    Problems (a reference that does not resolve, a practitioner in several disciplines) are
    reported as ``report(where, reason)``."""

    lookup: RoleLookup
    rulebook: Rulebook
    report: Callable[[str, str], None]
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
        role: Role | None = None
        ident = key
        if resource is None:
            self.report(where, f"reference {key} does not resolve")
        elif resource.get("resourceType") == "PractitionerRole":
            role = role_discipline(resource, self.rulebook)
            practitioner = reference_of(resource.get("practitioner"))
            if practitioner:
                ident = self.lookup.key_of(practitioner)
                aliases.add(ident)
        elif resource.get("resourceType") == "Practitioner":
            role = self._practitioner_role(key, resource, aliases, where)
        clinician = Clinician(
            id=ident,
            discipline=role[0] if role else None,
            assistant=role[1] if role else False,
        )
        self.cache[key] = (clinician, frozenset(aliases))
        return self.cache[key]

    def _practitioner_role(
        self, key: str, practitioner: Resource, aliases: set[str], where: str
    ) -> Role | None:
        """A Practitioner's one discipline: from its roles in effect on the date (added to
        ``aliases``), else from its qualifications; None when there is none or several."""
        roles = [
            r for r in self.lookup.roles_of(key) if role_in_effect(r, self.service_date, self.zone)
        ]
        found = {d for role in roles if (d := role_discipline(role, self.rulebook)) is not None}
        aliases |= {f"PractitionerRole/{r.get('id')}" for r in roles}
        if not found:
            quals = [
                {"code": [q.get("code")]}
                for q in as_list(practitioner.get("qualification"))
                if isinstance(q, dict)
            ]
            found = {d for q in quals if (d := role_discipline(q, self.rulebook)) is not None}
        if len(found) > 1:
            self.report(where, f"{key} has roles in several disciplines; name the role")
        return found.pop() if len(found) == 1 else None
