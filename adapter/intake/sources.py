"""Offline inputs: FHIR Bundle JSON files, NDJSON (bulk export) files and directories of them.

``expand`` turns the PATH arguments into an ordered list of input files; ``read`` streams one
file's resources. A file that cannot be read at all raises ``InputError``; a malformed resource
inside a good file is yielded as a ``Problem`` and the rest goes on.
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from adapter.errors import InputError
from adapter.fhir.parse import Problem
from adapter.fhir.refs import is_id

BUNDLE_TYPES = frozenset({"collection", "transaction", "batch", "searchset", "history"})
SUFFIXES = (".json", ".ndjson", ".jsonl", ".ndjson.gz", ".jsonl.gz")


@dataclass(frozen=True, slots=True)
class InputFile:
    path: Path
    name: str  # relative name used for the output file and messages


@dataclass(frozen=True, slots=True)
class Item:
    resource: dict[str, Any]
    where: str
    full_url: str | None = None


@dataclass(frozen=True, slots=True)
class Deleted:
    """A history Bundle's ``DELETE`` entry: ``kind/id`` is gone as of ``version`` (a ``meta``
    with the delete's versionId and lastModified, ranked like a resource's)."""

    kind: str
    id: str
    version: dict[str, Any]
    where: str


_DELETED_URL = re.compile(
    r"^(?:.*/)?(?P<kind>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/(?P<v>[^/]+))?$"
)
_ETAG = re.compile(r'^(?:W/)?"(?P<v>[^"]+)"$')


def _deleted(entry: dict[str, Any], where: str) -> Deleted | Problem:
    """A DELETE entry as a ``Deleted`` (a conditional or malformed one: a ``Problem``)."""
    request = entry.get("request") if isinstance(entry.get("request"), dict) else {}
    url = request.get("url") if isinstance(request, dict) else None
    match = _DELETED_URL.match(url) if isinstance(url, str) else None
    if match is None or not is_id(match["id"]):
        return Problem(where, "DELETE entry without a Type/id url (a conditional delete): skipped")
    response = entry.get("response") if isinstance(entry.get("response"), dict) else {}
    etag = _ETAG.match(str((response or {}).get("etag", "")))
    version = match["v"] or (etag["v"] if etag else None)
    modified = (response or {}).get("lastModified")
    meta = {
        **({"versionId": version} if version else {}),
        **({"lastUpdated": modified} if isinstance(modified, str) else {}),
    }
    return Deleted(match["kind"], match["id"], {"resourceType": match["kind"], "meta": meta}, where)


def _is_input(path: Path) -> bool:
    return path.name.endswith(SUFFIXES)


def expand(paths: Sequence[Path]) -> list[InputFile]:
    """Files named directly, and every input file under named directories (sorted).

    Names are relative to the one directory given, or else to the common parent of all the
    paths, so two inputs never share an output name; a file named twice is read once.
    """
    for p in paths:
        if not p.exists():
            raise InputError(f"{p}: no such file or directory")
    resolved = [p.resolve() for p in paths]
    if len(resolved) == 1 and resolved[0].is_dir():
        root = resolved[0]
    else:
        root = Path(os.path.commonpath([p.parent for p in resolved]))
    out: list[InputFile] = []
    seen: set[Path] = set()
    for p in resolved:
        found = (
            sorted(f for f in p.rglob("*") if f.is_file() and _is_input(f)) if p.is_dir() else [p]
        )
        for f in found:
            if f not in seen:
                seen.add(f)
                out.append(InputFile(path=f, name=str(f.relative_to(root))))
    return out


def _open(path: Path) -> IO[str]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def read(file: InputFile) -> Iterator[Item | Deleted | Problem]:
    """Stream the resources of one input file."""
    if ".ndjson" in file.path.name or ".jsonl" in file.path.name:
        yield from _read_ndjson(file)
    else:
        yield from _read_json(file)


def _read_ndjson(file: InputFile) -> Iterator[Item | Deleted | Problem]:
    try:
        with _open(file.path) as fh:
            for n, line in enumerate(fh, start=1):
                where = f"{file.name}:{n}"
                if not line.strip():
                    continue
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError as err:
                    yield Problem(where, f"not JSON: {err.msg}")
                    continue
                if not isinstance(obj, dict) or not isinstance(obj.get("resourceType"), str):
                    yield Problem(where, "not a FHIR resource (no resourceType)")
                    continue
                yield Item(obj, where)
    except (OSError, UnicodeDecodeError, EOFError) as err:
        raise InputError(f"{file.name}: cannot be read: {err}") from None


def _read_json(file: InputFile) -> Iterator[Item | Deleted | Problem]:
    try:
        with _open(file.path) as fh:
            doc = orjson.loads(fh.read())
    except orjson.JSONDecodeError as err:
        raise InputError(f"{file.name}: not JSON ({err.msg} at line {err.lineno})") from None
    except (OSError, UnicodeDecodeError, EOFError) as err:
        raise InputError(f"{file.name}: cannot be read: {err}") from None
    yield from document_items(doc, file.name)


def document_items(doc: Any, name: str) -> Iterator[Item | Deleted | Problem]:
    """The resources of one parsed JSON document: a Bundle's entries, or the resource itself."""
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
        raise InputError(f"{name}: not a FHIR resource or Bundle (no resourceType)")
    if doc["resourceType"] != "Bundle":
        yield Item(doc, name)
        return
    kind = doc.get("type")
    if kind not in BUNDLE_TYPES:
        raise InputError(
            f"{name}: Bundle type {kind!r} is not one of {', '.join(sorted(BUNDLE_TYPES))}"
        )
    entries = doc.get("entry") or []
    if not isinstance(entries, list):
        raise InputError(f"{name}: Bundle.entry is not a list")
    for n, entry in enumerate(entries):
        where = f"{name}#entry[{n}]"
        if not isinstance(entry, dict):
            yield Problem(where, "entry is not an object")
            continue
        request = entry.get("request")
        if isinstance(request, dict) and request.get("method") == "DELETE":
            yield _deleted(entry, where)  # the resource is gone as of that version
            continue
        search = entry.get("search")
        if isinstance(search, dict) and search.get("mode") == "outcome":
            continue
        resource = entry.get("resource")
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            yield Problem(where, "entry has no resource")
            continue
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        yield Item(resource, where, full_url)
