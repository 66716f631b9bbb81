"""The Subscription webhook: every delivery shape in, one normalised ``Notification`` out.

Accepted deliveries (all on the configured path, e.g. ``/notify``):

- R4 rest-hook with the full resource: ``PUT|POST {path}/Procedure/{id}`` (HAPI style) or a
  ``POST {path}`` whose body is the resource;
- R4 rest-hook without payload (a ping): an empty ``POST {path}``: the adapter searches for what
  changed (catch-up);
- R4B/R5-backport notification Bundles (``type`` history, first entry the ``Parameters`` or
  ``SubscriptionStatus``): ``handshake``, ``heartbeat``, ``event-notification`` with
  ``full-resource``, ``id-only`` or ``empty`` content. Event numbers are tracked per
  subscription; a gap (or a heartbeat counting more events than seen) triggers a catch-up.

Every request must carry the shared secret header configured on the Subscription. Answers:
200/204 once the notification is queued; 400 malformed JSON or Bundle; 401 missing or wrong
secret; 404 wrong path; 405 wrong method; 413 body too large; 415 unsupported content type; 422
a resource the adapter does not handle. Errors come as an OperationOutcome. Nothing from a body
is logged: only resource ids, counts and the outcome.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from adapter.fhir import codes
from adapter.fhir.refs import is_id, key_of, meta_of, ref_key, split_key
from adapter.intake.events import HANDLED, ChangeEvent, Notification, event_of
from adapter.observe import Metrics

log = logging.getLogger(__name__)
Resource = dict[str, Any]
Headers = Mapping[str, str] | Sequence[tuple[str, str]]
MAX_DEPTH = 64  # JSON nesting a notification may have (FHIR resources nest about 10 deep)
JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Resource | None = None


def outcome(status: int, code: str, message: str) -> Reply:
    severity = "error" if status >= 400 else "information"
    return Reply(
        status,
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": severity, "code": code, "diagnostics": message}],
        },
    )


#: event numbers are counts: at most 2^53 (a JSON-safe integer)
MAX_EVENT_NUMBER = 2**53
#: this far behind the last number seen, a subscription's count is taken to have restarted
RESET_WINDOW = 10_000


@dataclass
class EventCounter:
    """Last event number seen per subscription, to notice lost notifications."""

    last: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, subscription: str, numbers: list[int], since_start: int | None) -> bool:
        """Record event numbers; True when some were skipped (a gap: catch up). Numbers far
        behind the last one seen mean the subscription was restarted (or the last number was
        bogus): the count starts again from them, after a catch-up."""
        with self.lock:
            prev = self.last.get(subscription)
            gap = False
            known = [n for n in (*numbers, since_start) if n is not None]
            if prev is not None and known and max(known) < prev - RESET_WINDOW:
                prev, gap = None, True
            for n in sorted(numbers):
                if prev is not None and n > prev + 1:
                    gap = True
                prev = n if prev is None else max(prev, n)
            if since_start is not None and (prev is None or since_start > prev):
                gap = gap or (prev is not None and since_start > prev)
                prev = since_start if prev is None else max(prev, since_start)
            if prev is not None:
                self.last[subscription] = prev
            return gap


def _param_value(p: Resource) -> Any:
    return next((v for k, v in p.items() if k.startswith("value")), None)


def _items(value: Any) -> list[Resource]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _ref(value: Any) -> str | None:
    ref = value.get("reference") if isinstance(value, dict) else None
    return ref if isinstance(ref, str) else None


def parse_backport(bundle: Resource) -> tuple[str | None, str | None, list[Resource], int | None]:
    """(type, subscription, events [{number, focus}], events-since-subscription-start)."""
    entries = _items(bundle.get("entry"))
    first = entries[0].get("resource") if entries else None
    first = first if isinstance(first, dict) else {}
    kind = subscription = None
    since: int | None = None
    events: list[Resource] = []
    if first.get("resourceType") == "Parameters":
        for p in _items(first.get("parameter")):
            name = p.get("name")
            if name == "type":
                kind = p.get("valueCode") if isinstance(p.get("valueCode"), str) else None
            elif name == "subscription":
                subscription = _ref(p.get("valueReference"))
            elif name in ("events-since-subscription-start", "eventsSinceSubscriptionStart"):
                since = _as_int(_param_value(p))
            elif name in ("notification-event", "notificationEvent"):
                ev: Resource = {}
                for part in _items(p.get("part")):
                    pn = part.get("name")
                    if pn in ("event-number", "eventNumber"):
                        ev["number"] = _as_int(_param_value(part))
                    elif pn == "focus":
                        ev["focus"] = _ref(part.get("valueReference"))
                events.append(ev)
    elif first.get("resourceType") == "SubscriptionStatus":
        kind = first.get("type") if isinstance(first.get("type"), str) else None
        subscription = _ref(first.get("subscription"))
        since = _as_int(first.get("eventsSinceSubscriptionStart"))
        events = [
            {"number": _as_int(e.get("eventNumber")), "focus": _ref(e.get("focus"))}
            for e in _items(first.get("notificationEvent"))
        ]
    return kind, subscription, events, since


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value) if isinstance(value, int | str) else None
    except ValueError:
        return None


class Receiver:
    """Turns HTTP deliveries into ``Notification``s handed to ``enqueue`` (which must persist
    them before returning: the delivery is acknowledged only after it returns)."""

    def __init__(
        self,
        enqueue: Callable[[Notification], None],
        *,
        path: str = "/notify",
        secret: str | None = None,
        secret_header: str = "X-Adapter-Secret",
        max_body: int = 5_000_000,
        allow_unauthenticated: bool = False,
        metrics: Metrics | None = None,
    ) -> None:
        if not secret and not allow_unauthenticated:
            raise ValueError("a webhook receiver needs a secret (or allow_unauthenticated=True)")
        self.enqueue = enqueue
        self.path = "/" + path.strip("/")
        self.secret = secret or None
        self.secret_header = secret_header
        self.max_body = max_body
        self.counter = EventCounter()
        self.metrics = metrics
        self.received = 0
        self.rejected = 0

    def precheck(self, method: str, path: str, headers: Headers) -> Reply | None:
        """The answer to a request refused on its head alone (path, method, secret), before
        any of its body is read: an unauthenticated sender costs no memory; None when it may
        go on (``handle`` checks again)."""
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        reply = self._head_refused(method, path, pairs)
        if reply is not None:
            self._count(method, path, reply)
        return reply

    def _head_refused(self, method: str, path: str, pairs: list[tuple[str, str]]) -> Reply | None:
        if sum(1 for k, _ in pairs if k.lower() == self.secret_header.lower()) > 1:
            return outcome(401, "security", f"{self.secret_header} sent more than once")
        route = path.split("?", 1)[0].rstrip("/")
        return self._refused(method, route, {k.lower(): v for k, v in pairs}, b"")

    def handle(self, method: str, path: str, headers: Headers, body: bytes) -> Reply:
        """One delivery: ``headers`` as a mapping or as (name, value) pairs (a header sent twice
        appears twice)."""
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        reply = self._head_refused(method, path, pairs) or self._handle(
            method, path, {k.lower(): v for k, v in pairs}, body
        )
        self._count(method, path, reply)
        return reply

    def _count(self, method: str, path: str, reply: Reply) -> None:
        if self.metrics is not None:
            self.metrics.inc("webhook_requests", status=str(reply.status))
        if reply.status >= 400:
            self.rejected += 1
            route = path.split("?", maxsplit=1)[0]
            log.info("webhook rejected %s %s: %d", method, route, reply.status)
        else:
            self.received += 1

    def _handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        route = path.split("?", 1)[0].rstrip("/")
        if len(body) > self.max_body:
            return outcome(413, "too-costly", f"body over {self.max_body} bytes")
        if not body.strip():
            if route == self.path:
                self.enqueue(Notification(catch_up=True, kind="ping"))
                return Reply(204)
            return outcome(400, "required", "an update notification needs the resource")
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype and ctype not in JSON_TYPES:
            return outcome(415, "not-supported", f"content type {ctype} is not FHIR JSON")
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:  # also: nested deeper than orjson's 1024 levels
            return outcome(400, "invalid", "body is not JSON")
        if _depth(doc) > MAX_DEPTH:
            return outcome(400, "too-costly", f"body nested deeper than {MAX_DEPTH} levels")
        if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
            return outcome(400, "invalid", "body is not a FHIR resource")
        if doc["resourceType"] == "Bundle":
            return self._bundle(doc)
        return self._resource(doc, route[len(self.path) :].strip("/"))

    def _refused(
        self, method: str, route: str, headers: dict[str, str], body: bytes
    ) -> Reply | None:
        """The answer to a request refused on its head (path, method, secret) or its size;
        None when it may go on."""
        if route != self.path and not route.startswith(self.path + "/"):
            return outcome(404, "not-found", "unknown path")
        if method not in ("POST", "PUT"):
            return outcome(405, "not-supported", "use POST or PUT")
        if self.secret is not None:
            given = headers.get(self.secret_header.lower(), "")
            if not hmac.compare_digest(given.encode(), self.secret.encode()):
                return outcome(401, "security", f"missing or wrong {self.secret_header} header")
        if len(body) > self.max_body:
            return outcome(413, "too-costly", f"body over {self.max_body} bytes")
        return None

    def _resource(self, doc: Resource, tail: str) -> Reply:
        """A rest-hook delivery of one resource (``tail``: the ``Type/id`` after the path)."""
        if not is_id(doc.get("id")):
            return outcome(400, "invalid", "the resource has no id that keeps FHIR's id rule")
        if tail and (split_key(ref_key(tail)) is None or key_of(doc) != ref_key(tail)):
            return outcome(400, "invalid", "resource does not match the URL")
        if doc["resourceType"] not in HANDLED:
            return outcome(422, "not-supported", f"{doc['resourceType']} is not handled")
        if _is_own(doc):
            return Reply(200)  # our own write: never react to it (no loops)
        event = event_of(doc, "rest-hook")
        if event is None:
            return outcome(400, "invalid", "resource has no id")
        self.enqueue(Notification(events=(event,)))
        return Reply(200)

    def _bundle(self, bundle: Resource) -> Reply:
        if bundle.get("type") != "history":
            return outcome(400, "invalid", "a notification Bundle must be of type history")
        kind, subscription, events, since = parse_backport(bundle)
        if kind is None or subscription is None:
            return outcome(400, "invalid", "not a subscription notification (no status entry)")
        sub = ref_key(subscription)
        numbers = [e["number"] for e in events if isinstance(e.get("number"), int)]
        if any(not 0 <= n < MAX_EVENT_NUMBER for n in [*numbers, *([since] if since else [])]):
            return outcome(400, "invalid", "an event number is out of range")
        if kind == "handshake":
            self.counter.observe(sub, [], since)
            return Reply(200)
        gap = self.counter.observe(sub, numbers, since)
        if kind == "heartbeat":
            if gap:
                self.enqueue(Notification(catch_up=True, subscription=sub, kind="heartbeat"))
            return Reply(200)
        if kind not in ("event-notification", "query-event"):
            return outcome(400, "invalid", f"notification type {kind!r} is not handled")
        out = _focus_events(bundle, events)
        if out is None:
            return outcome(400, "invalid", "a notification focus is not a Type/id reference")
        catch_up = gap or any(not isinstance(e.get("focus"), str) for e in events) or not events
        self.enqueue(Notification(events=tuple(out), catch_up=catch_up,
                                  subscription=sub))  # fmt: skip
        return Reply(200)


def _focus_events(bundle: Resource, events: list[Resource]) -> list[ChangeEvent] | None:
    """The changes a notification's events name, each once (the same focus listed many times
    costs one search); None when a focus is not a ``Type/id`` reference."""
    full = {
        f"{r.get('resourceType')}/{r.get('id')}": r
        for e in _items(bundle.get("entry"))[1:]
        if isinstance(r := e.get("resource"), dict)
    }
    out: dict[tuple[str, str | None], ChangeEvent] = {}
    for e in events:
        focus = e.get("focus")
        if not isinstance(focus, str):
            continue  # empty content: nothing but the fact; the caller catches up
        key = ref_key(focus)
        parts = split_key(key)
        if parts is None:
            return None
        kind, rid = parts
        resource = full.get(key)
        if kind not in HANDLED or (resource is not None and _is_own(resource)):
            continue
        event = event_of(resource, "backport") if resource is not None else None
        event = event or ChangeEvent(kind, rid, source="backport")
        out.setdefault((event.key, event.version), event)
    return list(out.values())


def _depth(value: Any) -> int:
    """How deep a parsed JSON value nests (iteratively: no recursion limit to hit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _is_own(resource: Resource) -> bool:
    tags = meta_of(resource).get("tag")
    return any(isinstance(t, dict) and t.get("system") == codes.CS_PATIENT_DAY for t in tags or [])
