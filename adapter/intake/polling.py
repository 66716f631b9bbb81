"""Polling for EMRs without Subscriptions: ``_lastUpdated`` searches with a persisted watermark.

Each poll searches ``Procedure`` and ``Encounter`` with ``_lastUpdated=ge<watermark>`` (``ge``, not
``gt``: servers compare at millisecond precision and a change in the same millisecond as the
watermark must not be skipped), drops what was already seen at the boundary (id + versionId), and
moves the watermark to the newest ``lastUpdated`` seen. A search never lists a deleted resource,
so each poll also reads the type-level ``_history`` since the watermark for deletes.

Every read (Procedure search, Procedure history, Encounter search, Encounter history) keeps a
watermark of its own: one shared watermark would let a change that lands between two reads be
skipped when a later read sees something newer. A read that fails keeps its watermark, so the
next poll asks again. The service keeps the watermarks in its durable store and moves them once
the poll's changes are in the inbox.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from adapter.emr.client import FhirClient, TruncatedAnswer
from adapter.errors import FhirServerError
from adapter.fhir.refs import instant, is_id, meta_of, ref_key, version_of
from adapter.intake.events import ChangeEvent, event_of

log = logging.getLogger(__name__)
#: how far ahead of our clock the EMR's may run before a stamp is taken to be wrong
MAX_SKEW = timedelta(minutes=5)
KINDS = ("Procedure", "Encounter")
#: the patient's context the clocks read: searched for changes too (not for deletes); an EMR
#: that does not offer one is logged and asked again next poll
CONTEXT_KINDS = {"CarePlan": (), "ClaimResponse": (("use", "preauthorization"),),
                 "DocumentReference": ()}  # fmt: skip


@dataclass(frozen=True)
class Mark:
    since: str | None = None  # FHIR instant, milliseconds, UTC
    seen: frozenset[str] = frozenset()  # Type/id@version at ``since``


@dataclass
class Watermark:
    """Where the next poll starts: per read in ``reads``, else ``since`` / ``seen``."""

    since: str | None = None
    seen: set[str] = field(default_factory=set)
    reads: dict[str, Mark] = field(default_factory=dict)
    truncated: list[str] = field(default_factory=list)  # histories cut at the page cap (poll)

    def of(self, read: str) -> Mark:
        return self.reads.get(read) or Mark(self.since, frozenset(self.seen))

    def as_json(self) -> dict[str, Any]:
        return {
            "reads": {
                r: {"since": m.since, "seen": sorted(m.seen)} for r, m in sorted(self.reads.items())
            },
            "since": self.since,
            "seen": sorted(self.seen),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Watermark:
        reads = {
            str(r): Mark(_normal(m.get("since")), frozenset(m.get("seen") or []))
            for r, m in (data.get("reads") or {}).items()
            if isinstance(m, dict)
        }
        return cls(_normal(data.get("since")), set(data.get("seen") or []), reads)


def _normal(since: Any) -> str | None:
    """A stored instant in the form polls write (a watermark stored by an older version may
    lack milliseconds)."""
    moment = instant(since)
    return stamp(moment) if moment is not None else None


def stamp(moment: datetime) -> str:
    # always with milliseconds: servers that compare instants as text put "…:33Z" after
    # "…:33.653Z", which would skip the rest of that second
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Advance:
    """The newest instant a read has seen, and the tokens seen at exactly that instant."""

    def __init__(self, start: Mark, ceiling: datetime | None = None) -> None:
        self.start = start
        self.newest = instant(start.since)
        self.at_newest: set[str] = set(start.seen)
        # the mark never passes our clock (plus skew): one resource stamped in the future
        # would otherwise move it there and every later change would go unseen
        self.ceiling = ceiling or datetime.now(UTC) + MAX_SKEW

    def saw(self, token: str, when: Any) -> None:
        updated = instant(when)
        if updated is not None and updated > self.ceiling:
            log.warning("%s is stamped in the future: the poll mark does not follow it", token)
            return
        if updated is not None and (self.newest is None or updated > self.newest):
            self.newest, self.at_newest = updated, {token}
        elif updated is not None and updated == self.newest:
            self.at_newest.add(token)

    def mark(self) -> Mark:
        if self.newest is None:
            return self.start
        return Mark(stamp(self.newest), frozenset(self.at_newest))


def poll(
    emr: FhirClient,
    mark: Watermark,
    *,
    count: int = 200,
    deletions: bool = True,
    context: bool = False,
) -> tuple[list[ChangeEvent], Watermark]:
    """Changes since the watermark, and the watermark to store once they are handled.

    With ``deletions``, resources deleted since the watermark are changes too (reference-only
    events marked ``deleted``, found in the type-level ``_history``). With ``context``, the
    patient's context the clocks read (``CONTEXT_KINDS``) is searched for changes too."""
    events: list[ChangeEvent] = []
    reads: dict[str, Mark] = {}
    truncated: list[str] = []
    for kind in KINDS:
        reads[kind] = _changes(emr, kind, mark.of(kind), count, events=events)
        history = f"{kind}/_history"
        if deletions and mark.of(history).since:
            reads[history] = _deletions(
                emr, kind, mark.of(history), count, events=events, truncated=truncated
            )
    for kind, extra in CONTEXT_KINDS.items() if context else ():
        try:
            reads[kind] = _changes(emr, kind, mark.of(kind), count, events=events, extra=extra)
        except FhirServerError as err:
            log.warning("%s search answered %s: its changes are not found by this poll",
                        kind, err.status or type(err).__name__)  # fmt: skip
            reads[kind] = mark.of(kind)
    since = min((m.since for m in reads.values() if m.since), default=mark.since)
    return events, Watermark(since=since, seen=set(), reads=reads, truncated=truncated)


def _changes(
    emr: FhirClient,
    kind: str,
    start: Mark,
    count: int,
    *,
    events: list[ChangeEvent],
    extra: tuple[tuple[str, str], ...] = (),
) -> Mark:
    """Append an event for every ``kind`` changed since ``start``; the read's next mark."""
    advance = _Advance(start)
    params = [("_count", str(count)), ("_sort", "_lastUpdated"), *extra]
    if start.since:
        params.append(("_lastUpdated", f"ge{start.since}"))
    for resource in emr.search(kind, params):
        if resource.get("resourceType") != kind:
            continue
        token = f"{kind}/{resource.get('id')}@{version_of(resource)}"
        if token in start.seen:
            continue
        ev = event_of(resource, "poll")
        if ev is not None:
            events.append(ev)
        advance.saw(token, meta_of(resource).get("lastUpdated"))
    return advance.mark()


def _deletions(
    emr: FhirClient,
    kind: str,
    start: Mark,
    count: int,
    *,
    events: list[ChangeEvent],
    truncated: list[str],
) -> Mark:
    """Append an event for every ``kind`` deleted since ``start``; the read's next mark.

    A server without type-level history, or one that fails the read, is logged: the read keeps
    its mark and is asked again next time."""
    advance = _Advance(start)
    found: list[ChangeEvent] = []
    try:
        for entry in emr.history(kind, [("_since", str(start.since)), ("_count", str(count))]):
            _history_entry(kind, entry, start, advance, found)
    except TruncatedAnswer:
        # newest first: the oldest part of the window was not read, and standard R4 cannot ask
        # for it apart; move on (or every later poll would stop at the same page) and say so
        log.error(
            "%s/_history since %s is longer than the page cap: deletes before %s in that window "
            "were not read (their days are recomputed only when something else changes them)",
            kind, start.since, stamp(advance.newest) if advance.newest else "?",
        )  # fmt: skip
        truncated.append(kind)
    except FhirServerError as err:
        log.warning(
            "%s/_history answered %s: deleted %ss are not found by this poll",
            kind, err.status or type(err).__name__, kind,
        )  # fmt: skip
        return start
    events.extend(found)
    return advance.mark()


def _history_entry(
    kind: str, entry: dict[str, Any], start: Mark, advance: _Advance, found: list[ChangeEvent]
) -> None:
    """One history entry: a delete becomes an event in ``found``; every entry moves the mark.

    A delete is an entry whose ``request.method`` is DELETE, or one with no resource and a
    410/204 response (as some servers write it)."""
    request = entry.get("request") if isinstance(entry.get("request"), dict) else {}
    response = entry.get("response") if isinstance(entry.get("response"), dict) else {}
    assert isinstance(request, dict) and isinstance(response, dict)
    status = str(response.get("status") or "")
    resource = entry.get("resource") if isinstance(entry.get("resource"), dict) else None
    etag = str(response.get("etag") or "")
    version = etag.removeprefix("W/").strip('"') or None
    is_delete = request.get("method") == "DELETE" or (
        resource is None and status.startswith(("410", "204"))
    )
    if not is_delete:
        # an update (the search read lists it): it still moves this read's mark, so the next
        # poll does not page through the same history again
        when = response.get("lastModified") or meta_of(resource).get("lastUpdated")
        version = version or version_of(resource)
        advance.saw(f"{kind}/{(resource or {}).get('id')}@{version}", when)
        return
    rid = _deleted_id(kind, entry, request, response)
    if rid is None:
        log.warning("%s history: a delete entry names no %s id", kind, kind)
        return
    token = f"{kind}/{rid}@{version}/deleted"
    if token in start.seen:
        return
    found.append(ChangeEvent(kind, rid, None, version, "poll", deleted=True))
    advance.saw(token, response.get("lastModified"))


def _deleted_id(kind: str, entry: dict[str, Any], request: dict[str, Any],
                response: dict[str, Any]) -> str | None:  # fmt: skip
    """The id of a deleted resource: from ``request.url`` (``Kind/id``, also with
    ``/_history/n``), ``fullUrl`` or ``response.location``; not from a conditional delete's
    query."""
    for value in (request.get("url"), entry.get("fullUrl"), response.get("location")):
        if not isinstance(value, str) or "?" in value:
            continue
        key = ref_key(value)
        found_kind, _, rid = key.partition("/")
        if found_kind == kind and is_id(rid):
            return rid
    return None
