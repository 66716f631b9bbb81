"""The ``charge-adapter`` command line, called through ``main(argv) -> int``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from adapter import __version__
from adapter.cli import main
from adapter.mappings import DEFAULT_MAPPINGS_DIR, load_rulebook

CMS_DATA = Path(__file__).parent / "data" / "cms"


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(DEFAULT_MAPPINGS_DIR, target)
    return target


def test_check_mappings_shipped(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-mappings"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == f"mappings OK: {DEFAULT_MAPPINGS_DIR}"
    assert load_rulebook().version in out
    assert "rulebook version  2026.5+" in out
    assert "payer profiles    commercial, medicaid, medicare, tricare" in out
    assert "NCCI PTP edits    29 (0 from CMS files)" in out
    assert "MUE values        0" in out


def test_check_mappings_with_cms_files(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("ccipra-sample-f1.txt", "MCR_MUE_PractitionerServices_sample.csv"):
        shutil.copy(CMS_DATA / name, copy / "cms" / name)
    manifest = copy / "rulebook.toml"
    manifest.write_text(
        manifest.read_text(encoding="utf-8")
        + '\n[[cms_file]]\nkind = "ptp"\npath = "cms/ccipra-sample-f1.txt"\n'
        'effective_from = 2025-10-01\nsource = "CMS PTP (test sample)"\n'
        '\n[[cms_file]]\nkind = "mue"\npath = "cms/MCR_MUE_PractitionerServices_sample.csv"\n'
        'effective_from = 2025-10-01\nsource = "CMS MUE (test sample)"\n',
        encoding="utf-8",
    )
    assert main(["check-mappings", str(copy)]) == 0
    out = capsys.readouterr().out
    assert f"mappings OK: {copy}" in out
    assert load_rulebook(copy).version in out
    assert "NCCI PTP edits    36 (7 from CMS files)" in out
    assert "MUE values        8" in out


def test_check_mappings_corrupted_copy(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    payers = copy / "payers.toml"
    payers.write_text(
        payers.read_text(encoding="utf-8").replace('PT = "GP"', 'PT = "GO"', 1), encoding="utf-8"
    )
    assert main(["check-mappings", str(copy)]) == 3
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("charge-adapter: MappingError: ")
    assert str(payers) in lines[0]
    assert "[[payer]] #1 (medicare)" in lines[0]
    assert "discipline PT must carry GP, not GO" in lines[0]


def test_check_mappings_invalid_toml_is_one_line(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (copy / "limits.toml").write_text("[evaluations\nper_discipline_per_day = 1\n", "utf-8")
    assert main(["check-mappings", str(copy)]) == 3
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert str(copy / "limits.toml") in lines[0]
    assert "not valid TOML" in lines[0]


def test_check_mappings_missing_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-mappings", str(tmp_path / "nowhere")]) == 3
    err = capsys.readouterr().err
    assert f"{tmp_path / 'nowhere'}: (directory): not a directory" in err


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "charge-adapter" in out
    assert "check-mappings" in out


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"charge-adapter {__version__}"


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "usage: charge-adapter" in out
    assert "check-mappings" in out


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["bill-everything"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_backfill_needs_bill_from_and_stops_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without bill_from a backfill would bill the past: refused before any request."""
    cfg = tmp_path / "adapter.toml"
    base = f'emr_base_url = "http://127.0.0.1:9/fhir"\nstate_dir = "{tmp_path / "state"}"\n'
    cfg.write_text(base)
    assert main(["backfill", "--config", str(cfg), "--since", "2026-01-01"]) == 2
    assert "backfill needs bill_from" in capsys.readouterr().err
    cfg.write_text(base + "bill_from = 2026-01-01\n")
    assert main(["backfill", "--config", str(cfg), "--since", "2026-01-01"]) == 2
    assert "--since 2026-01-01 is not before bill_from 2026-01-01" in capsys.readouterr().err


def test_outbox_list_show_and_retry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """(issue 16) the operators' view of the delivery targets' outboxes."""
    from adapter.store import open_store

    db = tmp_path / "state" / "adapter.db"
    db.parent.mkdir()
    store = open_store(db)
    ok = store.outbox_queue("billing", "p1:2026-03-02", 1, {"lines": []})
    bad = store.outbox_queue("billing", "p2:2026-03-02", 1, {"lines": []})
    assert ok is not None and bad is not None
    assert store.outbox_claim("billing") is not None and store.outbox_claim("billing") is not None
    store.outbox_set_body(ok, "C1", "MSH|a\rPID|b")
    store.outbox_done(ok, "acked", "AA", None)
    store.outbox_done(bad, "rejected", "AR", "AR 204 patient unknown")
    store.close()
    cfg = tmp_path / "adapter.toml"
    cfg.write_text(f'state_dir = "{tmp_path / "state"}"\n')
    assert main(["outbox", "list", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "billing              acked      1" in out and "AR 204 patient unknown" in out
    assert main(["outbox", "show", str(ok), "--config", str(cfg)]) == 0
    assert "MSH|a\nPID|b" in capsys.readouterr().out
    assert main(["outbox", "retry", str(ok), "--config", str(cfg)]) == 2  # only a rejected one
    assert "only a rejected one" in capsys.readouterr().err
    assert main(["outbox", "retry", str(bad), "--config", str(cfg)]) == 0
    assert main(["outbox", "list", "--status", "pending", "--config", str(cfg)]) == 0
    assert "p2:2026-03-02" in capsys.readouterr().out
    assert main(["outbox", "show", "999", "--config", str(cfg)]) == 2
