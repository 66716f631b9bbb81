"""The fixes a card can offer as CDS Hooks suggestions, where the fix is mechanical: the EHR
applies them when the clinician accepts (nothing is written by the adapter).

- a one-on-one code documented for a group session: the Procedure updated to the discipline's
  group code (when the catalog names exactly one);
- a code suggested from the procedure's text (or a looser ConceptMap target): the Procedure
  updated to carry that CPT coding, which the clinician confirms by accepting;
- a progress report or a plan-of-care (re)certification due or missing: a Task created for the
  patient's therapist to write it.

Nothing else is mechanical: a missing end time, too few minutes or a missing note needs the
clinician's own documentation, and modifiers and edits are the billing office's.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from typing import Any

from adapter.cds.models import Action, Suggestion
from adapter.domain import CodeKind, Decision, Finding, FindingCode, Rulebook
from adapter.fhir import codes

F = FindingCode
#: a Task created for these (what it asks for)
_TASKS = {
    F.PROGRESS_REPORT_DUE: "Write the progress report",
    F.PROGRESS_REPORT_MISSING: "Write the progress report",
    F.PLAN_RECERTIFICATION_DUE: "Have the plan of care recertified",
    F.PLAN_UNCERTIFIED: "Have the plan of care certified",
}


def suggestions(
    f: Finding,
    decision: Decision,
    procedures: Mapping[str, Mapping[str, Any]],
    rulebook: Rulebook,
) -> list[Suggestion]:
    """The mechanical fixes for ``f`` (none: the finding needs a person's judgement).
    ``procedures``: the request's Procedures by their intervention key (``Procedure/<id>``)."""
    if f.code in _TASKS:
        return [_task(f, decision, _TASKS[f.code])]
    if f.code is F.GROUP_BILLED_ONE_ON_ONE:
        return _recode(f, decision, procedures, rulebook)
    if f.code is F.CODE_FROM_TEXT:
        return _confirm(f, decision, procedures, rulebook)
    return []


def stable_uuid(key: str) -> str:
    """A UUID-shaped id fixed by ``key`` (the same card or suggestion, the same id)."""
    h = hashlib.sha256(key.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _with_cpt(proc: Mapping[str, Any], code: str, display: str) -> dict[str, Any]:
    """The Procedure with its CPT/HCPCS coding replaced by ``code`` (other codings kept)."""
    out = copy.deepcopy(dict(proc))
    concept = dict(out.get("code") or {})
    kept = [c for c in concept.get("coding") or []
            if isinstance(c, dict) and c.get("system") not in (codes.CPT, codes.HCPCS)]  # fmt: skip
    concept["coding"] = [{"system": codes.code_system(code), "code": code, "display": display},
                         *kept]  # fmt: skip
    out["code"] = concept
    return out


def _recode(
    f: Finding,
    decision: Decision,
    procedures: Mapping[str, Mapping[str, Any]],
    rulebook: Rulebook,
) -> list[Suggestion]:
    on = decision.service_date
    out = []
    for iv in f.intervention_ids:
        proc = procedures.get(iv)
        coded = rulebook.code(f.line_code, on) if f.line_code else None
        if proc is None or coded is None:
            continue
        # the group codes of the code's disciplines: one, or the fix is not mechanical
        group = {
            g for d in coded.disciplines for g in rulebook.codes_of_kind(CodeKind.GROUP, on, d)
        }
        entry = rulebook.code(group.pop(), on) if len(group) == 1 else None
        if entry is None:
            continue
        action = Action(type="update", resource=_with_cpt(proc, entry.code, entry.descriptor),
                        description=f"Code the group session as {entry.code} "
                        f"({entry.descriptor})")  # fmt: skip
        key = stable_uuid(f"recode:{iv}:{entry.code}")
        out.append(Suggestion(label=f"Code as group therapy {entry.code}", isRecommended=True,
                              uuid=key, actions=[action]))  # fmt: skip
    return out


def _confirm(
    f: Finding,
    decision: Decision,
    procedures: Mapping[str, Mapping[str, Any]],
    rulebook: Rulebook,
) -> list[Suggestion]:
    on = decision.service_date
    out = []
    for iv in f.intervention_ids:
        proc = procedures.get(iv)
        minutes = next((m for m in decision.minutes if iv in m.intervention_ids), None)
        entry = rulebook.code(minutes.code, on) if minutes is not None else None
        if proc is None or entry is None:
            continue
        action = Action(type="update", resource=_with_cpt(proc, entry.code, entry.descriptor),
                        description=f"Record {entry.code} ({entry.descriptor}) as the "
                        "procedure's code")  # fmt: skip
        key = stable_uuid(f"confirm:{iv}:{entry.code}")
        out.append(Suggestion(label=f"Confirm {entry.code} {entry.descriptor}"[:80], uuid=key,
                              actions=[action]))  # fmt: skip
    return out


def _task(f: Finding, decision: Decision, what: str) -> Suggestion:
    patient = decision.patient_id
    patient = patient if patient.startswith("Patient/") else f"Patient/{patient}"
    task = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "priority": "urgent" if f.code.value.endswith(("missing", "uncertified")) else "routine",
        "code": {"coding": [{"system": codes.CS_FINDING, "code": f.code.value}], "text": what},
        "description": f"{what}: {f.message}"[:1000],
        "for": {"reference": patient},
    }
    action = Action(type="create", description=what, resource=task)
    return Suggestion(label=what, isRecommended=True,
                      uuid=stable_uuid(f"task:{patient}:{decision.service_date}:{f.code.value}"),
                      actions=[action])  # fmt: skip
