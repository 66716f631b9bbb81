"""References, instants and versions of FHIR R4 JSON: the one home of the small readers every
layer needs (parse, build, diff, intake, the drivers).

Pure functions over plain JSON values; nothing here does I/O.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import quote

Resource = dict[str, Any]

#: FHIR's id rule (R4 ``id``: 1-64 of A-Z, a-z, 0-9, '-' and '.')
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
#: a resource type name (CamelCase letters)
RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_ABSOLUTE = re.compile(r"^https?://.+?/([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/.+)?$")
_RELATIVE = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/.+)?$")
#: a FHIR dateTime with a time must carry an offset
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


# -- references ---------------------------------------------------------------------------------
def ref_key(reference: str) -> str:
    """Normalise a reference: absolute URLs and ``_history`` suffixes become ``Type/id``."""
    reference = reference.strip()
    for pattern in (_RELATIVE, _ABSOLUTE):
        m = pattern.match(reference)
        if m:
            return f"{m.group(1)}/{m.group(2)}"
    return reference


def is_id(value: Any) -> bool:
    """Whether ``value`` is a valid FHIR id."""
    return isinstance(value, str) and FHIR_ID.match(value) is not None


def is_type(value: Any) -> bool:
    """Whether ``value`` is shaped like a resource type name."""
    return isinstance(value, str) and RESOURCE_TYPE.match(value) is not None


def split_key(key: Any) -> tuple[str, str] | None:
    """``(type, id)`` of a well-formed ``Type/id`` key; None for anything else (a path, a
    query, a ``urn:uuid``, an id against FHIR's rule)."""
    if not isinstance(key, str):
        return None
    kind, sep, rid = key.partition("/")
    if not sep or not RESOURCE_TYPE.match(kind) or not FHIR_ID.match(rid):
        return None
    return kind, rid


def patient_key(reference: str | None) -> str | None:
    """``Patient/id`` of a reference to a Patient; None for any other subject (a Group, a
    Device, a malformed reference): only a Patient's day is ever computed."""
    key = ref_key(reference) if reference else None
    parts = split_key(key)
    return key if parts is not None and parts[0] == "Patient" else None


def reference_of(element: Any) -> str | None:
    """The ``reference`` of a Reference element (stripped), or None."""
    if isinstance(element, dict):
        ref = element.get("reference")
        if isinstance(ref, str) and ref.strip():
            return ref.strip()
    return None


def key_of(resource: Resource) -> str:
    """``Type/id`` of a resource as written (``Type/None`` when it has no id)."""
    return f"{resource.get('resourceType')}/{resource.get('id')}"


def bare_id(key: str) -> str:
    """The id part of ``Type/id`` (a key without a type is returned as it is)."""
    return key.split("/", 1)[1] if "/" in key else key


# -- instants -----------------------------------------------------------------------------------
def parse_datetime(value: Any, zone: tzinfo | None = None) -> tuple[datetime | None, str | None]:
    """A FHIR dateTime with time and offset -> aware datetime (in ``zone`` when given, else in
    its own offset); else (None, reason). The strict reader for clinical times."""
    if value is None:
        return None, None
    if not isinstance(value, str) or not DATETIME.match(value):
        return None, f"{value!r} is not a date-time with a UTC offset"
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None, f"{value!r} is not a valid date-time"
    return (parsed.astimezone(zone) if zone is not None else parsed), None


_NO_SECONDS = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2})(Z|[+-]\d{2}:\d{2})$")


def fhir_datetime(value: str) -> str:
    """A date-time as valid FHIR: seconds added where the EMR left them out
    (``2026-03-11T09:00-05:00`` -> ``2026-03-11T09:00:00-05:00``), otherwise as written."""
    m = _NO_SECONDS.match(value)
    return f"{m.group(1)}:00{m.group(2)}" if m else value


def latest(values: list[str]) -> str | None:
    """The latest of some date-times, compared as instants (not as text: offsets differ), as
    valid FHIR; None when none can be read."""
    readable = [(moment, v) for v in values if (moment := instant(v)) is not None]
    return fhir_datetime(max(readable, key=lambda mv: mv[0])[1]) if readable else None


def instant(value: Any) -> datetime | None:
    """A server instant (``meta.lastUpdated``, ``response.lastModified``, a stored watermark)
    as an aware UTC datetime; None when it is not one. The lenient reader for bookkeeping."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


# -- versions -----------------------------------------------------------------------------------
def meta_of(resource: Any) -> Resource:
    """A resource's ``meta`` (empty when absent or malformed)."""
    meta = resource.get("meta") if isinstance(resource, dict) else None
    return meta if isinstance(meta, dict) else {}


def version_of(resource: Any) -> str | None:
    """``meta.versionId`` as text, or None when the resource has none."""
    version = meta_of(resource).get("versionId")
    if isinstance(version, bool) or not isinstance(version, str | int):
        return None
    return str(version) if str(version) else None


# -- queries ----------------------------------------------------------------------------------
def token_query(param: str, system: str, value: str) -> str:
    """``param=system|value`` as a search query string: the token's own separators escaped
    the FHIR way (``\\``, ``|``, ``,``, ``$`` in a part become ``\\\\``, ``\\|``, ``\\,``, ``\\$``)
    and the whole percent-encoded, so ``+ & # % space`` and non-ASCII reach the server as
    written (a ``+`` sent bare is read as a space, and the identifier never matches)."""

    def escape(part: str) -> str:
        for ch in ("\\", "|", ",", "$"):
            part = part.replace(ch, "\\" + ch)
        return part

    return f"{param}={quote(f'{escape(system)}|{escape(value)}', safe='/:|')}"


# -- shapes -------------------------------------------------------------------------------------
def as_dict(value: Any) -> Resource:
    """``value`` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """``value`` when it is a JSON array, else an empty one."""
    return value if isinstance(value, list) else []
