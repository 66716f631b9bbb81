"""Deterministic synthetic therapy data for the benchmarks (no real people, no real PHI).

``Generator(seed)`` walks a fixed schedule and yields one ``PatientUnit`` at a time (a patient,
their Coverage and CarePlan, and their visits: an Encounter plus 2-6 Procedures per patient-day),
so writers can stream any number of procedures with flat memory. Everything comes from
``random.Random(seed)``: the same seed and size give byte-identical files.

The schedule keeps the data realistic: clinicians work in *teams* (PT, PTA, OT, OTA and SLP, each a
``Practitioner`` with a NUCC-coded ``PractitionerRole``) at one site (Eastern, Central or Pacific
time, US daylight saving applied). A team's day has five two-hour slots; each slot holds one
patient-day, so a clinician never treats two patients at once by accident. A patient is seen ten
times (every other weekday) between January and October 2026. Documentation gaps come at small,
fixed rates like the cases in ``fixtures/``: overlapping services, a missing end time, no
diagnosis, a vague or missing note, group sessions, assistants with or without their supervisor.

Outputs: ``write_ndjson`` (bulk-export style, one file per resource type) and ``write_bundles``
(``collection`` Bundles of about 500 procedures with the context they reference).
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import IO, Any, Literal

import orjson

Resource = dict[str, Any]
Format = Literal["ndjson", "bundles"]

CPT = "http://www.ama-assn.org/go/cpt"
NUCC = "http://nucc.org/provider-taxonomy"
SOPT = "https://nahdo.org/sopt"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
EXT_YTD = "https://therapy-charge-adapter.org/fhir/StructureDefinition/therapy-ytd-allowed-"
TYPES = ("Patient", "Practitioner", "PractitionerRole", "Encounter", "Procedure", "Coverage",
         "CarePlan")  # fmt: skip

# -- reference tables ------------------------------------------------------------------------
ROLES: dict[str, tuple[str, str]] = {
    "pt": ("225100000X", "Physical Therapist"),
    "pta": ("225200000X", "Physical Therapy Assistant"),
    "ot": ("225X00000X", "Occupational Therapist"),
    "ota": ("224Z00000X", "Occupational Therapy Assistant"),
    "slp": ("235Z00000X", "Speech-Language Pathologist"),
}
ASSISTANT = {"pt": "pta", "ot": "ota"}

# code, display, weight, (min, max) minutes
Code = tuple[str, str, int, tuple[int, int]]
TREATMENT: dict[str, list[Code]] = {
    "pt": [
        ("97110", "Therapeutic exercise", 30, (8, 40)),
        ("97112", "Neuromuscular re-education", 20, (8, 35)),
        ("97116", "Gait training therapy", 12, (8, 30)),
        ("97140", "Manual therapy techniques", 14, (8, 30)),
        ("97530", "Therapeutic activities", 14, (10, 60)),
        ("97035", "Ultrasound therapy", 6, (5, 12)),
        ("97535", "Self-care/home management training", 4, (8, 25)),
    ],
    "ot": [
        ("97535", "Self-care/home management training", 32, (8, 40)),
        ("97530", "Therapeutic activities", 30, (10, 60)),
        ("97110", "Therapeutic exercise", 16, (8, 30)),
        ("97112", "Neuromuscular re-education", 12, (8, 25)),
        ("97140", "Manual therapy techniques", 10, (8, 20)),
    ],
    "slp": [
        ("92507", "Treatment of speech, language, voice, communication", 70, (15, 60)),
        ("92526", "Treatment of swallowing dysfunction", 30, (15, 45)),
    ],
}
EVALUATION: dict[str, list[Code]] = {
    "pt": [("97161", "PT evaluation, low complexity", 5, (30, 45)),
           ("97162", "PT evaluation, moderate complexity", 4, (30, 50)),
           ("97163", "PT evaluation, high complexity", 1, (40, 60))],
    "ot": [("97165", "OT evaluation, low complexity", 5, (30, 45)),
           ("97166", "OT evaluation, moderate complexity", 3, (40, 60))],
    "slp": [("92523", "Evaluation of speech sound production with language", 1, (45, 60))],
}  # fmt: skip
GROUP: Code = ("97150", "Therapeutic procedure(s), group (2 or more individuals)", 1, (30, 45))

# condition, diagnosis (ICD-10-CM), disciplines seen (first is primary), weight
CONDITIONS: list[tuple[str, str, str, tuple[str, ...], int]] = [
    ("knee", "Z47.1", "Aftercare following joint replacement surgery", ("pt",), 18),
    ("falls", "R29.6", "Repeated falls", ("pt", "ot"), 14),
    ("back", "M54.50", "Low back pain, unspecified", ("pt",), 16),
    ("stroke", "I69.351", "Hemiplegia following cerebral infarction", ("pt", "ot", "slp"), 12),
    ("parkinsons", "G20.A1", "Parkinson's disease without dyskinesia", ("pt", "slp"), 8),
    ("ms", "G35", "Multiple sclerosis", ("ot", "pt"), 6),
    ("tbi", "S06.9X9S", "Intracranial injury, sequela", ("ot", "slp", "pt"), 6),
    ("vestibular", "H81.10", "Benign paroxysmal vertigo", ("pt",), 6),
    ("dysphagia", "R13.12", "Dysphagia, oropharyngeal phase", ("slp",), 7),
    ("hand", "S62.101D", "Fracture of wrist, subsequent encounter", ("ot",), 7),
]
# SOPT code, display, weight
PAYERS = [("121", "Medicare Fee For Service", 70), ("2", "Medicaid", 12),
          ("311", "TRICARE (CHAMPUS)", 6), ("5", "Private Health Insurance", 12)]  # fmt: skip
PER_DAY = ([2, 3, 4, 5, 6], [20, 35, 28, 12, 5])

GOOD_NOTES = {
    "97110": "Therapeutic exercise for quadriceps and hip abductor strength with resistance "
    "bands; patient tolerated well and increased repetitions.",
    "97112": "Balance training with tactile cues and perturbations; patient demonstrated "
    "improved single-leg stance time.",
    "97116": "Gait training with verbal cues for step length on level surfaces and stairs; "
    "patient improved cadence with a rolling walker.",
    "97140": "Manual therapy: joint mobilization and soft tissue technique to the lumbar spine; "
    "patient reports decreased pain afterwards.",
    "97530": "Therapeutic activities: functional transfer training and dynamic reaching tasks; "
    "patient required minimal assist and progressed well.",
    "97035": "Ultrasound modality to the lateral knee at 1 MHz; patient tolerated without "
    "increased pain.",
    "97535": "Self-care training: lower-body dressing and bathing with adaptive equipment; "
    "patient demonstrated improved independence in ADL.",
    "97150": "Group session of three patients: balance and strength exercise class with "
    "verbal cues; patient tolerated well.",
    "92507": "Speech-language treatment: word retrieval drills with semantic cueing; patient "
    "improved naming accuracy to 70 percent.",
    "92526": "Swallowing treatment: effortful swallow and chin-tuck technique with thin "
    "liquids; patient tolerated without coughing.",
}
EVAL_NOTE = (
    "Initial evaluation: history, standardized tests of strength, balance and "
    "function; plan of care established and patient instructed in home exercise."
)
VAGUE_NOTES = ["Pt seen for therapy.", "Tx as planned.", "Continue POC.", "Exercises done."]

WEEKDAYS = [
    d
    for d in (date(2026, 1, 5) + timedelta(days=i) for i in range(300))
    if d.weekday() < 5 and d < date(2026, 10, 31)
]
SLOTS = (7 * 60 + 30, 9 * 60 + 30, 11 * 60 + 30, 13 * 60 + 30, 15 * 60 + 30)  # minutes of day
SLOT_MINUTES = 115
SITES = (("Eastern", -5), ("Central", -6), ("Pacific", -8))
DST = (date(2026, 3, 8), date(2026, 11, 1))


@dataclass(frozen=True, slots=True)
class Rates:
    """How often each documentation gap or special case appears (per day or per procedure)."""

    overlap_day: float = 0.02
    missing_end: float = 0.012
    no_diagnosis_day: float = 0.02
    diagnosis_on_encounter_day: float = 0.08
    vague_note: float = 0.03
    missing_note: float = 0.01
    group_day: float = 0.05
    mixed_day: float = 0.15
    assistant: float = 0.3
    unsupervised_day: float = 0.05  # assistant days without the supervising therapist listed
    not_completed: float = 0.004
    no_care_plan: float = 0.03
    no_coverage: float = 0.01
    kx_over: float = 0.1
    ytd_unknown: float = 0.1

    @classmethod
    def clean(cls) -> Rates:
        """No gaps at all: every patient-day bills (used by the live benchmark)."""
        return cls(0, 0, 0, 0, 0, 0, 0, 0, 0.3, 0.0, 0, 0, 0, 0, 0)


@dataclass(slots=True)
class Day:
    encounter: Resource
    procedures: list[Resource]
    patient: str  # "Patient/<id>"
    dos: str


@dataclass(slots=True)
class PatientUnit:
    team: int
    context: list[Resource]  # Patient, Coverage?, CarePlan?
    days: list[Day] = field(default_factory=list)

    @property
    def procedure_count(self) -> int:
        return sum(len(d.procedures) for d in self.days)


def team_resources(prefix: str, team: int) -> list[Resource]:
    """The five Practitioners and their PractitionerRoles of one team."""
    out: list[Resource] = []
    for key, (code, display) in ROLES.items():
        pid = f"{prefix}-prac-{team:04d}-{key}"
        name = f"Bench Therapist {team:04d} {key.upper()}"
        out.append({"resourceType": "Practitioner", "id": pid, "active": True,
                    "name": [{"text": name, "family": f"{team:04d}{key.upper()}",
                              "given": ["Bench Therapist"]}]})  # fmt: skip
        out.append({"resourceType": "PractitionerRole", "id": f"{prefix}-role-{team:04d}-{key}",
                    "active": True,
                    "practitioner": {"reference": f"Practitioner/{pid}", "display": name},
                    "code": [{"coding": [{"system": NUCC, "code": code,
                                          "display": display}]}]})  # fmt: skip
    return out


def _pick(rng: random.Random, table: list[Code]) -> Code:
    return rng.choices(table, weights=[c[2] for c in table])[0]


class Generator:
    """Yields ``PatientUnit``s in schedule order until ``procedures`` have been produced.

    ``visits``/``spacing``: a patient is seen ``visits`` times, every ``spacing`` weekdays, in one
    slot lane of one team. ``per_day`` fixes the procedures per day (live benchmark: 2).
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        prefix: str = "bench",
        rates: Rates | None = None,
        visits: int = 10,
        spacing: int = 2,
        per_day: int | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.prefix = prefix
        self.rates = rates or Rates()
        self.visits = visits
        self.spacing = spacing
        self.per_day = per_day
        self.patients = 0
        self.encounters = 0
        self.procedure_seq = 0

    # -- schedule --------------------------------------------------------------------------
    def lanes(self) -> Iterator[tuple[int, int, list[date]]]:
        """(team, slot, dates) per patient, in generation order."""
        block = self.visits * self.spacing
        team = 0
        while True:
            for slot in range(len(SLOTS)):
                for start in range(0, len(WEEKDAYS), block):
                    for parity in range(self.spacing):
                        dates = WEEKDAYS[start + parity : start + block : self.spacing]
                        if dates:
                            yield team, slot, dates
            team += 1

    def units(self, procedures: int) -> Iterator[PatientUnit]:
        left = procedures
        for team, slot, dates in self.lanes():
            if left <= 0:
                return
            unit = self.patient(team, slot, dates, left)
            left -= unit.procedure_count
            yield unit

    # -- one patient -----------------------------------------------------------------------
    def patient(self, team: int, slot: int, dates: list[date], budget: int) -> PatientUnit:
        rng, r = self.rng, self.rates
        self.patients += 1
        n = self.patients
        pid = f"{self.prefix}-pat-{n:07d}"
        patient_ref = f"Patient/{pid}"
        condition = rng.choices(CONDITIONS, weights=[c[4] for c in CONDITIONS])[0]
        sopt, payer_name, _ = rng.choices(PAYERS, weights=[p[2] for p in PAYERS])[0]
        old = sopt == "121" or rng.random() < 0.3
        birth = date(rng.randint(1932, 1960) if old else rng.randint(1962, 2006),
                     rng.randint(1, 12), rng.randint(1, 28))  # fmt: skip
        context: list[Resource] = [
            {"resourceType": "Patient", "id": pid, "active": True,
             "name": [{"use": "official", "text": f"Bench Patient {n:07d}",
                       "family": f"{n:07d}", "given": ["Bench Patient"]}],
             "gender": rng.choice(("female", "male")), "birthDate": birth.isoformat()}
        ]  # fmt: skip
        if rng.random() >= r.no_coverage:
            cov: Resource = {
                "resourceType": "Coverage", "id": f"{self.prefix}-cov-{n:07d}",
                "status": "active",
                "type": {"coding": [{"system": SOPT, "code": sopt, "display": payer_name}]},
                "subscriberId": f"BENCH-{n:09d}",
                "beneficiary": {"reference": patient_ref},
                "relationship": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                             "subscriber-relationship", "code": "self"}]},
                "period": {"start": "2026-01-01", "end": "2026-12-31"},
                "payor": [{"display": f"Bench {payer_name} Payer"}],
                "order": 1,
            }  # fmt: skip
            if sopt == "121" and rng.random() >= r.ytd_unknown:
                high = rng.random() < r.kx_over
                pt = rng.randint(2500, 4000) if high else rng.randint(0, 2300)
                cov["extension"] = [
                    {"url": EXT_YTD + "pt-slp", "valueMoney": {"value": float(pt),
                                                               "currency": "USD"}},
                    {"url": EXT_YTD + "ot", "valueMoney": {"value": float(rng.randint(0, 1800)),
                                                           "currency": "USD"}},
                ]  # fmt: skip
            context.append(cov)
        if rng.random() >= r.no_care_plan:
            context.append(
                {"resourceType": "CarePlan", "id": f"{self.prefix}-cp-{n:07d}",
                 "status": "active", "intent": "plan",
                 "title": "Outpatient therapy plan of care", "subject": {"reference": patient_ref},
                 "period": {"start": "2026-01-01", "end": "2026-12-31"}}
            )  # fmt: skip
        unit = PatientUnit(team=team, context=context)
        for visit, dos in enumerate(dates):
            if budget <= 0:
                break
            day = self.day(
                condition, patient_ref, team=team, slot=slot, dos=dos, visit=visit, budget=budget
            )
            budget -= len(day.procedures)
            unit.days.append(day)
        return unit

    def day(  # noqa: C901, PLR0912, PLR0915 (one synthetic patient-day, field by field)
        self,
        condition: tuple[str, str, str, tuple[str, ...], int],
        patient_ref: str,
        *,
        team: int,
        slot: int,
        dos: date,
        visit: int,
        budget: int,
    ) -> Day:
        rng, r = self.rng, self.rates
        _, icd, icd_display, disciplines, _ = condition
        self.encounters += 1
        enc_id = f"{self.prefix}-enc-{self.encounters:08d}"
        site, base = SITES[team % len(SITES)]
        offset = base + (1 if DST[0] <= dos < DST[1] else 0)
        tz = f"{'-' if offset < 0 else '+'}{abs(offset):02d}:00"
        count = self.per_day if self.per_day is not None else rng.choices(*PER_DAY)[0]
        count = min(count, budget)
        primary = disciplines[0]
        # which discipline performs each procedure
        who = [primary] * count
        if len(disciplines) > 1 and count > 1 and rng.random() < r.mixed_day:
            other = rng.choice(disciplines[1:])
            for i in range(count - rng.randint(1, min(2, count - 1)), count):
                who[i] = other
        # codes and durations
        plan: list[tuple[str, Code]] = []
        for i, disc in enumerate(who):
            if visit == 0 and (i == 0 or who[i - 1] != disc) and disc in EVALUATION:
                plan.append((disc, _pick(rng, EVALUATION[disc])))
            elif disc != "slp" and rng.random() < r.group_day / max(1, count):
                plan.append((disc, GROUP))
            else:
                plan.append((disc, _pick(rng, TREATMENT[disc])))
        minutes = [rng.randint(*c[3]) for _, c in plan]
        gaps = [rng.randint(0, 5) for _ in plan]
        while sum(minutes) + sum(gaps) > SLOT_MINUTES - 10:
            i = max(range(len(minutes)), key=minutes.__getitem__)
            minutes[i] = max(5, minutes[i] - 5)
            if all(m == 5 for m in minutes):
                break
        overlap = count > 1 and rng.random() < r.overlap_day
        no_dx = rng.random() < r.no_diagnosis_day
        dx_on_encounter = not no_dx and rng.random() < r.diagnosis_on_encounter_day
        unsupervised = rng.random() < r.unsupervised_day
        start = SLOTS[slot] + rng.randint(0, 8)
        t = start
        participants: dict[str, None] = {}
        procedures: list[Resource] = []
        role = f"PractitionerRole/{self.prefix}-role-{team:04d}-"
        for i, ((disc, (code, display, _, _)), mins) in enumerate(zip(plan, minutes, strict=True)):
            self.procedure_seq += 1
            is_eval = code.startswith(("9716", "92523"))
            performer = disc
            if disc in ASSISTANT and not is_eval and rng.random() < r.assistant:
                performer = ASSISTANT[disc]
                if not unsupervised:  # the supervising therapist is on the encounter
                    participants[role + disc] = None
            else:
                participants[role + disc] = None
            participants[role + performer] = None
            if overlap and i == 1:
                t -= rng.randint(5, 10)
            begin, end = t, t + mins
            t = end + gaps[i]
            proc: Resource = {
                "resourceType": "Procedure",
                "id": f"{self.prefix}-proc-{self.procedure_seq:09d}",
                "status": "completed" if rng.random() >= r.not_completed else "not-done",
                "code": {"coding": [{"system": CPT, "code": code, "display": display}]},
                "subject": {"reference": patient_ref},
                "encounter": {"reference": f"Encounter/{enc_id}"},
                "performedPeriod": {"start": _stamp(dos, begin, tz)},
                "performer": [{"actor": {"reference": role + performer}}],
            }
            if rng.random() >= r.missing_end:
                proc["performedPeriod"]["end"] = _stamp(dos, end, tz)
            if code == GROUP[0]:
                proc["category"] = {"text": "group therapy"}
            if not no_dx and not dx_on_encounter:
                proc["reasonCode"] = [{"coding": [{"system": ICD10, "code": icd,
                                                   "display": icd_display}]}]  # fmt: skip
            note_roll = rng.random()
            if note_roll < r.vague_note:
                proc["note"] = [{"text": rng.choice(VAGUE_NOTES)}]
            elif note_roll >= r.vague_note + r.missing_note:
                proc["note"] = [{"text": EVAL_NOTE if is_eval else GOOD_NOTES[code]}]
            procedures.append(proc)
        encounter: Resource = {
            "resourceType": "Encounter", "id": enc_id, "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                      "code": "AMB", "display": "ambulatory"},
            "subject": {"reference": patient_ref},
            "participant": [{"individual": {"reference": p}} for p in participants],
            "period": {"start": _stamp(dos, start - 5, tz),
                       "end": _stamp(dos, max(t, start) + 10, tz)},
            "serviceProvider": {"display": f"Bench Therapy Clinic {team:04d} ({site})"},
        }  # fmt: skip
        if dx_on_encounter:
            encounter["reasonCode"] = [{"coding": [{"system": ICD10, "code": icd,
                                                    "display": icd_display}]}]  # fmt: skip
        return Day(encounter, procedures, patient_ref, dos.isoformat())


def _stamp(day: date, minutes: int, tz: str) -> str:
    return f"{day.isoformat()}T{minutes // 60:02d}:{minutes % 60:02d}:00{tz}"


# -- writers ---------------------------------------------------------------------------------
@dataclass(slots=True)
class Stats:
    procedures: int = 0
    patient_days: int = 0
    patients: int = 0
    teams: int = 0
    files: int = 0
    bytes: int = 0


def write_ndjson(gen: Generator, out: Path, procedures: int) -> Stats:
    """One ``<Type>.ndjson`` per resource type, written as generated."""
    out.mkdir(parents=True, exist_ok=True)
    stats = Stats()
    handles: dict[str, IO[bytes]] = {t: (out / f"{t}.ndjson").open("wb") for t in TYPES}

    def put(resource: Resource) -> None:
        handles[resource["resourceType"]].write(orjson.dumps(resource) + b"\n")

    teams: set[int] = set()
    try:
        for unit in gen.units(procedures):
            if unit.team not in teams:
                teams.add(unit.team)
                for res in team_resources(gen.prefix, unit.team):
                    put(res)
            for res in unit.context:
                put(res)
            for day in unit.days:
                put(day.encounter)
                for proc in day.procedures:
                    put(proc)
            stats.patients += 1
            stats.patient_days += len(unit.days)
            stats.procedures += unit.procedure_count
    finally:
        for fh in handles.values():
            fh.close()
    stats.teams = len(teams)
    stats.files = len(TYPES)
    stats.bytes = sum((out / f"{t}.ndjson").stat().st_size for t in TYPES)
    return stats


def write_bundles(gen: Generator, out: Path, procedures: int, size: int = 500) -> Stats:
    """``bundle-NNNNN.json`` collection Bundles of ~``size`` procedures, each with its context
    (the teams' practitioners and roles, the patients, coverages, care plans and encounters)."""
    out.mkdir(parents=True, exist_ok=True)
    stats = Stats()
    pending: list[PatientUnit] = []
    teams: set[int] = set()

    def flush() -> None:
        if not pending:
            return
        stats.files += 1
        resources: list[Resource] = []
        for team in sorted({u.team for u in pending}):
            resources += team_resources(gen.prefix, team)
        for unit in pending:
            resources += unit.context
            for day in unit.days:
                resources.append(day.encounter)
                resources += day.procedures
        bundle = {
            "resourceType": "Bundle",
            "id": f"{gen.prefix}-bundle-{stats.files:05d}",
            "type": "collection",
            "entry": [
                {"fullUrl": f"http://emr.example/fhir/{r['resourceType']}/{r['id']}",
                 "resource": r}
                for r in resources
            ],
        }  # fmt: skip
        path = out / f"bundle-{stats.files:05d}.json"
        path.write_bytes(orjson.dumps(bundle))
        stats.bytes += path.stat().st_size
        pending.clear()

    held = 0
    for unit in gen.units(procedures):
        pending.append(unit)
        teams.add(unit.team)
        held += unit.procedure_count
        stats.patients += 1
        stats.patient_days += len(unit.days)
        stats.procedures += unit.procedure_count
        if held >= size:
            flush()
            held = 0
    flush()
    stats.teams = len(teams)
    return stats


def generate(out: Path, procedures: int, *, seed: int = 0, fmt: Format = "ndjson") -> Stats:
    gen = Generator(seed)
    if fmt == "ndjson":
        return write_ndjson(gen, out, procedures)
    return write_bundles(gen, out, procedures)


def main() -> None:
    p = argparse.ArgumentParser(description="write synthetic therapy data for the benchmarks")
    p.add_argument("out", type=Path)
    p.add_argument("--procedures", type=int, default=10_000)
    p.add_argument("--format", choices=("ndjson", "bundles"), default="ndjson")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    stats = generate(a.out, a.procedures, seed=a.seed, fmt=a.format)
    print(orjson.dumps({"out": str(a.out), **{k: getattr(stats, k) for k in Stats.__slots__}})
          .decode())  # fmt: skip


if __name__ == "__main__":
    main()
