"""charge-adapter replay / explain over files, NDJSON and directories."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from adapter.cli import main
from tests.fhir.make import NAME, at, bundle, context, procedure


def write_bundle(path: Path, *resources: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(bundle(*resources)))
    return path


def write_ndjson(path: Path, lines: list[str], compress: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "\n".join(lines) + "\n"
    if compress:
        path.write_bytes(gzip.compress(data.encode()))
    else:
        path.write_text(data)
    return path


DAY = [*context(), procedure("a", "97112", at("09:00"), at("09:24")),
       procedure("b", "97110", at("09:24"), at("09:47"))]  # fmt: skip


def test_replay_writes_one_transaction_per_input_and_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_bundle(tmp_path / "in" / "day.json", *DAY)
    assert main(["replay", str(src), "--out", str(tmp_path / "out")]) == 0
    out = json.loads((tmp_path / "out" / "day.transaction.json").read_text())
    assert out["resourceType"] == "Bundle" and out["type"] == "transaction"
    assert [e["resource"]["resourceType"] for e in out["entry"]] == [
        "ChargeItem", "ChargeItem", "Claim", "Communication", "Provenance"
    ]  # fmt: skip
    text = capsys.readouterr().out
    assert "patient-days    1 (medicare 1)" in text and "3 / 3" not in text
    assert "lines / units   2 / 3" in text and "kx-spend-unknown" in text
    assert NAME not in text


def test_replay_json_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_bundle(tmp_path / "day.json", *DAY)
    assert main(["replay", str(src), "--out", str(tmp_path / "out"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["patient_days"], summary["lines"], summary["units"]) == (1, 2, 3)
    assert summary["findings"] == {"kx-spend-unknown": 1}
    assert summary["files"][0]["output"].endswith("day.transaction.json")


def test_ndjson_bulk_export_directory_with_a_bad_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    by_type: dict[str, list[str]] = {}
    for r in DAY:
        by_type.setdefault(r["resourceType"], []).append(json.dumps(r))
    by_type["Procedure"] += ["{not json", "[1, 2]"]
    for kind, rows in by_type.items():
        gz = kind == "Patient"
        write_ndjson(tmp_path / "export" / f"{kind}.ndjson{'.gz' if gz else ''}", rows, gz)
    assert main(["replay", str(tmp_path / "export"), "--out", str(tmp_path / "out"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["patient_days"] == 1 and summary["units"] == 3
    assert summary["problem_count"] == 2
    wheres = {p["where"] for p in summary["problems"]}
    assert {"Procedure.ndjson:3", "Procedure.ndjson:4"} == wheres
    assert (tmp_path / "out" / "Procedure.transaction.json").exists()
    assert not (tmp_path / "out" / "Practitioner.transaction.json").exists()


def test_unreadable_input_fails_with_a_reason_but_the_rest_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_bundle(tmp_path / "in" / "good.json", *DAY)
    (tmp_path / "in" / "broken.json").write_text("{ nope")
    code = main(["replay", str(tmp_path / "in"), "--out", str(tmp_path / "out")])
    assert code == 4
    err = capsys.readouterr().err
    assert "broken.json: not JSON" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "out" / "good.transaction.json").exists()
    assert good.exists()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('{"resourceType": "Bundle", "type": "document", "entry": []}', "Bundle type"),
        ('{"hello": 1}', "no resourceType"),
    ],
)
def test_wrong_documents_are_unreadable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, reason: str
) -> None:
    (tmp_path / "x.json").write_text(content)
    assert main(["replay", str(tmp_path / "x.json"), "--out", str(tmp_path / "o")]) == 4
    assert reason in capsys.readouterr().err


def test_missing_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 4
    assert "no such file" in capsys.readouterr().err


def test_unknown_payer_override_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_bundle(tmp_path / "day.json", *DAY)
    assert main(["replay", str(src), "--out", str(tmp_path / "o"), "--payer", "acme"]) == 2
    assert "not a payer profile" in capsys.readouterr().err


def test_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_bundle(tmp_path / "day.json", *[r for r in DAY if r["resourceType"] != "Coverage"])
    cfg = tmp_path / "adapter.toml"
    cfg.write_text('default_payer = "commercial"\nbilling_recipient = "Organization/billing"\n')
    args = ["replay", str(src), "--out", str(tmp_path / "o"), "--json", "--config", str(cfg)]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["payers"] == {"commercial": 1} and summary["communications"] == 1
    cfg.write_text("colour = 'blue'\n")
    assert main(args) == 2
    assert "colour" in capsys.readouterr().err


def test_replaying_twice_gives_identical_bytes(tmp_path: Path) -> None:
    src = write_bundle(tmp_path / "day.json", *DAY)
    for out in ("o1", "o2"):
        assert main(["replay", str(src), "--out", str(tmp_path / out), "--json"]) == 0
    a = (tmp_path / "o1" / "day.transaction.json").read_bytes()
    assert a == (tmp_path / "o2" / "day.transaction.json").read_bytes()


def test_as_of_pins_the_clock(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_bundle(tmp_path / "day.json", *DAY)
    pinned = ["--as-of", "2026-04-01T12:00:00-05:00", "--json"]
    assert main(["replay", str(src), "--out", str(tmp_path / "o"), *pinned]) == 0
    out = json.loads((tmp_path / "o" / "day.transaction.json").read_text())
    (claim,) = [e["resource"] for e in out["entry"] if e["resource"]["resourceType"] == "Claim"]
    assert claim["created"] == "2026-04-01"
    capsys.readouterr()
    for bad in ("yesterday", "2026-04-01T12:00:00"):
        assert main(["replay", str(src), "--out", str(tmp_path / "x"), "--as-of", bad]) == 2
        assert "--as-of" in capsys.readouterr().err


def test_explain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_bundle(tmp_path / "day.json", *DAY)
    assert main(["explain", str(src), "--encounter", "e1"]) == 0
    text = capsys.readouterr().out
    assert "total 47 min -> 3 unit(s)" in text
    assert "97112 x2 GP" in text and "GP: delivered under a PT plan of care" in text
    assert "kx-spend-unknown" in text
    assert main(["explain", str(src), "--encounter", "other"]) == 0
    assert "no patient-day matched" in capsys.readouterr().out


def test_several_directories_with_the_same_file_names_do_not_collide(tmp_path: Path) -> None:
    a = write_bundle(tmp_path / "in" / "a" / "input.json", *DAY)
    other = [*context(patient="p2"), procedure("x", "97110", at("09:00"), at("09:30"),
                                               patient="Patient/p2")]  # fmt: skip
    b = write_bundle(tmp_path / "in" / "b" / "input.json", *other)
    out = tmp_path / "out"
    assert main(["replay", str(a.parent), str(b.parent), str(a), "--out", str(out)]) == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.json")) == [
        "a/input.transaction.json", "b/input.transaction.json"
    ]  # fmt: skip


def _kx_days() -> tuple[dict[str, Any], ...]:
    """One Medicare patient, two days of 97110 30 min + 97140 15 min (each day allows $50.99 +
    $20.70 = $71.69 from the synthetic fee schedule), the later day first in the input."""

    def one(prefix: str, date: str) -> list[dict[str, Any]]:
        return [
            procedure(f"{prefix}a", "97110", at("09:00", date), at("09:30", date), encounter=None),
            procedure(f"{prefix}b", "97140", at("09:30", date), at("09:45", date), encounter=None),
        ]

    return (*context(), *one("d2", "2026-03-03"), *one("d1", "2026-03-02"))


def test_replay_carries_the_years_kx_total_across_the_days_in_date_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Opening balance $2,400.00 (the site's file): 2026-03-02 reaches $2,471.69, no KX;
    2026-03-03 starts there, 97110 takes it to $2,522.68: KX on both of its lines."""
    src = write_bundle(tmp_path / "days.json", *_kx_days())
    opening = tmp_path / "kx.csv"
    opening.write_text("patient,year,pt_slp,ot\np1,2026,2400.00,0\n")
    args = ["replay", str(src), "--out", str(tmp_path / "o"), "--kx-opening", str(opening)]
    assert main(args) == 0
    out = json.loads((tmp_path / "o" / "days.transaction.json").read_text())
    claims = {
        e["resource"]["item"][0]["servicedDate"]: e["resource"]
        for e in out["entry"]
        if e["resource"]["resourceType"] == "Claim"
    }

    def kx(claim: dict[str, Any]) -> list[bool]:
        return [any(m["coding"][0]["code"] == "KX" for m in i.get("modifier", []))
                for i in claim["item"]]  # fmt: skip

    assert kx(claims["2026-03-02"]) == [False, False]
    assert kx(claims["2026-03-03"]) == [True, True]
    assert main(["explain", str(src), "--kx-opening", str(opening)]) == 0
    text = capsys.readouterr().out
    assert "before the day $2471.69 (opening $2400.00 + the adapter's earlier lines $71.69)" in text
    # without the opening balance: not known, never guessed
    assert main(["replay", str(src), "--out", str(tmp_path / "u"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["findings"].get("kx-spend-unknown") == 2


def test_a_bad_opening_balance_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_bundle(tmp_path / "days.json", *_kx_days())
    opening = tmp_path / "kx.csv"
    opening.write_text("patient,year,pt_slp,ot\np1,2026,24OO,0\n")
    assert main(["replay", str(src), "--out", str(tmp_path / "o"), "--kx-opening",
                 str(opening)]) == 2  # fmt: skip
    assert "kx.csv: line 2: '24OO' is not an amount" in capsys.readouterr().err


def test_worker_processes_give_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(issue 19) the days evaluated by 1, 2 or 3 processes: every output file the same, byte
    for byte, and the same summary."""
    from adapter import replay as replay_mod
    from adapter.mappings import load_rulebook
    from adapter.pipeline import Options
    from bench.generate import generate

    monkeypatch.setattr(replay_mod, "PARALLEL_FROM", 10)
    monkeypatch.setattr(replay_mod, "TASK_DAYS", 7)  # many small tasks: order is tested
    generate(tmp_path / "in", 600, seed=3)
    pools: list[int] = []
    real = replay_mod._in_parallel
    monkeypatch.setattr(replay_mod, "_in_parallel",
                        lambda *a: (pools.append(a[-1]), real(*a))[1])  # fmt: skip
    outs = {}
    for n in (1, 2, 3):
        summary = replay_mod.replay([tmp_path / "in"], tmp_path / f"out{n}", load_rulebook(),
                                    Options(), workers=n)  # fmt: skip
        files = sorted((tmp_path / f"out{n}").iterdir())
        outs[n] = ({f.name: f.read_bytes() for f in files},
                   {k: v for k, v in summary.as_json().items()
                    if k not in ("files", "workers", "worker_peak_rss_mb")})  # fmt: skip
    assert outs[1][1]["patient_days"] > 10 and outs[1][0]
    assert outs[1] == outs[2] == outs[3]
    assert pools == [2, 3]  # the worker runs took the process pool
