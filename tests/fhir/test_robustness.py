"""Odd but plausible FHIR never crashes evaluation: every fixture, mutated at random.

Each example takes a fixture bundle, picks a resource and one of its fields (at any depth), and
replaces it with a value of a wrong type (or removes it). ``evaluate_bundle`` must return: the
malformed data becomes findings or reported problems, never an exception.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.mappings import load_rulebook
from adapter.replay import evaluate_bundle

FIXTURES = Path(__file__).resolve().parent.parent.parent / "fixtures"
BUNDLES = [json.loads(p.read_text()) for p in sorted(FIXTURES.glob("*/input.json"))]
RULEBOOK = load_rulebook()
ODD = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
    st.text(max_size=12), st.just([]), st.just({}), st.just([1, "x", None]),
    st.just({"reference": 5}), st.just("2026-13-45T99:99:99"), st.just({"value": float("nan")}),
)  # fmt: skip


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k != "resourceType":
                out.append((*prefix, k))
                out += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.append((*prefix, i))
            out += paths(v, (*prefix, i))
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_fixtures_never_crash(data: st.DataObject) -> None:
    bundle = copy.deepcopy(data.draw(st.sampled_from(BUNDLES)))
    entry = data.draw(st.sampled_from(bundle["entry"]))
    resource = entry["resource"]
    options = paths(resource)
    if not options:
        return
    path = data.draw(st.sampled_from(options))
    parent = resource
    for step in path[:-1]:
        parent = parent[step]
    if data.draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(ODD)
    out, _, _ = evaluate_bundle(bundle, RULEBOOK)
    assert out["resourceType"] == "Bundle"
    json.dumps(out)  # serialisable


def _with(mutate: Any) -> Any:
    from tests.fhir.make import at, bundle, context, procedure

    res = [*context(), procedure("a", "97112", at("09:00"), at("09:30"))]
    mutate(res)
    return evaluate_bundle(bundle(*res), RULEBOOK)


def _of(res: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(r for r in res if r["resourceType"] == kind)


def test_review_reproductions_do_not_crash() -> None:
    cases = [
        lambda r: _of(r, "Coverage")["type"]["coding"][0].update(code=121),
        lambda r: _of(r, "Encounter").update(participant={"individual": "x"}),
        lambda r: _of(r, "Procedure")["code"].update(coding={"system": "x"}),
        lambda r: _of(r, "Procedure").update(note="free text"),
        lambda r: _of(r, "Procedure").update(performer=7),
        lambda r: _of(r, "Coverage").update(extension=[{"url": {"a": 1}, "valueMoney": {}}]),
        lambda r: _of(r, "Coverage").update(
            extension=[
                {
                    "url": "https://therapy-charge-adapter.org/fhir/StructureDefinition/"
                    "therapy-ytd-allowed-pt-slp",
                    "valueMoney": {"value": float("nan")},
                }
            ]
        ),
        lambda r: _of(r, "Encounter").update(period={"start": "03/02/2026 08:00"}),
    ]
    for mutate in cases:
        out, _, _ = _with(mutate)
        assert out["resourceType"] == "Bundle"


def test_numeric_sopt_code_and_nan_spend_are_treated_as_unknown() -> None:
    _, (d,), _ = _with(lambda r: _of(r, "Coverage")["type"]["coding"][0].update(code=121))
    assert d.payer == "medicare" and "coverage-type-unknown" in {f.code.value for f in d.findings}
    nan = {"value": float("nan")}
    url = "https://therapy-charge-adapter.org/fhir/StructureDefinition/therapy-ytd-allowed-pt-slp"
    _, (d,), _ = _with(
        lambda r: _of(r, "Coverage").update(extension=[{"url": url, "valueMoney": nan}])
    )
    assert "kx-spend-unknown" in {f.code.value for f in d.findings}


def test_undated_procedure_with_a_malformed_encounter_date_is_a_problem() -> None:
    from tests.fhir.make import bundle, context, procedure

    res = [*context(), procedure("ev", "97161", None, None)]
    _of(res, "Encounter")["period"] = {"start": "03/02/2026 08:00"}
    _, decisions, summary = evaluate_bundle(bundle(*res), RULEBOOK)
    assert decisions == []
    assert any("no date of service" in p.reason for p in summary.problems)


def test_procedures_without_ids_in_a_transaction_are_kept_apart() -> None:
    from tests.fhir.make import at, bundle, context, procedure

    doc = bundle(*context(), kind="transaction")
    for n, (s, e) in enumerate([("09:00", "09:30"), ("10:00", "10:30")]):
        p = procedure("x", "97110", at(s), at(e))
        del p["id"]
        full_url = f"urn:uuid:00000000-0000-0000-0000-00000000000{n}"
        request = {"method": "POST", "url": "Procedure"}
        doc["entry"].append({"fullUrl": full_url, "resource": p, "request": request})
    out, (d,), _ = evaluate_bundle(doc, RULEBOOK)
    assert [ln.units for ln in d.lines] == [4]
    text = json.dumps(out)
    assert '"reference": "None"' not in text
    assert "urn:uuid:00000000-0000-0000-0000-000000000000" in text  # the procedures, by fullUrl
