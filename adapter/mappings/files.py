"""Reading the mappings directory: its TOML files, the fingerprint of their bytes, and the
``MappingError`` text for a file or an entry that fails validation.

Every file read into the rulebook is fingerprinted, in the order it is read (the TOML files in
``FILES`` order, then the CMS files in manifest order, then the ConceptMaps by name), so the
rulebook version names byte-identical rules.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from adapter.errors import MappingError

MANIFEST = "rulebook.toml"
FILES = (MANIFEST, "codes.toml", "payers.toml", "ncci_ptp.toml", "limits.toml",
         "documentation.toml", "modifiers.toml", "code_systems.toml", "fhir.toml")  # fmt: skip
#: read when present (a site without prices leaves it out)
OPTIONAL_FILES = ("money.toml", "clocks.toml")

M = TypeVar("M", bound=BaseModel)


class Fingerprint:
    """A SHA-256 over ``name NUL bytes NUL`` of every file read, in the order they are added."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def add(self, name: str, path: Path) -> None:
        """Fold the bytes of ``path``, under ``name``, into the fingerprint."""
        self._digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")

    def short(self) -> str:
        """The first 12 hex digits: the part after ``+`` in the rulebook version."""
        return self._digest.hexdigest()[:12]


@dataclass(frozen=True)
class MappingsDir:
    """The mappings directory as read: each TOML file's document by name, and the fingerprint
    (which the CMS files and ConceptMaps are added to as they are read)."""

    root: Path
    docs: Mapping[str, dict[str, Any]]
    fingerprint: Fingerprint

    def file(self, name: str) -> str:
        """The path of ``name`` as error messages name it."""
        return str(self.root / name)


def read_mappings_dir(root: Path) -> MappingsDir:
    """Read and fingerprint every file of ``FILES`` in ``root``, failing on the first that is
    missing, unreadable or not TOML (before any of them is validated)."""
    if not root.is_dir():
        raise MappingError(str(root), "(directory)", "not a directory")
    fingerprint = Fingerprint()
    docs: dict[str, dict[str, Any]] = {}
    for name in FILES:
        path = root / name
        docs[name] = read_toml(path)
        fingerprint.add(name, path)
    for name in OPTIONAL_FILES:
        path = root / name
        if path.exists():
            docs[name] = read_toml(path)
            fingerprint.add(name, path)
    return MappingsDir(root=root, docs=docs, fingerprint=fingerprint)


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML document in ``path``; a ``MappingError`` on entry ``(file)`` if it cannot be."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MappingError(str(path), "(file)", "missing") from None
    except (OSError, UnicodeDecodeError) as err:
        raise MappingError(str(path), "(file)", f"unreadable: {err}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise MappingError(str(path), "(file)", f"not valid TOML: {err}") from None


def reason(err: ValidationError) -> str:
    """Pydantic's errors as one line: ``field.path: message`` joined by ``; ``."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        parts.append(f"{loc}: {e['msg']}" if loc else str(e["msg"]))
    return "; ".join(parts)


def parse(model: type[M], data: Any, file: str, entry: str) -> M:
    """Validate ``data`` as ``model``; a ``MappingError`` naming ``file`` and ``entry`` if not."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise MappingError(file, entry, reason(err)) from None


def entries(
    raw: Iterable[dict[str, Any]], model: type[M], file: str, table: str, key: Callable[[M], str]
) -> list[tuple[str, M]]:
    """Validate each table of the array ``[[table]]`` as ``model``, labelled ``[[table]] #n``
    (and its code, id or phrase), in order; then fail on the first whose ``key`` repeats an
    earlier one's. Every entry is validated before any duplicate is looked for."""
    out: list[tuple[str, M]] = []
    for n, item in enumerate(raw, start=1):
        label = f"[[{table}]] #{n}"
        if isinstance(item, dict):
            ident = item.get("code") or item.get("id") or item.get("phrase")
            if ident:
                label += f" ({ident})"
        out.append((label, parse(model, item, file, label)))
    seen: dict[str, str] = {}
    for label, entry in out:
        k = key(entry)
        if k in seen:
            raise MappingError(file, label, f"duplicate of {seen[k]}")
        seen[k] = label
    return out
