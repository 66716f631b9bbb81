"""A small FHIR R4 REST client: read, search (all pages), transaction, capability check.

Standard FHIR REST only, so HAPI FHIR, Epic, Oracle Health or the test server can sit behind it.
Retries live here and only here: 408/429/500/502/503/504 and connection errors are temporary and
retried with exponential backoff, honouring ``Retry-After`` up to a cap; anything else is fatal
and raised with the server's OperationOutcome. A 401 refreshes the token once without counting
as a retry. Delays are parameters so tests run without sleeping. Logs carry methods, resource
types, ids and status codes, never bodies.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode, urljoin, urlsplit
from urllib.request import getproxies

import orjson
import requests
import urllib3
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from adapter.emr.auth import Auth, NoAuth
from adapter.emr.budget import RequestBudget
from adapter.errors import FatalServerError, FhirServerError, TemporaryServerError
from adapter.fhir import jsontext
from adapter.fhir.refs import is_id, is_type

log = logging.getLogger(__name__)
TEMPORARY = frozenset({408, 429, 500, 502, 503, 504})
FHIR_JSON = "application/fhir+json"
Resource = dict[str, Any]
Params = Mapping[str, str] | Sequence[tuple[str, str]]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    attempts: int = 5
    initial_delay: float = 0.5
    max_delay: float = 30.0
    retry_after_cap: float = 120.0
    sleep: Callable[[float], None] = time.sleep


class TruncatedAnswer(FatalServerError):
    """A paged answer longer than the page cap: what was read is only its first part."""


def _proxies_or_netrc() -> bool:
    """Whether the environment sets a proxy or a netrc file (requests applies them per URL).
    ``NO_PROXY`` alone (common on Kubernetes) sets no proxy."""
    if any(scheme != "no" for scheme in getproxies()) or os.environ.get("NETRC"):
        return True
    try:
        return (Path.home() / ".netrc").exists()
    except (RuntimeError, OSError):  # no home directory for this user
        return False


def _body(value: Any) -> bytes | None:
    """A request's JSON body."""
    return None if value is None else jsontext.dumps(value)


def _json(resp: requests.Response) -> Any:
    """An answer's JSON body (orjson: a ``ValueError`` when it is not JSON, as ``.json()``)."""
    return orjson.loads(resp.content)


def _retry_after(value: str | None, cap: float) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, min(seconds, cap))


class FhirClient:
    """A FHIR R4 server at ``base_url``."""

    def __init__(
        self,
        base_url: str,
        auth: Auth | None = None,
        *,
        timeout: tuple[float, float] = (5.0, 60.0),
        retry: RetryPolicy | None = None,
        verify: bool | str = True,
        session: requests.Session | None = None,
        budget: RequestBudget | None = None,
        deadline: float = 300.0,
        max_response_bytes: int = 200_000_000,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # a whole answer within ``deadline`` seconds and ``max_response_bytes`` bytes: the read
        # timeout alone lets a server that drips a byte at a time hold a worker forever
        self.deadline = deadline
        self.max_response_bytes = max_response_bytes
        self.budget = budget  # shared by every worker using this client
        self.auth: Auth = auth or NoAuth()
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.session = session or requests.Session()
        self.session.verify = verify
        if session is None and not _proxies_or_netrc():
            # requests re-reads proxy, CA and netrc settings from the environment on every
            # request (~0.5 ms each): with no proxy and no netrc, read the CA bundle once here
            env_ca = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            if verify is True and env_ca:
                self.session.verify = env_ca
            self.session.trust_env = False
        self.session.headers.update({"Accept": FHIR_JSON, "User-Agent": "therapy-charge-adapter"})
        self.retries = 0  # temporary failures retried, for metrics
        # False once the server refused a ``batch`` Bundle (and answered the same searches one
        # by one): searches then go one by one, and a batch is tried again after a while
        self.batch_supported = True
        self.max_pages = 1000  # of one paged answer
        self.batch_retry_after = 600.0
        self._batch_refused_at = 0.0
        self._identifier_modifier: bool | None = None

    # -- plumbing ---------------------------------------------------------------------------
    def url(self, path: str) -> str:
        """The absolute URL of ``path`` (relative to the base, or absolute, as a server's next
        link is). Only URLs under the configured base are ever requested, so the credentials
        go nowhere else: anything outside it (another host, ``..`` segments, encoded or not)
        is refused before a byte is sent."""
        full = (
            path
            if path.startswith(("http://", "https://"))
            else (f"{self.base_url}/{path.lstrip('/')}" if path else self.base_url)
        )
        if not under_base(full, self.base_url):
            raise FatalServerError("refused: a request outside the configured FHIR base")
        return full

    def _wait(self, state: RetryCallState) -> float:
        err = state.outcome.exception() if state.outcome else None
        hinted = getattr(err, "retry_after", None)
        if isinstance(hinted, float):
            return hinted
        delay = self.retry.initial_delay * (2 ** (state.attempt_number - 1))
        return float(min(delay, self.retry.max_delay))

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send one request with retries on temporary failures; raise on any error status."""

        def before_sleep(state: RetryCallState) -> None:
            self.retries += 1
            err = state.outcome.exception() if state.outcome else None
            log.warning("retrying %s %s after %s", method, path.split("?", maxsplit=1)[0], err)

        retrying = Retrying(
            retry=retry_if_exception_type(TemporaryServerError),
            stop=stop_after_attempt(self.retry.attempts),
            wait=self._wait,
            sleep=self.retry.sleep,
            reraise=True,
            before_sleep=before_sleep,
        )
        for attempt in retrying:
            with attempt:
                return self._send(method, path, params, json_body, headers)
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self,
        method: str,
        path: str,
        params: Params | None,
        json_body: Any,
        headers: Mapping[str, str] | None,
    ) -> requests.Response:
        refreshed = False
        while True:
            url = self.url(path)  # refused before a credential is sent when outside the base
            hdrs = dict(headers or {})
            hdrs.update(self.auth.headers(self.session))
            if json_body is not None:
                hdrs["Content-Type"] = FHIR_JSON
            try:
                with self.budget.slot() if self.budget else nullcontext():
                    resp = self.session.request(
                        method, url, params=params, data=_body(json_body), headers=hdrs,
                        timeout=self.timeout, stream=True,
                    )  # fmt: skip
                    self._read_whole(resp, method, path)
            except requests.Timeout:
                raise TemporaryServerError(f"{method} {path}: timed out") from None
            except requests.ConnectionError:
                raise TemporaryServerError(f"{method} {path}: connection failed") from None
            if resp.status_code == 401 and not refreshed and self.auth.invalidate():
                refreshed = True
                continue
            if resp.status_code < 400:
                return resp
            raise self._error(method, path, resp)

    def _read_whole(self, resp: requests.Response, method: str, path: str) -> None:
        """Read a streamed answer whole, within the deadline and the size limit."""
        started, size, parts = time.monotonic(), 0, []
        try:
            # read1: whatever one socket read brings, so the deadline is checked as bytes drip
            while part := resp.raw.read1(65536, decode_content=True):
                size += len(part)
                if size > self.max_response_bytes:
                    raise FatalServerError(
                        f"{method} {path}: answer over {self.max_response_bytes} bytes"
                    )
                if time.monotonic() - started > self.deadline:
                    raise TemporaryServerError(f"{method} {path}: answer not whole in time")
                parts.append(part)
        except urllib3.exceptions.ReadTimeoutError:
            raise TemporaryServerError(f"{method} {path}: timed out") from None
        except (urllib3.exceptions.HTTPError, OSError):
            raise TemporaryServerError(f"{method} {path}: connection failed") from None
        finally:
            resp.close()
        resp._content = b"".join(parts)  # what .json() and .content read

    def _error(self, method: str, path: str, resp: requests.Response) -> FhirServerError:
        outcome: dict[str, Any] | None = None
        detail = ""
        try:
            body = _json(resp)
            if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
                outcome = body
                detail = "; ".join(
                    _issue_summary(i) for i in body.get("issue", []) if isinstance(i, dict)
                )
        except ValueError:
            pass
        message = f"{method} {path.split('?', maxsplit=1)[0]} answered {resp.status_code}" + (
            f": {detail}" if detail else ""
        )
        if resp.status_code in TEMPORARY:
            err = TemporaryServerError(message, status=resp.status_code, outcome=outcome)
            err.retry_after = _retry_after(  # type: ignore[attr-defined]
                resp.headers.get("Retry-After"), self.retry.retry_after_cap
            )
            return err
        return FatalServerError(message, status=resp.status_code, outcome=outcome)

    # -- FHIR interactions ------------------------------------------------------------------
    def capabilities(self) -> Resource:
        return dict(_json(self.request("GET", "metadata")))

    def read(self, kind: str, rid: str) -> Resource:
        return dict(_json(self.request("GET", _path(kind, rid))))

    def search(self, kind: str, params: Params) -> Iterator[Resource]:
        """Every resource of every page (matches and includes), following ``next`` links."""
        yield from self._pages(_json(self.request("GET", _path(kind), params=params)))

    def supports_subject_identifier(self) -> bool:
        """Whether the server honours ``Procedure?subject:identifier=`` (FHIR's ``:identifier``
        modifier on a reference parameter), asked once: a search for an identifier no
        procedure has must find nothing. A server that refuses the modifier (400) or ignores
        it (answers with procedures) does not; the probe's answer is the only one taken as
        no."""
        if self._identifier_modifier is None:
            probe = [("subject:identifier", "urn:therapy-charge-adapter:probe|none"),
                     ("_count", "1")]  # fmt: skip
            try:
                found = next(iter(self.search("Procedure", probe)), None)
                self._identifier_modifier = found is None
            except FatalServerError as err:
                log.info("the server refuses subject:identifier (%s)", err.status)
                self._identifier_modifier = False
            if not self._identifier_modifier:
                log.warning("the server does not search by subject:identifier: procedures "
                            "whose subject is known only by identifier are not found")  # fmt: skip
        return self._identifier_modifier

    def search_batch(self, searches: Sequence[tuple[str, Params]]) -> list[list[Resource]]:
        """Several searches in one ``batch`` request: each search's resources (matches and
        includes, every page), in the order asked. One round trip where the server answers
        each search in one page; later pages are fetched like ``search`` does. A server that
        refuses batches gets the searches one by one.
        """
        if not searches:
            return []
        if not self.batch_supported:
            if time.monotonic() - self._batch_refused_at < self.batch_retry_after:
                return [list(self.search(kind, params)) for kind, params in searches]
            self.batch_supported = True  # a gateway's passing 404 should not cost us for good
        batch = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                {"request": {"method": "GET", "url": search_url(kind, params)}}
                for kind, params in searches
            ],
        }
        try:
            reply = self.transaction(batch)
        except FatalServerError as err:
            if err.status not in (400, 403, 404, 405, 415, 422, 501):
                raise
            # a server without batch support (several EMR APIs have none), or a read-only
            # SMART client that may search but not POST to the base: the same searches one by
            # one (their own errors, if any, are raised), and one by one for a while
            answers = [list(self.search(kind, params)) for kind, params in searches]
            log.warning("the server refused a batch (%s): searching one by one", err.status)
            self.batch_supported = False
            self._batch_refused_at = time.monotonic()
            return answers
        entries = reply.get("entry") if isinstance(reply, dict) else None
        if not isinstance(entries, list) or len(entries) != len(searches):
            raise FatalServerError(
                f"batch of {len(searches)} searches answered with "
                f"{len(entries) if isinstance(entries, list) else 'no'} entries"
            )
        out: list[list[Resource]] = []
        for (kind, _), entry in zip(searches, entries, strict=True):
            response = entry.get("response") if isinstance(entry, dict) else None
            status = str((response or {}).get("status", "200")).split(" ", 1)[0]
            bundle = entry.get("resource") if isinstance(entry, dict) else None
            if (
                not (status.isascii() and status.isdigit())
                or int(status) >= 400
                or not isinstance(bundle, dict)
            ):
                outcome = bundle if isinstance(bundle, dict) else (response or {}).get("outcome")
                code = int(status) if status.isascii() and status.isdigit() else 502
                message = f"batch search {kind} answered {status}"
                if code in TEMPORARY:
                    raise TemporaryServerError(message, status=code, outcome=outcome)
                raise FatalServerError(message, status=code, outcome=outcome)
            out.append(list(self._pages(bundle)))
        return out

    def history(self, kind: str, params: Params) -> Iterator[Resource]:
        """Every entry (``request``, ``response`` and, unless a delete, ``resource``) of a
        type-level ``_history``, following ``next`` links."""
        first = _json(self.request("GET", f"{_path(kind)}/_history", params=params))
        for page in self._follow(first, truncated_is_error=True):
            yield from (e for e in page.get("entry") or [] if isinstance(e, dict))

    def _pages(self, bundle: Resource) -> Iterator[Resource]:
        """The resources (matches and includes) of a searchset and its later pages."""
        for page in self._follow(bundle):
            for entry in page.get("entry") or []:
                resource = entry.get("resource") if isinstance(entry, dict) else None
                if (
                    isinstance(resource, dict)
                    and resource.get("resourceType") != "OperationOutcome"
                ):
                    yield resource

    def _follow(self, bundle: Resource, *, truncated_is_error: bool = False) -> Iterator[Resource]:
        """A Bundle, then each page its ``next`` links lead to (at most ``max_pages``; beyond
        that a warning, or an error when a partial answer would mislead the caller, as a
        newest-first history would)."""
        max_pages = self.max_pages
        for _ in range(max_pages):
            yield bundle
            nxt = next(
                (ln.get("url") for ln in bundle.get("link") or [] if ln.get("relation") == "next"),
                None,
            )
            if not nxt:
                return
            bundle = _json(self.request("GET", urljoin(self.base_url + "/", nxt)))
        if truncated_is_error:
            raise TruncatedAnswer(f"more than {max_pages} pages: answer not read to its end")
        log.warning("stopped following next links after %d pages", max_pages)

    def transaction(self, bundle: Resource) -> Resource:
        return dict(_json(self.request("POST", "", json_body=bundle)))

    def create(self, resource: Resource) -> Resource:
        path = _path(resource["resourceType"])
        return dict(_json(self.request("POST", path, json_body=resource)))

    def update(self, resource: Resource) -> Resource:
        path = _path(resource["resourceType"], resource["id"])
        return dict(_json(self.request("PUT", path, json_body=resource)))

    def delete(self, kind: str, rid: str) -> None:
        self.request("DELETE", _path(kind, rid))


def _path(kind: str, rid: str | None = None) -> str:
    """``Type`` or ``Type/id`` from validated parts (a type name, FHIR's id rule): never a path
    of its own making."""
    if not is_type(kind):
        raise FatalServerError(f"refused: {kind!r} is not a resource type")
    if rid is None:
        return kind
    if not is_id(rid):
        raise FatalServerError(f"refused: {kind} id {rid!r} breaks FHIR's id rule")
    return f"{kind}/{rid}"


_SAFE_TOKEN = re.compile(r"^[A-Za-z0-9_.\-\[\]()]{1,100}$")


def _issue_summary(issue: Mapping[str, Any]) -> str:
    """An OperationOutcome issue as its code and the elements it names (``expression``), never
    its free text: ``diagnostics`` and ``details.text`` can quote patient data or a header, and
    this message reaches logs and the store. The whole outcome stays on the exception."""
    code = issue.get("code") if isinstance(issue.get("code"), str) else "issue"
    where = [
        e for e in issue.get("expression") or [] if isinstance(e, str) and _SAFE_TOKEN.match(e)
    ]
    return f"{code} at {', '.join(where[:5])}" if where else str(code)


def under_base(url: str, base: str) -> bool:
    """Whether ``url`` is the FHIR base or below it: same scheme, host and port, and a path that,
    decoded and with dot segments resolved, starts with the base's path."""
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        return False  # urlsplit drops tabs and newlines before they can be seen
    target, root = urlsplit(url), urlsplit(base)
    if (target.scheme.lower(), target.netloc.lower()) != (root.scheme.lower(), root.netloc.lower()):
        return False
    path = unquote(target.path)
    # ';' path parameters ('..;/' is '..' to Tomcat and Jetty) and anything still encoded
    # after one decoding ('%252e') are never followed
    if "\\" in path or ";" in path or "%" in path:
        return False
    resolved = posixpath.normpath("/" + path.lstrip("/")) if path else "/"
    base_path = posixpath.normpath("/" + root.path.strip("/")) if root.path.strip("/") else "/"
    return resolved == base_path or resolved.startswith(base_path.rstrip("/") + "/")


def search_url(kind: str, params: Params) -> str:
    """``Kind?a=1&b=2`` for a batch entry: values percent-encoded, but references (``/``),
    token systems (``|``), prefixes and ``_include`` targets (``:``) kept readable.
    """
    items = list(params.items()) if isinstance(params, Mapping) else list(params)
    path = _path(kind)
    return f"{path}?{urlencode(items, safe='/:|,')}" if items else path


@dataclass(frozen=True, slots=True)
class Capability:
    ok: bool
    what: str
    detail: str


REQUIRED_READ = (
    "Procedure",
    "Encounter",
    "Practitioner",
    "PractitionerRole",
    "Coverage",
    "CarePlan",
)
REQUIRED_WRITE = ("ChargeItem", "Claim", "Communication", "Provenance")


def check_capabilities(
    statement: Resource, *, write: bool = True, subscriptions: bool = False
) -> list[Capability]:
    """What the adapter needs from a CapabilityStatement, one line each."""
    rest = next((r for r in statement.get("rest") or [] if r.get("mode") == "server"), None)
    if rest is None:
        rest = (statement.get("rest") or [{}])[0]
    resources = {r.get("type"): r for r in rest.get("resource") or []}
    system = {i.get("code") for i in rest.get("interaction") or []}

    def has(kind: str, *codes: str) -> bool:
        ints = {i.get("code") for i in resources.get(kind, {}).get("interaction") or []}
        return kind in resources and all(c in ints for c in codes)

    out = [
        Capability(
            has(k, "read", "search-type"),
            f"{k} read and search",
            "" if has(k, "read", "search-type") else "missing",
        )
        for k in REQUIRED_READ
    ]
    # not required, but each changes how the adapter works: said, not failed
    out.append(
        Capability(
            True,
            "batch searches",
            "" if "batch" in system else "not declared: a day's searches go one by one (slower)",
        )
    )
    for k in ("Procedure", "Encounter"):
        out.append(
            Capability(
                True,
                f"{k} history",
                ""
                if has(k, "history-type")
                else "not declared: polling cannot see deletes (use entered-in-error)",
            )
        )
    if write:
        for k in REQUIRED_WRITE:
            ok = has(k, "create") or has(k, "update")
            out.append(Capability(ok, f"{k} write", "" if ok else "no create/update interaction"))
        out.append(
            Capability(
                "transaction" in system,
                "transactions",
                "" if "transaction" in system else "missing",
            )
        )
    if subscriptions:
        ok = has("Subscription", "create")
        out.append(Capability(ok, "Subscription create", "" if ok else "missing"))
    return out
