"""The README's examples run as written, and its set-up commands stay in step with CI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_readme_opens_with_the_two_setup_commands() -> None:
    first_two = blocks("bash")[:2]
    assert len(first_two) == 2
    assert README.index("```bash") < README.index("##")
    assert "pip install -e ." in first_two[0] and "charge-adapter" in first_two[0]
    assert "python -m pytest" in first_two[1]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    test_cmd = blocks("bash")[1].strip().split("&&")[-1].strip()
    assert test_cmd in ci


def test_python_examples_run(capsys: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    examples = blocks("python")
    assert examples
    for code in examples:
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
