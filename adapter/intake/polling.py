"""Polling for EMRs without Subscriptions: ``_lastUpdated`` searches with a persisted watermark.

Each poll searches ``Procedure`` and ``Encounter`` with ``_lastUpdated=ge<watermark>`` (``ge``, not
``gt``: servers compare at millisecond precision and a change in the same millisecond as the
watermark must not be skipped), drops what was already seen at the boundary (id + versionId), and
moves the watermark to the newest ``lastUpdated`` seen. A search never lists a deleted resource,
so each poll also reads the type-level ``_history`` since the watermark for deletes. The service
keeps the watermark in its durable store and moves it once the poll's changes are in the inbox.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from adapter.errors import FatalServerError
from adapter.fhir.client import FhirClient
from adapter.intake.live import ChangeEvent, event_of

log = logging.getLogger(__name__)
KINDS = ("Procedure", "Encounter")


@dataclass
class Watermark:
    since: str | None = None  # FHIR instant
    seen: set[str] = field(default_factory=set)  # Type/id@version at the watermark


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def poll(
    emr: FhirClient, mark: Watermark, *, count: int = 200, deletions: bool = True
) -> tuple[list[ChangeEvent], Watermark]:
    """Changes since the watermark, and the watermark to store once they are handled.

    With ``deletions``, resources deleted since the watermark are changes too (reference-only
    events, found in the type-level ``_history``)."""
    events: list[ChangeEvent] = []
    newest = _instant(mark.since)
    at_newest: set[str] = set(mark.seen)
    for kind in KINDS:
        params = [("_count", str(count)), ("_sort", "_lastUpdated")]
        if mark.since:
            params.append(("_lastUpdated", f"ge{mark.since}"))
        for resource in emr.search(kind, params):
            if resource.get("resourceType") != kind:
                continue
            meta = resource.get("meta") if isinstance(resource.get("meta"), dict) else {}
            assert isinstance(meta, dict)
            token = f"{kind}/{resource.get('id')}@{meta.get('versionId')}"
            if token in mark.seen:
                continue
            ev = event_of(resource, "poll")
            if ev is not None:
                events.append(ev)
            updated = _instant(meta.get("lastUpdated"))
            if updated is not None and (newest is None or updated > newest):
                newest, at_newest = updated, {token}
            elif updated is not None and updated == newest:
                at_newest.add(token)
        if deletions and mark.since:
            for rid, version, when in _deleted(emr, kind, mark.since, count):
                token = f"{kind}/{rid}@{version}"
                if token in mark.seen:
                    continue
                events.append(ChangeEvent(kind, rid, None, version, "poll"))
                updated = _instant(when)
                if updated is not None and (newest is None or updated > newest):
                    newest, at_newest = updated, {token}
                elif updated is not None and updated == newest:
                    at_newest.add(token)
    since = newest.isoformat().replace("+00:00", "Z") if newest else mark.since
    return events, Watermark(since=since, seen=at_newest)


def _deleted(
    emr: FhirClient, kind: str, since: str, count: int
) -> list[tuple[str, str | None, str | None]]:
    """(id, version, when) of every ``kind`` deleted since ``since``, from the type-level
    ``_history`` (a search never lists a deleted resource). A server without type-level history
    answers 4xx: then deletions are found only when their day is recomputed for another reason,
    which is logged."""
    found: list[tuple[str, str | None, str | None]] = []
    try:
        for entry in emr.history(kind, [("_since", since), ("_count", str(count))]):
            request = entry.get("request") if isinstance(entry.get("request"), dict) else {}
            if not isinstance(request, dict) or request.get("method") != "DELETE":
                continue
            url = str(request.get("url") or entry.get("fullUrl") or "")
            rid = url.rstrip("/").split("/")[-1] if f"{kind}/" in url else ""
            response = entry.get("response") if isinstance(entry.get("response"), dict) else {}
            assert isinstance(response, dict)
            etag = str(response.get("etag") or "")
            version = etag.removeprefix("W/").strip('"') or None
            when = response.get("lastModified")
            if rid:
                found.append((rid, version, when if isinstance(when, str) else None))
    except FatalServerError as err:
        if err.status is None or err.status >= 500:
            raise
        log.warning(
            "%s/_history answered %s: deleted %ss are not found by polling", kind, err.status, kind
        )
    return found
