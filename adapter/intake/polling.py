"""Polling for EMRs without Subscriptions: ``_lastUpdated`` searches with a persisted watermark.

Each poll searches ``Procedure`` and ``Encounter`` with ``_lastUpdated=ge<watermark>`` (``ge``, not
``gt``: servers compare at millisecond precision and a change in the same millisecond as the
watermark must not be skipped), drops what was already seen at the boundary (id + versionId), and
moves the watermark to the newest ``lastUpdated`` seen. The service keeps the watermark in its
durable store and moves it once the poll's changes are in the inbox.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from adapter.fhir.client import FhirClient
from adapter.intake.live import ChangeEvent, event_of

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
    emr: FhirClient, mark: Watermark, *, count: int = 200
) -> tuple[list[ChangeEvent], Watermark]:
    """Changes since the watermark, and the watermark to store once they are handled."""
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
    since = newest.isoformat().replace("+00:00", "Z") if newest else mark.since
    return events, Watermark(since=since, seen=at_newest)
