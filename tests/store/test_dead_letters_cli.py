"""charge-adapter dead-letters list | show | retry | discard, on a real store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapter.cli import main
from adapter.store import open_store


def test_dead_letter_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    store = open_store(url, max_attempts=1)
    store.enqueue({"events": [{"kind": "Procedure", "id": "p-9", "version": "3"}]},
                  source="rest-hook", dedupe="x")  # fmt: skip
    (item,) = store.claim("w")
    assert store.fail(item.id, "FatalServerError: POST answered 422") == "dead"
    assert main(["dead-letters", "list", "--store", url]) == 0
    out = capsys.readouterr().out
    assert "Procedure/p-9" in out and "422" in out and "1 dead letter(s)" in out
    assert main(["dead-letters", "show", str(item.id), "--store", url]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["payload"]["events"][0]["id"] == "p-9" and shown["attempts"] == 1
    assert main(["dead-letters", "retry", str(item.id), "--store", url]) == 0
    assert store.counts() == {"pending": 1}
    assert main(["dead-letters", "show", str(item.id), "--store", url]) == 2  # no longer dead
    assert "no dead letter" in capsys.readouterr().err
    (item,) = store.claim("w")
    store.fail(item.id, "again")
    assert main(["dead-letters", "discard", str(item.id), "--store", url]) == 0
    assert store.counts() == {}
    assert main(["dead-letters", "retry", "--store", url]) == 2  # needs an id
    store.close()
