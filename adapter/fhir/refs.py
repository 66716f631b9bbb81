"""References, instants and versions of FHIR R4 JSON: the one home of the small readers every
layer needs (parse, build, diff, intake, the drivers).

Pure functions over plain JSON values; nothing here does I/O.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import quote, unquote

Resource = dict[str, Any]

#: FHIR's id rule (R4 ``id``: 1-64 of A-Z, a-z, 0-9, '-' and '.')
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
#: a resource type name (CamelCase letters)
RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_ABSOLUTE = re.compile(r"^https?://.+?/([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/.+)?\Z")
_RELATIVE = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/.+)?\Z")
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
    """Whether ``value`` is a valid FHIR id (and not ``.`` or ``..``, which the rule's letters
    allow but which are path segments in a URL)."""
    return (
        isinstance(value, str) and FHIR_ID.fullmatch(value) is not None and value.strip(".") != ""
    )


def is_type(value: Any) -> bool:
    """Whether ``value`` is shaped like a resource type name."""
    return isinstance(value, str) and RESOURCE_TYPE.fullmatch(value) is not None


def split_key(key: Any) -> tuple[str, str] | None:
    """``(type, id)`` of a well-formed ``Type/id`` key; None for anything else (a path, a
    query, a ``urn:uuid``, an id against FHIR's rule)."""
    if not isinstance(key, str):
        return None
    kind, sep, rid = key.partition("/")
    if not sep or RESOURCE_TYPE.fullmatch(kind) is None or not is_id(rid):
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

    return f"{param}={quote(token_value(system, value), safe='/:|')}"


def token_value(system: str, value: str) -> str:
    """``system|value`` as a token search value, FHIR's separators escaped in each part (not
    percent-encoded: for a client that encodes parameter values itself)."""

    def escape(part: str) -> str:
        for ch in ("\\", "|", ",", "$"):
            part = part.replace(ch, "\\" + ch)
        return part

    return f"{escape(system)}|{escape(value)}"


# -- shapes -------------------------------------------------------------------------------------
def as_dict(value: Any) -> Resource:
    """``value`` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """``value`` when it is a JSON array, else an empty one."""
    return value if isinstance(value, list) else []


# -- references real EMRs write: contained, conditional, identifier-only ---------------------------
#: the resource type an identifier-only Reference means, by the element it is in
ELEMENT_TYPES = {
    "subject": "Patient",
    "beneficiary": "Patient",
    "patient": "Patient",
    "actor": "Practitioner",
    "individual": "Practitioner",
    "practitioner": "Practitioner",
    "encounter": "Encounter",
    "condition": "Condition",
    "reasonReference": "Condition",
    "serviceProvider": "Organization",
    "organization": "Organization",
}
PLACEHOLDER = "identifier:"


def is_placeholder(key: str | None) -> bool:
    """Whether a key is an identifier key (a reference by identifier not resolved yet)."""
    return bool(key) and str(key).startswith(PLACEHOLDER)


def placeholder_parts(key: str) -> tuple[str, str, str] | None:
    """``(type, system, value)`` of an identifier key; None for any other key."""
    if not is_placeholder(key):
        return None
    kind, _, rest = key[len(PLACEHOLDER) :].partition("|")
    system, _, value = rest.partition("|")
    return (kind, system, value) if is_type(kind) and value else None


def identifier_key(kind: str, system: Any, value: Any) -> str | None:
    """The key a resource of ``kind`` is found by through one of its identifiers
    (``identifier:Type|system|value``); None for an identifier without a value."""
    if not isinstance(value, str) or not value.strip():
        return None
    return f"{PLACEHOLDER}{kind}|{system if isinstance(system, str) else ''}|{value.strip()}"


def _conditional(reference: str) -> str | None:
    """``Type?identifier=system|value`` (a conditional reference) as an identifier key."""
    kind, sep, query = reference.partition("?")
    if not sep or not is_type(kind):
        return None
    for part in query.split("&"):
        name, _, raw = part.partition("=")
        if name == "identifier":
            system, bar, value = unquote(raw).partition("|")
            return identifier_key(kind, system if bar else "", value if bar else system)
    return None


def contained_ids(resource: Resource) -> set[str]:
    """The ids of a resource's contained resources."""
    return {
        c["id"]
        for c in as_list(resource.get("contained"))
        if isinstance(c, dict) and isinstance(c.get("id"), str) and c["id"]
    }


def normalize_references(
    resource: Resource, key: str, contained: set[str] | None = None
) -> Resource:
    """A resource with the references real EMRs write made resolvable: ``#id`` (a contained
    resource of the resource spooled as ``key``) becomes ``<key>#id``; a conditional reference
    (``Type?identifier=s|v``) and an identifier-only Reference become identifier keys
    (``identifier:Type|s|v``) that the spool resolves to the resource holding that identifier.
    Anything else is left as written. ``contained``: the container's contained ids, when
    ``resource`` is itself one of them (siblings refer to each other by ``#id``)."""
    if contained is None:
        contained = contained_ids(resource)

    def fix(value: Any, element: str) -> Any:
        if isinstance(value, list):
            return [fix(v, element) for v in value]
        if not isinstance(value, dict):
            return value
        out = {k: (fix(v, k) if k != "contained" else v) for k, v in value.items()}
        ref = out.get("reference")
        if isinstance(ref, str):
            if ref.startswith("#") and ref[1:] in contained:
                out["reference"] = f"{key}{ref}"
            elif "?" in ref and (found := _conditional(ref)):
                out["reference"] = found
        elif isinstance(out.get("identifier"), dict):
            ident = out["identifier"]
            kind = out.get("type") if is_type(out.get("type")) else ELEMENT_TYPES.get(element)
            if kind and (found := identifier_key(kind, ident.get("system"), ident.get("value"))):
                out["reference"] = found
        return out

    return {k: (fix(v, k) if k != "contained" else v) for k, v in resource.items()}


def is_literal(key: str) -> bool:
    """Whether a key can be written as a literal reference (``Type/id`` or ``urn:uuid:``):
    not a contained resource of another (``Type/id#x``) nor an unresolved identifier key."""
    return split_key(key) is not None or key.startswith("urn:uuid:")


def _display_name(resource: Resource) -> str | None:
    name = resource.get("name")
    if isinstance(name, str) and name.strip():
        return name.strip()  # Organization.name
    for n in as_list(name):
        if not isinstance(n, dict):
            continue
        if isinstance(n.get("text"), str) and n["text"].strip():
            return str(n["text"]).strip()
        given = [g for g in as_list(n.get("given")) if isinstance(g, str)]
        family = n.get("family")
        if text := " ".join([*given, family if isinstance(family, str) else ""]).strip():
            return text
    return None


def written_reference(key: str, resource: Resource | None) -> Resource:
    """How a resource the output names but cannot point at is written: a contained resource
    of an input (``Procedure/p1#ptc``; a ``#`` reference would dangle in our own resource,
    against ref-1) or one known only by identifier. A logical Reference: its type, its first
    identifier with a value, and its name as display."""
    parts = placeholder_parts(key)
    kind = resource.get("resourceType") if resource else (parts[0] if parts else None)
    out: Resource = {"type": kind} if is_type(kind) else {}
    ident = next(
        (
            {"system": i["system"], "value": i["value"]} if isinstance(i.get("system"), str)
            else {"value": i["value"]}
            for i in as_list(resource.get("identifier") if resource else None)
            if isinstance(i, dict) and isinstance(i.get("value"), str) and i["value"].strip()
        ),
        None,
    )  # fmt: skip
    if ident is None and parts is not None:
        ident = {"system": parts[1], "value": parts[2]} if parts[1] else {"value": parts[2]}
    if ident is not None:
        out["identifier"] = ident
    display = _display_name(resource) if resource else None
    out["display"] = display or (f"{kind} (contained, no identifier)" if not ident else None)
    return {k: v for k, v in out.items() if v is not None}
