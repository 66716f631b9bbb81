"""Documentation findings, one test per row of domain.md §5 that can be judged from one day."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, timedelta

from adapter.domain import (
    BusyPeriod,
    Clinician,
    CodeKind,
    CodeSource,
    Decision,
    FindingCode,
    Intervention,
    Rulebook,
    Severity,
)
from adapter.rules import evaluate

from .build import NOBODY, OT, PT, PTA, T0, day, encounter, iv, lines, units_by_code

ERR, WARN, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO


def only(d: object, code: FindingCode) -> tuple[Severity, tuple[str, ...]]:
    found = [f for f in d.findings if f.code is code]  # type: ignore[attr-defined]
    assert len(found) == 1, found
    return found[0].severity, found[0].intervention_ids


def test_timed_code_without_start_and_end_is_an_error(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("a", "97112", None, None), iv("b", "97110", 0, 30)), rulebook)
    assert only(d, FindingCode.TIME_MISSING) == (ERR, ("a",))
    assert units_by_code(d) == {"97110": 2}


def test_timed_code_with_start_only_is_an_error(rulebook: Rulebook) -> None:
    a = Intervention(id="a", code="97112", start=T0, performers=(PT,), diagnosis=True)
    d = evaluate(day(a), rulebook)
    assert only(d, FindingCode.TIME_MISSING) == (ERR, ("a",))
    assert d.lines == ()


def test_minutes_without_times_is_an_error_for_medicare(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("a", "97112", None, 30)), rulebook)
    assert only(d, FindingCode.MINUTES_WITHOUT_TIMES) == (ERR, ("a",))
    assert d.lines == ()


def test_untimed_code_needs_no_times(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("e", "97161", None, None)), rulebook)
    assert lines(d) == [("97161", 1, ("GP",))]


def test_end_before_start(rulebook: Rulebook) -> None:
    bad = replace(iv("a", "97112", 0, 30), end=T0 - timedelta(minutes=5))
    d = evaluate(day(bad), rulebook)
    assert only(d, FindingCode.TIME_INVERTED) == (ERR, ("a",))
    assert d.lines == ()


def test_future_time(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("a", "97112", 0, 30), evaluated_at=T0 + timedelta(minutes=10)), rulebook)
    assert only(d, FindingCode.TIME_IN_FUTURE) == (ERR, ("a",))
    assert d.lines == ()


def test_outside_the_encounter(rulebook: Rulebook) -> None:
    enc = encounter(PT, start=T0, end=T0 + timedelta(minutes=20))
    d = evaluate(day(iv("a", "97112", 0, 30), encounters=(enc,)), rulebook)
    assert only(d, FindingCode.TIME_OUTSIDE_ENCOUNTER) == (ERR, ("a",))


def test_not_on_the_date_of_service(rulebook: Rulebook) -> None:
    a = iv("a", "97112", 0, 30)
    moved = replace(a, start=a.start + timedelta(days=1), end=a.end + timedelta(days=1))  # type: ignore[operator]
    d = evaluate(day(moved, encounters=()), rulebook)
    assert only(d, FindingCode.TIME_OFF_SERVICE_DATE) == (ERR, ("a",))


def test_single_service_under_8_minutes_is_info_and_nothing_billable_warns(
    rulebook: Rulebook,
) -> None:
    d = evaluate(day(iv("a", "97112", 0, 7)), rulebook)
    assert d.lines == ()
    assert only(d, FindingCode.UNDER_8_MINUTES) == (INFO, ("a",))
    assert only(d, FindingCode.NOTHING_BILLABLE)[0] is WARN


def test_under_8_minutes_beside_billable_services_is_info_only(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("a", "97110", 0, 38), iv("b", "97140", 38, 2)), rulebook)
    assert units_by_code(d) == {"97110": 3}
    assert only(d, FindingCode.UNDER_8_MINUTES) == (INFO, ("b",))
    assert "nothing-billable" not in {f.code.value for f in d.findings}


def test_no_diagnosis_anywhere_warns_but_bills(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("a", "97112", 0, 30, diagnosis=False)), rulebook)
    assert only(d, FindingCode.NO_DIAGNOSIS) == (WARN, ("a",))
    assert units_by_code(d) == {"97112": 2}


def test_diagnosis_on_the_encounter_is_enough(rulebook: Rulebook) -> None:
    enc = encounter(PT, diagnosis=True)
    d = evaluate(day(iv("a", "97112", 0, 30, diagnosis=False), encounters=(enc,)), rulebook)
    assert "no-diagnosis" not in {f.code.value for f in d.findings}


def test_no_performer(rulebook: Rulebook) -> None:
    a = Intervention(id="a", code="97112", start=T0, end=T0 + timedelta(minutes=30), diagnosis=True)
    d = evaluate(day(a), rulebook)
    assert only(d, FindingCode.NO_PERFORMER) == (ERR, ("a",))
    assert d.lines == ()


def test_performer_without_a_discipline(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("a", "97112", 0, 30, NOBODY)), rulebook)
    assert only(d, FindingCode.NO_DISCIPLINE) == (ERR, ("a",))
    assert d.lines == ()


def test_extra_performer_without_discipline_is_an_error(rulebook: Rulebook) -> None:
    # domain.md §5: "no performer, or performer without a discipline" is an error
    d = evaluate(day(iv("a", "97112", 0, 30, PT, NOBODY)), rulebook)
    assert only(d, FindingCode.NO_DISCIPLINE) == (ERR, ("a",))
    assert d.lines == ()


def test_mixed_disciplines_on_one_procedure(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("a", "97530", 0, 30, PT, OT)), rulebook)
    assert only(d, FindingCode.MIXED_DISCIPLINES) == (ERR, ("a",))


def test_code_outside_the_discipline(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("a", "92507", 0, 30, PT)), rulebook)
    assert only(d, FindingCode.DISCIPLINE_MISMATCH) == (ERR, ("a",))


def test_evaluation_by_an_assistant(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("a", "97161", 0, 30, PTA)), rulebook)
    assert only(d, FindingCode.ASSISTANT_NOT_PERMITTED) == (ERR, ("a",))
    assert d.lines == ()


def test_assistant_without_supervising_therapist(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("a", "97112", 0, 30, PTA), encounters=(encounter(PTA, OT),)), rulebook)
    assert only(d, FindingCode.ASSISTANT_UNSUPERVISED) == (WARN, ("a",))
    assert lines(d) == [("97112", 2, ("GP", "CQ"))]
    supervised = evaluate(day(iv("a", "97112", 0, 30, PTA), encounters=(encounter(PT),)), rulebook)
    assert "assistant-unsupervised" not in {f.code.value for f in supervised.findings}


def test_one_on_one_code_in_a_group_session(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("a", "97110", 0, 30, group=True)), rulebook)
    assert only(d, FindingCode.GROUP_BILLED_ONE_ON_ONE) == (ERR, ("a",))
    assert d.lines == ()


def test_group_said_in_the_note(rulebook: Rulebook) -> None:
    note = "Group session of four: therapeutic exercise with cues, all tolerated well."
    d = evaluate(day(iv("a", "97110", 0, 30, note=note)), rulebook)
    assert only(d, FindingCode.GROUP_BILLED_ONE_ON_ONE)[0] is ERR


def test_overlapping_timed_services_are_errors_and_never_count_twice(rulebook: Rulebook) -> None:
    d = evaluate(
        day(iv("a", "97110", 0, 30), iv("b", "97112", 20, 30), iv("c", "97140", 60, 15)), rulebook
    )
    sev, ids = only(d, FindingCode.OVERLAPPING_SERVICES)
    assert sev is ERR and ids == ("a", "b")
    assert "10 min" in next(
        f.message for f in d.findings if f.code is FindingCode.OVERLAPPING_SERVICES
    )
    assert units_by_code(d) == {"97140": 1}


def test_same_clinician_same_code_twice_over_overlapping_times_is_a_warning(
    rulebook: Rulebook,
) -> None:
    # domain.md §5: the same clinician documenting one code twice over overlapping times is a
    # warning asking to fix the note; the union of the minutes counts once (0-50: 50 min)
    d = evaluate(day(iv("a", "97110", 0, 30, PT), iv("b", "97110", 20, 30, PT)), rulebook)
    assert only(d, FindingCode.SAME_CODE_OVERLAP) == (WARN, ("a", "b"))
    message = next(f.message for f in d.findings if f.code is FindingCode.SAME_CODE_OVERLAP)
    assert "10 min" in message and "count once" in message and "fix the note" in message
    assert lines(d) == [("97110", 3, ("GP",))]  # 50 min, never 60
    assert d.lines[0].minutes == 50
    assert not d.held_intervention_ids  # a warning bills


def test_same_clinician_on_both_records_of_one_code_is_a_warning(rulebook: Rulebook) -> None:
    # PT with PTA on one record, PT alone on an overlapping one: PT documented the code twice
    d = evaluate(day(iv("a", "97110", 0, 30, PT, PTA), iv("b", "97110", 20, 30, PT)), rulebook)
    assert only(d, FindingCode.SAME_CODE_OVERLAP) == (WARN, ("a", "b"))


def test_pt_and_pta_on_one_code_at_once_count_once_as_info(rulebook: Rulebook) -> None:
    # domain.md §1 and §3: two clinicians treating one patient at once give one patient-minute
    # per minute, and time together counts as the therapist's: nothing to fix, info only
    d = evaluate(day(iv("a", "97110", 0, 30, PT), iv("b", "97110", 15, 30, PTA)), rulebook)
    assert only(d, FindingCode.SAME_CODE_OVERLAP) == (INFO, ("a", "b"))
    assert sorted(lines(d)) == [("97110", 1, ("GP", "CQ")), ("97110", 2, ("GP",))]


def test_same_clinician_with_another_patient_at_once(rulebook: Rulebook) -> None:
    busy = BusyPeriod(
        clinician_id=PT.id, start=T0 + timedelta(minutes=10), end=T0 + timedelta(minutes=40),
        code="97110",
    )  # fmt: skip
    d = evaluate(day(iv("a", "97112", 0, 30), other_patient_sessions=(busy,)), rulebook)
    assert only(d, FindingCode.CONCURRENT_PATIENTS) == (WARN, ("a",))
    group = replace(busy, code="97150")
    quiet = evaluate(day(iv("a", "97112", 0, 30), other_patient_sessions=(group,)), rulebook)
    assert "concurrent-patients" not in {f.code.value for f in quiet.findings}


def test_note_missing(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("a", "97112", 0, 30, note="")), rulebook)
    assert only(d, FindingCode.NOTE_MISSING) == (WARN, ("a",))
    assert units_by_code(d) == {"97112": 2}


def test_note_too_vague(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("a", "97112", 0, 30, note="Did balance.")), rulebook)
    sev, _ = only(d, FindingCode.NOTE_VAGUE)
    assert sev is WARN
    msg = next(f.message for f in d.findings if f.code is FindingCode.NOTE_VAGUE)
    assert "no patient response" in msg


def test_no_plan_of_care(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("a", "97112", 0, 30), plan_of_care=False), rulebook)
    assert only(d, FindingCode.NO_PLAN_OF_CARE)[0] is WARN
    unknown = evaluate(day(iv("a", "97112", 0, 30), plan_of_care=None), rulebook)
    assert "no-plan-of-care" not in {f.code.value for f in unknown.findings}


def test_unknown_code(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("a", "99213", 0, 30)), rulebook)
    assert only(d, FindingCode.UNKNOWN_CODE) == (ERR, ("a",))


def test_code_from_text_bills_with_a_warning(rulebook: Rulebook) -> None:
    d = evaluate(day(iv("a", "97112", 0, 30, code_source=CodeSource.TEXT)), rulebook)
    assert only(d, FindingCode.CODE_FROM_TEXT) == (WARN, ("a",))
    assert units_by_code(d) == {"97112": 2}


def test_unknown_payer_is_a_program_error(rulebook: Rulebook) -> None:
    import pytest

    with pytest.raises(ValueError, match="unknown payer profile"):
        evaluate(day(iv("a", "97112", 0, 30), payer="nope"), rulebook)


def test_findings_never_contain_note_text(rulebook: Rulebook) -> None:
    secret = "Mrs Example fell at her daughter's house"
    d = evaluate(day(iv("a", "97112", 0, 30, note=secret)), rulebook)
    assert all(secret not in f.message for f in d.findings)
    assert secret not in d.explain()


def test_every_line_is_explained(rulebook: Rulebook) -> None:
    ot = Clinician(id="ot-9", discipline=OT.discipline)
    d = evaluate(
        day(iv("a", "97112", 0, 24), iv("b", "97110", 24, 23), iv("c", "97530", 60, 30, ot)),
        rulebook,
    )
    for ln in d.lines:
        assert ln.intervention_ids and ln.minutes > 0 and ln.method == "cms"
        assert "payer:medicare" in ln.rule_refs and f"codes:{ln.code}" in ln.rule_refs
        assert any(r.startswith("units:") for r in ln.reasons)
        assert ln.code in d.explain()
    assert d.rulebook_version == rulebook.version


def test_one_on_one_untimed_code_in_a_group_is_an_error(rulebook: Rulebook) -> None:
    from .build import SLP

    d = evaluate(day(iv("s", "92507", 0, 40, SLP, group=True)), rulebook)
    assert only(d, FindingCode.GROUP_BILLED_ONE_ON_ONE)[0] is ERR and d.lines == ()
    ok = evaluate(day(iv("g", "97150", 0, 40, group=True)), rulebook)
    assert lines(ok) == [("97150", 1, ("GP",))]


def test_procedure_date_differing_from_its_encounter_warns(rulebook: Rulebook) -> None:
    from datetime import datetime

    utc = UTC
    enc = encounter(PT, start=datetime(2026, 3, 2, 18, 0, tzinfo=T0.tzinfo),
                    end=datetime(2026, 3, 2, 21, 0, tzinfo=T0.tzinfo))  # fmt: skip
    late = Intervention(
        id="a", code="97110", performers=(PT,), diagnosis=True, encounter_id="enc-1",
        start=datetime(2026, 3, 3, 0, 0, tzinfo=utc), end=datetime(2026, 3, 3, 0, 20, tzinfo=utc),
        note="Therapeutic exercise with resistance bands; patient tolerated well, improved reps.",
    )  # fmt: skip
    from dataclasses import replace

    d = evaluate(replace(day(late, encounters=(enc,)), service_date=late.start.date()), rulebook)  # type: ignore[union-attr]
    assert only(d, FindingCode.DATE_DIFFERS_FROM_ENCOUNTER)[0] is WARN


def test_the_group_code_to_bill_instead_comes_from_the_catalog(rulebook: Rulebook) -> None:
    """The fix names the catalog's group code for the discipline (97150 for PT and OT; the
    catalog has none for SLP), not a code written into the rule."""
    from .build import SLP

    def message(d: Decision) -> str:
        (f,) = [f for f in d.findings if f.code is FindingCode.GROUP_BILLED_ONE_ON_ONE]
        return f.message

    pt = evaluate(day(iv("a", "97110", 0, 30, group=True)), rulebook)
    assert message(pt).endswith("bill 97150 instead")
    slp = evaluate(day(iv("s", "92507", 0, 40, SLP, group=True)), rulebook)
    assert message(slp).endswith("bill the group code instead")
    assert rulebook.codes_of_kind(CodeKind.GROUP, pt.service_date) == ("97150",)


def test_the_mapping_entry_that_gave_the_code_is_among_the_line_refs(rulebook: Rulebook) -> None:
    """A code translated by a ConceptMap element (or suggested by a text match) names that
    mapping entry on its line, beside the catalog entry and the payer profile."""
    mapped = replace(iv("a", "97112", 0, 30), code_source=CodeSource.CONCEPT_MAP,
                     code_ref="conceptmap:local-therapy-to-cpt:NMR")  # fmt: skip
    (line,) = evaluate(day(mapped), rulebook).lines
    assert "conceptmap:local-therapy-to-cpt:NMR" in line.rule_refs
    assert {"codes:97112", "payer:medicare"} <= set(line.rule_refs)
    (plain,) = evaluate(day(iv("a", "97112", 0, 30)), rulebook).lines
    assert not any(r.startswith("conceptmap:") for r in plain.rule_refs)
