"""Replay the real-world corpus (``tests/realworld/``) and compare with its hand-derived
``expected.toml``.

Each case's input is shaped the way a real system writes FHIR R4 (the specification's own
examples, Epic-like, Oracle Health-like, Synthea, NDJSON bulk export, a history bundle, ...);
its expectations were derived by hand from ``../shared/domain.md`` (see
``tests/realworld/README.md``). Per patient-day the payer profile, the lines and the finding
codes must match; the summary must account for every procedure (skipped, not therapy, by
status) and report exactly the input problems the case expects (none silently dropped, none
invented); every resource the replay writes must pass the official R4 JSON schema and FHIRPath
invariants and, where the adapter wrote it, the shipped profiles.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adapter.domain import Rulebook
from adapter.mappings import load_rulebook
from adapter.replay import Summary
from tests.conformance import conformance_errors
from tests.profiles import profile_errors, written_by_adapter
from tests.test_fixtures import run

CORPUS = Path(__file__).resolve().parent / "realworld"
CASES = sorted(p.parent for p in CORPUS.glob("*/expected.toml"))
INPUT_SUFFIXES = (".json", ".ndjson")


@pytest.fixture(scope="module")
def rulebook() -> Rulebook:
    return load_rulebook()


def replay_case(
    case: Path, out: Path, rulebook: Rulebook, expected: dict[str, Any]
) -> tuple[dict[tuple[str, str], dict[str, Any]], Summary]:
    """Replay one case folder (in its site zone, when it names one); per patient-day its payer,
    lines, findings and rule refs."""
    zone = ZoneInfo(expected["timezone"]) if "timezone" in expected else None
    days, summary = run([case], out, rulebook, zone)
    return days, summary


def test_the_corpus_has_ten_to_fourteen_cases() -> None:
    assert 10 <= len(CASES) <= 14


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Path, rulebook: Rulebook, tmp_path: Path) -> None:
    expected = tomllib.loads((case / "expected.toml").read_text())
    days, summary = replay_case(case, tmp_path, rulebook, expected)
    assert not summary.unreadable, summary.unreadable

    # per patient-day: payer, lines, findings
    want = {
        (d["patient"], str(d["date"])): {
            "payer": d["payer"],
            "lines": sorted(d["lines"]),
            "findings": sorted(set(d["findings"])),
        }
        for d in expected.get("day", [])
    }
    got = {k: {f: v[f] for f in ("payer", "lines", "findings")} for k, v in days.items()}
    assert got == want
    for d in expected.get("day", []):  # the ConceptMap element / text match a line came from
        refs = days[(d["patient"], str(d["date"]))]["refs"]
        for line, names in d.get("line_refs", {}).items():
            assert set(names) <= refs.get(line, set()), (line, sorted(refs.get(line, set())))

    # every procedure accounted for
    skipped = summary.not_therapy + sum(
        n for status, n in summary.procedures.items() if status != "completed"
    )
    assert skipped == expected.get("skipped_procedures", 0)
    assert summary.not_therapy == expected.get("not_therapy", 0)
    if "procedures" in expected:
        assert dict(summary.procedures) == expected["procedures"]
    if "superseded" in expected:
        assert summary.superseded == expected["superseded"]
    if "deleted" in expected:
        assert summary.deleted == expected["deleted"]

    # every input problem reported, and only those
    assert_problems(summary, [tuple(p) for p in expected.get("problems", [])])

    # what was written
    bundles = [json.loads(p.read_text()) for p in sorted(tmp_path.rglob("*.transaction.json"))]
    assert bundles, "no output written"
    resources = [e["resource"] for b in bundles for e in b["entry"]]
    assert_conforms(bundles, resources)
    claims = [r for r in resources if r["resourceType"] == "Claim"]
    if "place_of_service" in expected:
        places = {
            c["code"]
            for claim in claims
            for item in claim["item"]
            for c in item.get("locationCodeableConcept", {}).get("coding", [])
        }
        assert places == {expected["place_of_service"]}


def assert_problems(summary: Summary, wanted: list[tuple[str, ...]]) -> None:
    """The summary's input problems are exactly the expected ones: each expected
    ``(where part, reason part)`` matches a distinct reported problem, and there are no more."""
    reported = [(p.where, p.reason) for p in summary.problems]
    assert summary.problem_count == len(wanted), reported
    left = list(reported)
    for where, reason in wanted:
        match = next((p for p in left if where in p[0] and reason in p[1]), None)
        assert match is not None, ((where, reason), reported)
        left.remove(match)


def assert_conforms(bundles: list[dict[str, Any]], resources: list[dict[str, Any]]) -> None:
    """Every output bundle and resource: R4 schema + invariants; the adapter's own resources
    also against the shipped profiles."""
    failures: dict[str, list[str]] = {}
    for n, bundle in enumerate(bundles):
        if errors := conformance_errors(bundle):
            failures[f"bundle[{n}]"] = errors[:5]
    written = 0
    for r in resources:
        errors = conformance_errors(r)
        if written_by_adapter(r):
            written += 1
            errors += profile_errors(r)
        if errors:
            failures[f"{r['resourceType']}/{r.get('id', '?')}"] = errors[:5]
    assert failures == {}
    assert written == len(resources), "every output resource carries the adapter's identity"


def test_readme_names_every_case() -> None:
    readme = (CORPUS / "README.md").read_text()
    sections = re.findall(r"^## (\S+)\s*$", readme, flags=re.M)
    folders = sorted(p.name for p in CORPUS.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert sorted(sections) == folders
    assert [c.name for c in CASES] == folders, "every case folder has an expected.toml"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_is_synthetic(case: Path) -> None:
    """Invented people only: every Patient and Practitioner name says 'Test', and every NPI
    starts with 999 (no real NPI does: they start with 1 or 2)."""
    resources: list[dict[str, Any]] = []
    for path in sorted(case.iterdir()):
        if path.suffix == ".ndjson":
            for line in path.read_text().splitlines():
                try:
                    resources.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # the truncated line of a cut-short export
        elif path.suffix == ".json":
            doc = json.loads(path.read_text())
            resources += [e["resource"] for e in doc.get("entry", []) if "resource" in e]
    assert any(path.suffix in INPUT_SUFFIXES for path in case.iterdir())
    kinds = Counter(r.get("resourceType") for r in resources)
    assert kinds["Procedure"] > 0
    for r in resources:
        inner = [c for c in r.get("contained", []) if isinstance(c, dict)]
        for res in [r, *inner]:
            if res.get("resourceType") in ("Patient", "Practitioner"):
                for n in res.get("name", []):
                    text = n.get("text") or " ".join([*n.get("given", []), n.get("family", "")])
                    assert "Test" in text, text
            for ident in res.get("identifier", []):
                if ident.get("system") == "http://hl7.org/fhir/sid/us-npi":
                    assert ident["value"].startswith("999"), ident
