"""A checker of resources against the profiles of the shipped FHIR package
(``mappings/fhir-package/``), reading nothing but the package's StructureDefinitions, ValueSets
and CodeSystems — not the code that builds the resources.

It understands what the package's differentials use: cardinality (``min``/``max``) per parent
instance, ``fixed[x]`` and ``pattern[x]`` values, ``minValue[x]``, the allowed types of a choice
element, required bindings to the package's own ValueSets, and extension slices by ``url``
(``closed`` slicing: an extension no slice names is an error), each extension instance checked
against its extension StructureDefinition (its ``value[x]`` type, no nested extensions, the
binding and minimum of its value). It is no general profile validator; the package's own test
makes sure the package uses nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent.parent / "mappings" / "fhir-package"
Resource = dict[str, Any]
#: the element keys the checker understands (the package's test refuses any other)
UNDERSTOOD = {
    "id", "path", "short", "definition", "min", "max", "sliceName", "slicing", "type",
    "binding", "fixedUri", "fixedCode", "patternCodeableConcept", "minValueDecimal",
    "minValueInteger",
}  # fmt: skip


@cache
def package() -> dict[str, Resource]:
    """Every resource of the package, by canonical URL."""
    out: dict[str, Resource] = {}
    for f in sorted(PACKAGE.glob("*-*.json")):
        resource = json.loads(f.read_text())
        out[resource["url"]] = resource
    return out


def profiles_for(kind: str) -> list[Resource]:
    return [
        r
        for r in package().values()
        if r["resourceType"] == "StructureDefinition" and r["kind"] == "resource"
        and r["type"] == kind
    ]  # fmt: skip


def _codes(value_set_url: str) -> set[tuple[str, str]]:
    vs = package()[value_set_url]
    out: set[tuple[str, str]] = set()
    for inc in vs["compose"]["include"]:
        cs = package()[inc["system"]]
        out |= {(cs["url"], c["code"]) for c in cs["concept"]}
    return out


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _children(node: Any, name: str) -> list[Any]:
    """The values of child ``name`` of ``node`` (a choice ``x[x]``: whichever ``xType`` is set)."""
    if not isinstance(node, dict):
        return []
    if name.endswith("[x]"):
        stem = name[:-3]
        return [v for k, v in node.items() if k.startswith(stem) and k[len(stem) :][:1].isupper()]
    return _as_list(node.get(name))


def _at(resource: Resource, path: str) -> list[Any]:
    """The nodes at ``path`` (``Type.a.b``), flattened over repeats."""
    nodes: list[Any] = [resource]
    for name in path.split(".")[1:]:
        nodes = [child for n in nodes for child in _children(n, name)]
    return nodes


def _matches(value: Any, pattern: Any) -> bool:
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            _matches(value.get(k), p) for k, p in pattern.items()
        )
    if isinstance(pattern, list):
        items = _as_list(value)
        return all(any(_matches(i, p) for i in items) for p in pattern)
    return bool(value == pattern)


def _too_few_or_many(count: int, el: Resource) -> bool:
    mx = el.get("max", "*")
    return count < el.get("min", 0) or (mx != "*" and count > int(mx))


def _values(el: Resource, values: list[Any], where: str) -> Iterator[str]:
    for key in ("fixedUri", "fixedCode"):
        if key in el and any(v != el[key] for v in values):
            yield f"{where}: {key}: not {el[key]!r}"
    if "patternCodeableConcept" in el:
        for v in values:
            if not _matches(v, el["patternCodeableConcept"]):
                yield f"{where}: pattern: {v!r} does not match"
    for key in ("minValueDecimal", "minValueInteger"):
        if key in el and any(not isinstance(v, int | float) or v < el[key] for v in values):
            yield f"{where}: {key}: below {el[key]}"
    binding = el.get("binding")
    if binding and binding.get("strength") == "required" and binding.get("valueSet") in package():
        allowed = _codes(binding["valueSet"])
        for v in values:
            if not _bound(v, allowed):
                yield f"{where}: binding: {v!r} not in {binding['valueSet']}"


def _bound(value: Any, allowed: set[tuple[str, str]]) -> bool:
    """A code, Coding or CodeableConcept in the allowed codes (a CodeableConcept: some coding)."""
    if isinstance(value, str):
        return any(code == value for _, code in allowed)
    if isinstance(value, dict) and "coding" in value:
        return any(_bound(c, allowed) for c in _as_list(value["coding"]))
    return isinstance(value, dict) and (value.get("system"), value.get("code")) in allowed


def _extension_errors(ext: Resource, definition: Resource, where: str) -> Iterator[str]:
    """One extension instance against its extension StructureDefinition."""
    for el in definition["differential"]["element"]:
        if el["path"] == "Extension.extension" and el.get("max") == "0" and ext.get("extension"):
            yield f"{where}: nested extensions not allowed"
        if el["path"] == "Extension.value[x]":
            (allowed,) = [t["code"] for t in el["type"]]
            key = "value" + allowed[0].upper() + allowed[1:]
            present = [k for k in ext if k.startswith("value")]
            if present != [key]:
                yield f"{where}: value: {present} where {key} is required"
            else:
                yield from _values(el, [ext[key]], where)


def _slices(elements: list[Resource]) -> dict[str, dict[str, Resource]]:
    """Extension slices: the sliced path -> extension URL -> its slice element."""
    out: dict[str, dict[str, Resource]] = {}
    for el in elements:
        if "sliceName" in el:
            (url,) = el["type"][0]["profile"]
            out.setdefault(el["path"], {})[url] = el
    return out


def _slice_errors(resource: Resource, path: str, slices: dict[str, Resource]) -> Iterator[str]:
    parent = path.rsplit(".", 1)[0]
    for n, node in enumerate(_at(resource, parent)):
        where = f"{path}[{n}]"
        extensions = [e for e in _children(node, "extension") if isinstance(e, dict)]
        for url, el in slices.items():
            mine = [e for e in extensions if e.get("url") == url]
            if _too_few_or_many(len(mine), el):
                yield f"{where}: {el['sliceName']}: {len(mine)} of {el['min']}..{el['max']}"
            for e in mine:
                yield from _extension_errors(e, package()[url], f"{where}:{el['sliceName']}")
        for e in extensions:
            if e.get("url") not in slices:
                yield f"{where}: extension {e.get('url')!r} is not in the profile (closed)"


def _element_errors(resource: Resource, el: Resource) -> Iterator[str]:
    path = el["path"]
    if "." not in path:
        return
    parent, name = path.rsplit(".", 1)
    for n, node in enumerate(_at(resource, parent)):
        values = _children(node, name)
        if ("min" in el or "max" in el) and _too_few_or_many(len(values), el):
            yield f"{path}[{n}]: {len(values)} of {el.get('min', 0)}..{el.get('max', '*')}"
        if name.endswith("[x]") and "type" in el and values:
            allowed = {name[:-3] + t["code"][0].upper() + t["code"][1:] for t in el["type"]}
            if not {k for k in node if k.startswith(name[:-3])} <= allowed:
                yield f"{path}[{n}]: type not one of {sorted(allowed)}"
        yield from _values(el, values, f"{path}[{n}]")


BASE = "https://therapy-charge-adapter.org/fhir/"


def written_by_adapter(resource: Resource) -> bool:
    """A resource with the adapter's patient-day tag and, but for a Provenance, one of its
    business identifiers: everything the adapter writes carries both (what a test writes by hand
    to set a scene lacks one or the other, and is not the adapter's output)."""
    tags = _as_list((resource.get("meta") or {}).get("tag"))
    if not any(
        isinstance(t, dict) and t.get("system") == BASE + "CodeSystem/patient-day" for t in tags
    ):
        return False
    idents = [i for i in _as_list(resource.get("identifier")) if isinstance(i, dict)]
    return resource.get("resourceType") == "Provenance" or any(
        str(i.get("system", "")).startswith(BASE + "identifier/") for i in idents
    )


def profile_errors(resource: Resource) -> list[str]:
    """The resource against every package profile of its type (a Bundle: each entry's)."""
    if resource.get("resourceType") == "Bundle":
        return [
            f"entry[{i}].{e}"
            for i, entry in enumerate(resource.get("entry") or [])
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict)
            for e in profile_errors(entry["resource"])
        ]
    errors: list[str] = []
    for profile in profiles_for(str(resource.get("resourceType"))):
        elements = profile["differential"]["element"]
        found = [
            e for path, s in _slices(elements).items() for e in _slice_errors(resource, path, s)
        ]
        found += [
            e for el in elements if "sliceName" not in el for e in _element_errors(resource, el)
        ]
        errors += [f"{profile['id']}: {e}" for e in found]
    return errors
