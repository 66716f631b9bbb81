"""Hypothesis properties of the rules core (issue: units never exceed what the minutes allow,
order never matters, evaluation is deterministic, no line from a held intervention)."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.domain import Clinician, Discipline, Intervention, Rulebook, ServiceDay
from adapter.mappings import load_rulebook
from adapter.rules import evaluate, timeline
from adapter.rules.units import allocate_cms, units_for_minutes

from .build import DOS, T0, encounter

RB: Rulebook = load_rulebook()
TIMED = ["97110", "97112", "97116", "97140", "97530", "97535", "97035"]
UNTIMED = ["97150", "97161", "97164", "97165", "G0283", "97010", "97014", "92507"]
CLINICIANS = [
    Clinician(id="pt-1", discipline=Discipline.PT),
    Clinician(id="pt-2", discipline=Discipline.PT),
    Clinician(id="pta-1", discipline=Discipline.PT, assistant=True),
    Clinician(id="ot-1", discipline=Discipline.OT),
    Clinician(id="ota-1", discipline=Discipline.OT, assistant=True),
    Clinician(id="slp-1", discipline=Discipline.SLP),
    Clinician(id="x-1", discipline=None),
]
NOTES = ["", "ok", "Gait training with cues; patient tolerated well and improved cadence today."]


@st.composite
def interventions(draw: st.DrawFn, n: int) -> Intervention:
    code = draw(st.sampled_from(TIMED + UNTIMED))
    has_span = draw(st.integers(0, 9)) > 0
    start = T0 + timedelta(minutes=draw(st.integers(0, 480)))
    minutes = draw(st.integers(0, 90))
    return Intervention(
        id=f"p{n}",
        code=code,
        start=start if has_span else None,
        end=start + timedelta(minutes=minutes) if has_span else None,
        minutes=None if has_span or draw(st.booleans()) else minutes,
        performers=tuple(
            draw(st.lists(st.sampled_from(CLINICIANS), min_size=0, max_size=2, unique=True))
        ),
        encounter_id="enc-1",
        group=draw(st.integers(0, 9)) == 0,
        diagnosis=draw(st.booleans()),
        note=draw(st.sampled_from(NOTES)),
    )


@st.composite
def days(draw: st.DrawFn) -> ServiceDay:
    count = draw(st.integers(0, 7))
    ivs = tuple(draw(interventions(n)) for n in range(count))
    return ServiceDay(
        patient_id="pat-1",
        service_date=DOS,
        payer=draw(st.sampled_from(sorted(RB.payers))),
        interventions=ivs,
        encounters=(encounter(*draw(st.lists(st.sampled_from(CLINICIANS), max_size=3))),),
        plan_of_care=draw(st.sampled_from([True, False, None])),
    )


PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROFILE
@given(st.dictionaries(st.sampled_from(TIMED), st.integers(0, 120), min_size=1))
def test_cms_allocation_spends_exactly_the_total_units(minutes: dict[str, int]) -> None:
    alloc = allocate_cms(minutes, rank=lambda k: (TIMED.index(k), k), label=str)
    assert sum(alloc.units.values()) == units_for_minutes(sum(minutes.values()))
    for code, m in minutes.items():
        assert alloc.units[code] >= m // 15  # 15+ minutes always at least one unit
        assert alloc.units[code] <= m // 15 + 1


@PROFILE
@given(days())
def test_cms_units_never_exceed_what_the_total_minutes_allow(day: ServiceDay) -> None:
    d = evaluate(day, RB)
    if d.method.value != "cms":
        return
    for discipline in Discipline:
        timed = [m for m in d.minutes if m.timed and m.discipline is discipline]
        billed = sum(
            ln.units
            for ln in d.lines
            if ln.discipline is discipline and ln.code in {m.code for m in timed}
        )
        assert billed <= units_for_minutes(sum(m.minutes for m in timed))


@PROFILE
@given(days())
def test_ama_units_never_exceed_each_codes_minutes(day: ServiceDay) -> None:
    d = evaluate(day, RB)
    if d.method.value != "ama":
        return
    for m in d.minutes:
        billed = sum(
            ln.units for ln in d.lines if ln.code == m.code and ln.discipline is m.discipline
        )
        assert billed <= (units_for_minutes(m.minutes) if m.timed else 1)


@PROFILE
@given(days())
def test_counted_minutes_never_exceed_the_patients_documented_time(day: ServiceDay) -> None:
    d = evaluate(day, RB)
    spans = [
        (iv.start, iv.end) for iv in day.interventions if iv.start and iv.end and iv.end >= iv.start
    ]
    counted = sum(m.minutes for m in d.minutes if m.timed)
    documented_only = sum(iv.minutes or 0 for iv in day.interventions if iv.start is None)
    assert counted <= timeline.minutes(spans) + documented_only


@PROFILE
@given(days(), st.randoms(use_true_random=False))
def test_reordering_interventions_never_changes_the_decision(day: ServiceDay, rnd) -> None:  # type: ignore[no-untyped-def]
    shuffled = list(day.interventions)
    rnd.shuffle(shuffled)
    from dataclasses import replace

    assert evaluate(day, RB) == evaluate(replace(day, interventions=tuple(shuffled)), RB)


@PROFILE
@given(days())
def test_evaluating_twice_gives_the_same_result(day: ServiceDay) -> None:
    assert evaluate(day, RB) == evaluate(day, RB)


@PROFILE
@given(days())
def test_no_line_from_an_intervention_with_an_error_finding(day: ServiceDay) -> None:
    d = evaluate(day, RB)
    held = d.held_intervention_ids
    for ln in d.lines:
        assert not (set(ln.intervention_ids) & held), (ln, d.findings)


@PROFILE
@given(days())
def test_every_line_is_well_formed(day: ServiceDay) -> None:
    d = evaluate(day, RB)
    for ln in d.lines:
        assert ln.units >= 1
        assert len(ln.modifiers) <= 4 and len(set(ln.modifiers)) == len(ln.modifiers)
        assert ln.intervention_ids and ln.rule_refs and ln.reasons
        discipline_mods = {"GP", "GO", "GN"} & set(ln.modifiers)
        if ln.discipline is not Discipline.DC:
            assert len(discipline_mods) == 1
