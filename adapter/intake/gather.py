"""Live intake: turn changed Procedures and Encounters into the patient-days they touch, and
gather a patient-day's context from the EMR with as few requests as standard FHIR search allows.

Every source (webhook notification, polling, reconciliation sweep) produces ``ChangeEvent``s;
``days_of`` turns them into ``PatientDay``s; ``gather_day`` fills an in-memory ``Spool`` (the
same index replay uses) so the rest of the pipeline does not know where data came from.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta, tzinfo
from typing import Any

from adapter.domain import PatientDay
from adapter.emr.client import FhirClient, Params
from adapter.errors import FatalServerError, InputError
from adapter.fhir.dates import service_date_of
from adapter.fhir.refs import (
    identifier_key,
    is_id,
    is_placeholder,
    key_of,
    normalize_references,
    patient_key,
    placeholder_parts,
    ref_key,
    reference_of,
    split_key,
    token_value,
)
from adapter.intake.events import ChangeEvent
from adapter.intake.spool import Spool

log = logging.getLogger(__name__)
Resource = dict[str, Any]
Search = tuple[str, Params]
GONE = (404, 410)


# -- which days a change touches ----------------------------------------------------------------
def procedure_day(emr: FhirClient, proc: Resource, zone: tzinfo | None) -> PatientDay | None:
    """The patient-day a procedure read from the EMR is on (its encounter's when it has no
    time of its own); None when it is on no patient's day."""
    return _procedure_day(proc, zone, _EncounterStarts(emr))


def _procedure_day(
    proc: Resource,
    zone: tzinfo | None,
    encounter_start: Callable[[str], str | None],
    patient_of: Callable[[str], str | None] = lambda key: None,
) -> PatientDay | None:
    """A procedure's patient-day: its own date, or (no time documented) its encounter's, as
    the spool places it. Only a Patient's: a procedure on a Group, a Device or a malformed
    subject is on no patient's day (its id may be a real patient's). A subject known only by
    identifier is the one Patient ``patient_of`` finds holding it."""
    subject = reference_of(normalize_references(proc, key_of(proc)).get("subject"))
    if subject and is_placeholder(subject):
        found = patient_of(subject)
        subject = found if found else None
    patient = patient_key(subject)
    dos = service_date_of(proc, zone)
    if dos is None and (enc := reference_of(proc.get("encounter"))):
        start = encounter_start(ref_key(enc))
        dos = service_date_of({"performedDateTime": start}, zone) if start else None
    return PatientDay.of(patient, dos) if patient and dos else None


@dataclass
class _PatientsByIdentifier:
    """The one Patient holding an identifier, searched on the EMR once each (None: no Patient
    or several hold it; the procedure is then on no patient's day, and a warning says so)."""

    emr: FhirClient
    found: dict[str, str | None] = field(default_factory=dict)

    def __call__(self, key: str) -> str | None:
        parts = placeholder_parts(key)
        if parts is None or parts[0] != "Patient":
            return None
        if key not in self.found:
            _, system, value = parts
            token = token_value(system, value) if system else value
            ids = [
                str(p.get("id"))
                for p in self.emr.search("Patient", [("identifier", token), ("_count", "2")])
                if p.get("resourceType") == "Patient" and is_id(p.get("id"))
            ]
            self.found[key] = f"Patient/{ids[0]}" if len(set(ids)) == 1 else None
            if self.found[key] is None:
                log.warning("a subject identifier matches %d patients: not placed", len(ids))
        return self.found[key]


@dataclass
class _EncounterStarts:
    """Encounter start times read from the EMR once each (None: gone or no start)."""

    emr: FhirClient
    starts: dict[str, str | None] = field(default_factory=dict)

    def __call__(self, key: str) -> str | None:
        parts = split_key(key)
        if parts is None or parts[0] != "Encounter":
            return None  # not a reference the EMR is asked about
        if key not in self.starts:
            try:
                kind, rid = parts
                period = self.emr.read(kind, rid).get("period")
                start = period.get("start") if isinstance(period, dict) else None
                self.starts[key] = start if isinstance(start, str) else None
            except FatalServerError as err:
                if err.status not in GONE:
                    raise
                self.starts[key] = None
        return self.starts[key]


def days_of(
    emr: FhirClient,
    events: Iterable[ChangeEvent],
    *,
    zone: tzinfo | None = None,
    procedures: set[str] | None = None,
) -> set[PatientDay]:
    """The patient-days a batch of changes touches (reads what a notification left out).

    A Procedure the EMR no longer has (404, 410) is skipped: the caller adds the days the ledger
    billed it on, whose recomputation voids its lines. A procedure with no date is placed on its
    encounter's. An Encounter is not read unless one of its procedures has no date: its
    procedures are searched by reference (and their keys added to ``procedures``, so the caller
    can add the days they were billed on before).
    """
    encounter_start = _EncounterStarts(emr)
    patient_of = _PatientsByIdentifier(emr)
    days: set[PatientDay] = set()
    for ev in events:
        if ev.kind == "Procedure":
            resource = ev.resource if ev.resource is not None else _read_procedure(emr, ev.id)
            if resource is None:
                continue
            if day := _procedure_day(resource, zone, encounter_start, patient_of):
                days.add(day)
            else:
                log.warning("Procedure/%s has no Patient subject or no date: not placed", ev.id)
            continue
        if ev.kind != "Encounter":
            continue  # the patient's context: its days come from the caller's ledger
        # Encounter: every procedure of it
        for proc in emr.search("Procedure", {"encounter": f"Encounter/{ev.id}", "_count": "200"}):
            if proc.get("resourceType") != "Procedure":
                continue
            if procedures is not None:
                procedures.add(f"Procedure/{proc.get('id')}")
            if day := _procedure_day(proc, zone, encounter_start, patient_of):
                days.add(day)
    return days


def _read_procedure(emr: FhirClient, rid: str) -> Resource | None:
    """The procedure as the EMR has it now; None when it is gone (its days come from the
    caller's ledger)."""
    try:
        return emr.read("Procedure", rid)
    except FatalServerError as err:
        if err.status not in GONE:
            raise
        log.info("Procedure/%s is gone (%s): not placed", rid, err.status)
        return None


# -- gathering one day --------------------------------------------------------------------------
def gather_day(
    emr: FhirClient,
    day: PatientDay,
    *,
    also: Sequence[Search] = (),
    max_rounds: int = 4,
    zone: tzinfo | None = None,
    authorizations: bool = True,
    signatures: bool = False,
) -> tuple[Spool, list[list[Resource]]]:
    """Fetch everything one patient-day's evaluation needs into an in-memory spool.

    Each round is one ``batch`` of searches, so a day usually costs two round trips: (1) the
    patient's procedures around the date with their performers and encounters, the patient's
    encounters around the date, coverages, care plans, documents and (``authorizations``) the
    payer's preauthorization responses (with ``signatures``, the Provenances that sign the care
    plans, ``_revinclude``d) (plus ``also``, searches the caller
    wants answered in the same request); (2) whatever those reference but did not bring (``_id``
    searches), the roles of every practitioner, the procedures of the day's encounters (those
    with no time have no date to be found by), and the same clinicians' procedures with other
    patients that day (the concurrency check). Another round follows only when a round found new
    references (a role read in round 2 naming another practitioner, say); a day still finding
    some after ``max_rounds`` is an ``InputError``. Returns the spool and the answers to
    ``also``, in order.
    """
    gathering = _Gathering(
        Spool(":memory:", zone=zone), day, zone, authorizations=authorizations,
        signatures=signatures,
    )  # fmt: skip
    try:
        gathering.by_subject_identifier = emr.supports_subject_identifier()
        first = gathering.first_searches()
        answers = emr.search_batch([*first, *also])
        for found in answers[: len(first)]:
            gathering.add_all(found)
        for round_no in range(max_rounds + 1):
            searches = gathering.next_round()
            if not searches:
                break
            if round_no == max_rounds:
                # a day still finding new references after this many rounds is not evaluated
                # on part of its context (a missed session of a clinician could bill one-on-one
                # time)
                raise InputError(
                    f"{day.patient} {day.service_date}: references still unresolved after "
                    f"{max_rounds} rounds of searches"
                )
            for found in emr.search_batch(searches):
                gathering.add_all(found)
        gathering.spool.finish()
    except BaseException:
        gathering.spool.close()
        raise
    return gathering.spool, answers[len(first) :]


@dataclass
class _Gathering:
    """One day's gathering: the spool it fills, what was fetched and what was asked."""

    spool: Spool
    day: PatientDay
    zone: tzinfo | None
    seen: set[str] = field(default_factory=set)  # Type/id of every resource fetched
    asked: set[str] = field(default_factory=set)  # references read, roles, days searched
    #: whether the EMR finds procedures by ``subject:identifier`` (those whose subject is known
    #: only by one of the patient's identifiers)
    by_subject_identifier: bool = False
    #: whether to search the EMR's ClaimResponses (off where it offers none)
    authorizations: bool = True
    #: whether care plans come with the Provenances that sign them (certification convention
    #: ``provenance``)
    signatures: bool = False

    @property
    def dos(self) -> str:
        return self.day.service_date.isoformat()

    @property
    def window(self) -> list[tuple[str, str]]:
        """The date of service is a local date (the site's zone, or each procedure's own
        offset): search a day either side (servers compare dates in their own zone) and let the
        spool keep the right day."""
        d = self.day.service_date
        return [
            ("date", f"ge{(d - timedelta(days=1)).isoformat()}"),
            ("date", f"le{(d + timedelta(days=1)).isoformat()}"),
        ]

    def add_all(self, resources: Iterable[Resource]) -> None:
        for resource in resources:
            key = key_of(resource)
            if key not in self.seen:
                self.seen.add(key)
                self.spool.add(resource, file=0, where=key)

    def first_searches(self) -> list[Search]:
        patient = self.day.patient
        return [
            (
                "Procedure",
                [
                    ("subject", patient),
                    *self.window,
                    ("_include", "Procedure:performer"),
                    ("_include", "Procedure:encounter"),
                    ("_count", "200"),
                ],
            ),
            ("Coverage", [("beneficiary", patient), ("_count", "50")]),
            (
                "CarePlan",
                [
                    ("subject", patient),
                    ("_count", "50"),
                    *([("_revinclude", "Provenance:target")] if self.signatures else []),
                ],
            ),
            # the patient: its identifiers find procedures that name it only by one
            ("Patient", [("_id", patient.partition("/")[2])]),
            # its documents: progress reports (the progress-report clock)
            ("DocumentReference", [("subject", patient), ("_count", "100")]),
            # the payer's authorizations (preauthorization responses)
            *(
                [
                    (
                        "ClaimResponse",
                        [("patient", patient), ("use", "preauthorization"), ("_count", "50")],
                    )
                ]
                if self.authorizations
                else []
            ),
            # the patient's encounters around the date: a procedure with no time is on its
            # encounter's day, and a date search cannot find it
            ("Encounter", [("subject", patient), *self.window, ("_count", "50")]),
        ]

    def next_round(self) -> list[Search]:
        """The searches the day still needs, given what has been fetched and asked so far."""
        self.spool.clear_cache()
        procs, encounters = self._day_procedures()
        refs, actors = _references(procs, self._resolve)
        for enc_key in sorted(k for k in refs if k.startswith("Encounter/")):
            for part in (self.spool.get(enc_key) or {}).get("participant") or []:
                if isinstance(part, dict) and (i := self._resolve(part.get("individual"))):
                    actors.add(i)
        # references by identifier (conditional, or Reference.identifier only) the spool cannot
        # resolve yet: a search by identifier on the EMR (answered next round)
        by_identifier = {k for k in refs | actors if is_placeholder(k)}
        refs -= by_identifier
        actors = {a for a in actors if a.startswith(("Practitioner/", "PractitionerRole/"))}
        # the authors of the patient's documents: whether a report's author is an assistant
        authors = {
            a
            for doc in self.spool.documents_of(self.day.patient)
            for ref in doc.get("author") or []
            if (a := self._resolve(ref)) and a.startswith(("Practitioner/", "PractitionerRole/"))
        }
        # the physicians who signed the care plans (convention provenance: not a therapist)
        authors |= {
            a
            for plan in self.spool.care_plans_of(self.day.patient)
            for prov in self.spool.provenances_of(f"CarePlan/{plan.get('id')}")
            for sig in prov.get("signature") or []
            if isinstance(sig, dict) and (a := self._resolve(sig.get("who")))
            and a.startswith(("Practitioner/", "PractitionerRole/"))
        }  # fmt: skip
        # the request Claims of the preauthorizations (what an item without detail authorizes)
        refs |= {
            r
            for cr in self.spool.authorizations_of(self.day.patient)
            if (r := self._resolve(cr.get("request"))) and r.startswith("Claim/")
        }
        practitioners = self._practitioners(actors)
        writers = self._practitioners(authors)
        refs |= actors | authors | practitioners | writers
        # a clinician's sessions are found under the practitioner and under each of their roles
        actors |= practitioners | self._roles_of(practitioners)
        return [
            *self._reads(refs),
            *self._identifier_searches(by_identifier),
            *self._subject_identifier_searches(),
            *self._once("roles", practitioners | writers,
                        lambda c: [("practitioner", c), ("_count", "200")], "PractitionerRole"),
            # undated procedures of the day's encounters (a date search cannot find them)
            *self._once("procs", encounters, lambda c: [("encounter", c), ("_count", "200")]),
            *self._once("day", actors,
                        lambda c: [("performer", c), *self.window, ("_count", "200")]),
        ]  # fmt: skip

    def _subject_identifier_searches(self) -> list[Search]:
        """The patient's procedures around the date that name it by one of its identifiers
        (``subject:identifier``), once per identifier, where the EMR supports the modifier."""
        patient = self.spool.get(self.day.patient) if self.by_subject_identifier else None
        out: list[Search] = []
        for ident in (patient or {}).get("identifier") or []:
            if not isinstance(ident, dict):
                continue
            key = identifier_key("Patient", ident.get("system"), ident.get("value"))
            parts = placeholder_parts(key) if key else None
            if parts is None or f"subject-ident:{key}" in self.asked:
                continue
            self.asked.add(f"subject-ident:{key}")
            _, system, value = parts
            token = token_value(system, value) if system else value
            params = [
                ("subject:identifier", token),
                *self.window,
                ("_include", "Procedure:performer"),
                ("_include", "Procedure:encounter"),
                ("_count", "200"),
            ]
            out.append(("Procedure", params))
        return out

    def _day_procedures(self) -> tuple[list[Resource], set[str]]:
        """The patient's procedures on the day (dated, and undated ones of the day's
        encounters, which belong to the encounter's day as replay places them), and the day's
        encounters."""
        patient = self.day.patient
        mine = [
            r
            for r in self.spool.resources("Procedure")
            if ref_key(reference_of(r.get("subject")) or "") == patient
            or self._resolve(r.get("subject")) == patient
        ]
        procs = [r for r in mine if service_date_of(r, self.zone) == self.dos]
        encounters = {
            e for r in procs if (e := _key(r.get("encounter"))) and e.startswith("Encounter/")
        }
        for enc in self.spool.resources("Encounter"):
            period = enc.get("period") if isinstance(enc.get("period"), dict) else {}
            start = period.get("start") if isinstance(period, dict) else None
            subject = reference_of(enc.get("subject"))
            if (
                subject
                and ref_key(subject) == patient
                and isinstance(start, str)
                and service_date_of({"performedDateTime": start}, self.zone) == self.dos
                and is_id(enc.get("id"))
            ):
                encounters.add(f"Encounter/{enc.get('id')}")
        procs += [
            r
            for r in mine
            if service_date_of(r, self.zone) is None and _key(r.get("encounter")) in encounters
        ]
        return procs, encounters

    def _resolve(self, element: Any) -> str | None:
        """The key of a Reference element as the spool resolves it (a contained resource, an
        identifier it holds); None for one that is neither ``Type/id`` nor by identifier."""
        ref = reference_of(element)
        key = self.spool.key_of(ref) if ref else None
        return key if key and (split_key(key) is not None or is_placeholder(key)) else None

    def _identifier_searches(self, keys: set[str]) -> list[Search]:
        """``Type?identifier=system|value`` for each identifier key not searched yet."""
        out: list[Search] = []
        for key in sorted(keys):
            parts = placeholder_parts(key)
            if parts is None or f"ident:{key}" in self.asked:
                continue
            self.asked.add(f"ident:{key}")
            kind, system, value = parts
            token = token_value(system, value) if system else value
            out.append((kind, [("identifier", token), ("_count", "2")]))
        return out

    def _practitioners(self, actors: set[str]) -> set[str]:
        """The practitioners among ``actors`` and behind their roles."""
        practitioners = {a for a in actors if a.startswith("Practitioner/")}
        for role_key in sorted(a for a in actors if a.startswith("PractitionerRole/")):
            if pr := _key((self.spool.get(role_key) or {}).get("practitioner")):
                practitioners.add(pr)
        return practitioners

    def _roles_of(self, practitioners: set[str]) -> set[str]:
        return {
            f"PractitionerRole/{role.get('id')}"
            for role in self.spool.resources("PractitionerRole")
            if is_id(role.get("id")) and _key(role.get("practitioner")) in practitioners
        }

    def _reads(self, refs: set[str]) -> list[Search]:
        """``_id`` searches for the references not fetched and not asked for yet."""
        missing: dict[str, list[str]] = {}
        for key in sorted(refs - self.seen):
            kind, _, rid = key.partition("/")
            if rid and f"read:{key}" not in self.asked:
                self.asked.add(f"read:{key}")
                missing.setdefault(kind, []).append(rid)
        return [
            (kind, [("_id", ",".join(chunk))])
            for kind, ids in sorted(missing.items())
            for chunk in _chunks(ids)
        ]

    def _once(
        self,
        what: str,
        keys: set[str],
        params: Callable[[str], list[tuple[str, str]]],
        kind: str = "Procedure",
    ) -> list[Search]:
        """One search per chunk of the ``keys`` not searched for ``what`` yet."""
        new = sorted(k for k in keys if f"{what}:{k}" not in self.asked)
        self.asked.update(f"{what}:{k}" for k in new)
        return [(kind, params(",".join(chunk))) for chunk in _chunks(new)]


def _references(
    procs: Sequence[Resource], resolve: Callable[[Any], str | None]
) -> tuple[set[str], set[str]]:
    """The encounters and the performers the procedures name (well-formed ``Type/id`` keys and
    identifier keys only: a malformed reference is never searched for)."""
    refs: set[str] = set()
    actors: set[str] = set()
    for p in procs:
        if (e := resolve(p.get("encounter"))) and (
            e.startswith("Encounter/") or e.startswith("identifier:Encounter|")
        ):
            refs.add(e)
        for perf in p.get("performer") or []:
            if isinstance(perf, dict) and (a := resolve(perf.get("actor"))):
                actors.add(a)
    return refs, actors


def _key(element: Any) -> str | None:
    """The ``Type/id`` key of a Reference element, when it is a well-formed one."""
    ref = reference_of(element)
    key = ref_key(ref) if ref else None
    return key if split_key(key) is not None else None


def _chunks(items: Sequence[str], size: int = 20) -> Iterator[list[str]]:
    """Comma-separated (OR) lists of at most ``size`` values, to keep URLs short."""
    for i in range(0, len(items), size):
        yield list(items[i : i + size])
