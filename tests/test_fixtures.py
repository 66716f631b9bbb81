"""Replay every case in fixtures/ and compare with its hand-written expected.toml.

Each case folder holds an input (Bundle JSON or NDJSON files) and ``expected.toml``: per
patient-day the payer profile, the billable lines and every finding code. Every resource the
replay writes must validate against the R4B models.
"""

from __future__ import annotations

import json
import tomllib
from collections import Counter
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

import pytest

from adapter.domain import Rulebook
from adapter.fhir.validate import validation_errors
from adapter.mappings import load_rulebook
from adapter.pipeline import DayResult, Options
from adapter.replay import replay

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CASES = sorted(p.parent for p in FIXTURES.glob("*/expected.toml"))
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def rulebook() -> Rulebook:
    return load_rulebook()


def line_text(code: str, units: int, modifiers: tuple[str, ...]) -> str:
    return " ".join([code, f"x{units}", *modifiers])


def run(
    paths: list[Path], out: Path, rulebook: Rulebook, zone: tzinfo | None = None
) -> tuple[dict[tuple[str, str], Any], Any]:
    days: dict[tuple[str, str], Any] = {}

    def on_day(result: DayResult) -> None:
        d = result.decision
        if d is None:
            return
        refs: dict[str, set[str]] = {}
        for ln in d.lines:
            refs.setdefault(line_text(ln.code, ln.units, ln.modifiers), set()).update(ln.rule_refs)
        days[(d.patient_id, d.service_date.isoformat())] = {
            "payer": d.payer,
            "lines": sorted(line_text(ln.code, ln.units, ln.modifiers) for ln in d.lines),
            "findings": sorted({f.code.value for f in d.findings}),
            "refs": refs,
            "total": str(d.total) if d.total is not None else None,
            "allowed": str(d.allowed_total) if d.allowed_total is not None else None,
        }

    summary = replay(paths, out, rulebook, Options(evaluated_at=NOW, zone=zone), on_day=on_day)
    return days, summary


def test_there_are_at_least_30_cases() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fixture(case: Path, rulebook: Rulebook, tmp_path: Path) -> None:
    expected = tomllib.loads((case / "expected.toml").read_text())
    days, summary = run([case], tmp_path, rulebook)
    assert not summary.unreadable
    want = {
        (d["patient"], str(d["date"])): {
            "payer": d["payer"],
            "lines": sorted(d["lines"]),
            "findings": sorted(set(d["findings"])),
        }
        for d in expected.get("day", [])
    }
    assert {k: {f: v[f] for f in ("payer", "lines", "findings")} for k, v in days.items()} == want
    for d in expected.get("day", []):  # the day's money, where the case states it
        got_day = days[(d["patient"], str(d["date"]))]
        for what in ("total", "allowed"):
            if what in d:
                assert got_day[what] == d[what], (d["date"], what)
    for d in expected.get("day", []):  # rule references a line must carry (ConceptMap, text)
        got = days[(d["patient"], str(d["date"]))]["refs"]
        for line, refs in d.get("line_refs", {}).items():
            assert set(refs) <= got.get(line, set()), (line, sorted(got.get(line, set())))
    skipped = summary.not_therapy + sum(
        n for status, n in summary.procedures.items() if status != "completed"
    )
    assert skipped == expected.get("skipped_procedures", 0)
    for out in tmp_path.rglob("*.transaction.json"):
        bundle = json.loads(out.read_text())
        assert validation_errors(bundle) == []
        for entry in bundle["entry"]:
            assert validation_errors(entry["resource"]) == [], entry["resource"]["resourceType"]


def test_whole_library_replays_byte_identically_and_like_each_case(
    rulebook: Rulebook, tmp_path: Path
) -> None:
    first, _summary = run([FIXTURES], tmp_path / "a", rulebook)
    second, _ = run([FIXTURES], tmp_path / "b", rulebook)
    assert first == second
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.json"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.json"))
    assert files_a == files_b and files_a
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    expected_days: Counter[tuple[str, str]] = Counter()
    for case in CASES:
        for d in tomllib.loads((case / "expected.toml").read_text()).get("day", []):
            expected_days[(d["patient"], str(d["date"]))] += 1
    assert set(first) == set(expected_days)
    assert max(expected_days.values(), default=1) == 1, "patient ids must be unique across cases"


def test_no_phi_in_logs_when_replaying_the_fixtures(rulebook: Rulebook, tmp_path: Path) -> None:
    import io

    from adapter.observe import configure_logging

    stream = io.StringIO()
    configure_logging("DEBUG", stream)
    summary = replay([FIXTURES], tmp_path, rulebook, Options(evaluated_at=NOW))
    secrets: set[str] = set()
    for path in FIXTURES.rglob("*.json"):
        for entry in json.loads(path.read_text()).get("entry", []):
            r = entry["resource"]
            secrets |= {n.get("text") or " ".join(n.get("given", [])) for n in r.get("name", [])
                        if r["resourceType"] == "Patient"}  # fmt: skip
            if r.get("birthDate"):
                secrets.add(r["birthDate"])
            secrets |= {n["text"] for n in r.get("note", []) if n.get("text")}
    secrets.discard("")
    assert len(secrets) > 50 and summary.patient_days > 50
    logs = stream.getvalue()
    printed = summary.table() + json.dumps(summary.as_json())
    outputs = "".join(p.read_text() for p in tmp_path.rglob("*.json"))
    for secret in secrets:
        assert secret not in logs and secret not in printed and secret not in outputs, secret
