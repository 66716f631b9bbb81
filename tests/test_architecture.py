"""The layers of ``adapter/`` and the rules between them (style guide §1-§4), read from the
imports of every module, and the public API.

Each layer names the layers it may import; anything else is a violation. The drivers
(``pipeline``, ``replay``, ``service``, ``cli``) are the only modules that wire stages together:
no other layer imports them. Every rule is also checked the other way: a module that breaks it
is caught (so a rule cannot pass by matching nothing).
"""

from __future__ import annotations

import ast
import types
from pathlib import Path

import pytest

import adapter

PACKAGE = Path(adapter.__file__).parent
DRIVERS = frozenset({"pipeline", "replay", "service", "cli", "api", "cds", "workbench"})

ALL_LAYERS = frozenset(
    {"domain", "rules", "errors", "observe", "mappings", "fhir", "emr", "store", "intake",
     "web", "config", "ledger", "hl7v2", "x12", "delivery", "pipeline", "replay", "service",
     "cli", "api", "cds", "workbench"}
)  # fmt: skip
#: layer -> the adapter layers it may import (itself always allowed)
ALLOWED: dict[str, frozenset[str]] = {
    "domain": frozenset(),
    "rules": frozenset({"domain"}),
    "errors": frozenset(),
    "observe": frozenset(),
    "mappings": frozenset({"domain", "errors"}),
    "fhir": frozenset({"domain", "rules", "errors"}),
    # the billing formats beside FHIR: the same decision and day facts as HL7 v2 and X12 837P
    "hl7v2": frozenset({"domain", "errors", "fhir"}),
    "x12": frozenset({"domain", "errors", "fhir"}),
    # the delivery targets' outboxes: compose what changed, send it, record the answer
    "delivery": frozenset({"domain", "errors", "fhir", "hl7v2", "x12", "store"}),
    "emr": frozenset({"domain", "errors", "fhir"}),
    "store": frozenset({"errors"}),
    "intake": frozenset({"domain", "errors", "fhir", "emr", "store", "observe"}),
    # the HTTP front door: moves bytes to and from the intake's receiver and the ops checks
    "web": frozenset({"errors", "intake", "observe"}),
    "config": frozenset({"errors", "emr"}),
    # the shell's KX running total (history the rules are given, never read by them)
    "ledger": frozenset({"domain", "errors"}),
    "pipeline": frozenset({"domain", "errors", "fhir", "emr", "intake", "ledger", "rules"}),
    "replay": frozenset(
        {"domain", "errors", "fhir", "hl7v2", "x12", "intake", "ledger", "pipeline", "rules"}
    ),
    "service": frozenset(
        {
            "domain",
            "errors",
            "fhir",
            "emr",
            "intake",
            "store",
            "observe",
            "ledger",
            "pipeline",
            "rules",
            "delivery",
            "workbench",  # the day's workbench record, the billing office's decisions
        }
    ),
    # the billing office's workbench: its pages over the store, its records of synced days
    "workbench": frozenset(
        {"domain", "errors", "fhir", "emr", "observe", "pipeline", "rules", "store", "web"}
    ),
    # the CDS Hooks services: the draft day through the same pipeline, the store's history
    "cds": frozenset(
        {"domain", "errors", "fhir", "emr", "ledger", "pipeline", "replay", "rules", "store"}
    ),
    # the command line may use everything, and the package's version
    "cli": frozenset(ALL_LAYERS - {"cli", "api"} | {"__init__"}),
    # the library API (README "Library use") and the package that exports it
    "api": frozenset({"domain", "fhir", "pipeline", "replay"}),
    "__init__": frozenset({"api", "domain", "errors", "mappings", "rules"}),
}

# Standard-library modules the pure core may use: types, math and data structures only.
ALLOWED_STDLIB = {
    "__future__", "collections", "dataclasses", "datetime", "decimal", "enum", "fractions",
    "functools", "itertools", "math", "operator", "re", "types", "typing",
}  # fmt: skip
CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def layer_of(path: Path) -> str:
    """The layer a module belongs to: its top folder under adapter/, or its module name."""
    first = path.relative_to(PACKAGE).parts[0]
    return first.removesuffix(".py")


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "adapter":  # from adapter import replay (a layer) or a name
                found |= {
                    f"adapter.{a.name}" if a.name in ALLOWED else "adapter.__init__"
                    for a in node.names
                }
    return found


def adapter_layers(names: set[str]) -> set[str]:
    return {n.split(".")[1] for n in names if n.startswith("adapter.")}


def violations(layer: str, names: set[str]) -> set[str]:
    """The adapter layers ``names`` reaches that ``layer`` may not import."""
    return adapter_layers(names) - ALLOWED[layer] - {layer}


def test_every_module_belongs_to_a_known_layer() -> None:
    assert set(ALLOWED) == ALL_LAYERS | {"__init__"}
    unknown = {layer_of(p) for p in modules()} - set(ALLOWED)
    assert not unknown, f"add the new layer(s) to ALLOWED: {sorted(unknown)}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_layers(path: Path) -> None:
    assert not violations(layer_of(path), imports(path))


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("rules", "adapter.fhir.parse"),
        ("rules", "adapter.mappings"),
        ("domain", "adapter.rules"),
        ("fhir", "adapter.emr.client"),
        ("fhir", "adapter.intake.spool"),
        ("emr", "adapter.intake.events"),
        ("emr", "adapter.pipeline"),
        ("intake", "adapter.pipeline"),
        ("intake", "adapter.replay"),
        ("store", "adapter.fhir"),
        ("pipeline", "adapter.service"),
        ("replay", "adapter.service"),
        ("service", "adapter.cli"),
    ],
)
def test_the_check_catches_a_forbidden_import(layer: str, forbidden: str) -> None:
    assert violations(layer, {forbidden}) == {forbidden.split(".")[1]}


def test_only_drivers_import_drivers() -> None:
    for layer, allowed in ALLOWED.items():
        if layer not in DRIVERS | {"__init__"}:
            assert not (allowed & DRIVERS), layer


def test_the_rules_core_is_pure() -> None:
    pure = sorted((PACKAGE / "domain").glob("*.py")) + sorted((PACKAGE / "rules").glob("*.py"))
    assert len(pure) >= 8
    for path in pure:
        for name in imports(path):
            if not name.startswith("adapter"):
                assert name.split(".")[0] in ALLOWED_STDLIB, f"{path.name} imports {name}"


def test_pure_core_reads_no_clock_environment_or_files() -> None:
    for path in sorted((PACKAGE / "domain").glob("*.py")) + sorted(
        (PACKAGE / "rules").glob("*.py")
    ):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                assert node.func.attr not in CLOCK_CALLS, f"{path.name}:{node.lineno} clock"
            if isinstance(node, ast.Name):
                assert node.id not in {"open", "print", "input", "getenv"}, (
                    f"{path.name}:{node.lineno} uses {node.id}"
                )


def test_the_check_itself_catches_a_forbidden_stdlib_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import logging\nfrom os import environ\nfrom adapter import replay\n")
    assert {"logging", "os", "adapter.replay"} <= imports(bad)


def test_fhir_models_only_imported_under_adapter_fhir() -> None:
    for path in modules():
        if layer_of(path) == "fhir":
            continue
        for name in imports(path):
            assert not name.startswith("fhir.resources"), f"{path} imports {name}"


def test_public_api_is_exactly_all() -> None:
    """``adapter.__all__`` lists every public name of the package and nothing else (the httpx
    ``test_exported_members`` model); submodules are not names of the API."""
    public = {
        name
        for name, value in vars(adapter).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(adapter.__all__) - {"__version__"}
    for name in adapter.__all__:
        assert hasattr(adapter, name), name
    assert {"load_rulebook", "evaluate", "Decision", "ServiceDay"} <= set(adapter.__all__)


def test_every_folder_of_the_package_is_a_regular_package() -> None:
    """A folder without ``__init__.py`` would be left out of the wheel by setuptools."""
    for folder in {p.parent for p in modules()}:
        assert (folder / "__init__.py").is_file(), folder
