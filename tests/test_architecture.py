"""The rules core stays pure, and dependencies point one way (style guide §1-§4)."""

from __future__ import annotations

import ast
from pathlib import Path

import adapter

PACKAGE = Path(adapter.__file__).parent
PURE = [PACKAGE / "domain.py", *sorted((PACKAGE / "rules").glob("*.py"))]

# Standard-library modules the pure core may use: types, math and data structures only.
ALLOWED_STDLIB = {
    "__future__", "collections", "dataclasses", "datetime", "decimal", "enum", "fractions",
    "functools", "itertools", "math", "operator", "re", "types", "typing",
}  # fmt: skip
CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_pure_core_imports_only_domain_and_safe_stdlib() -> None:
    assert len(PURE) >= 6
    for path in PURE:
        for name in imports(path):
            top = name.split(".")[0]
            if top == "adapter":
                assert name == "adapter.domain" or name.startswith("adapter.rules"), (path, name)
            else:
                assert top in ALLOWED_STDLIB, f"{path.name} imports {name}"


def test_pure_core_reads_no_clock_environment_or_files() -> None:
    for path in PURE:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                assert node.func.attr not in CLOCK_CALLS, f"{path.name}:{node.lineno} clock"
            if isinstance(node, ast.Name):
                assert node.id not in {"open", "print", "input", "getenv"}, (
                    f"{path.name}:{node.lineno} uses {node.id}"
                )


def test_the_check_itself_catches_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import logging\nfrom os import environ\n")
    assert {"logging", "os"} <= imports(bad)


def test_fhir_models_only_imported_under_adapter_fhir() -> None:
    for path in PACKAGE.rglob("*.py"):
        if "fhir" in path.relative_to(PACKAGE).parts[:1]:
            continue
        for name in imports(path):
            assert not name.startswith("fhir.resources"), f"{path} imports {name}"


def test_public_api_is_exported() -> None:
    for name in adapter.__all__:
        assert hasattr(adapter, name), name
    assert {"load_rulebook", "evaluate", "Decision", "ServiceDay"} <= set(adapter.__all__)
