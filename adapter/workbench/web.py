"""The workbench's pages (Starlette, Jinja2, server-drawn SVG; no script at all): sign-in, the
queue, a day, decisions, reports and CSV exports, mounted at ``/review`` on the adapter's
ASGI application.

Every page needs a signed-in user: a session cookie signed with the site's secret
(``SameSite=Lax``, so that the sign-in provider's redirect back carries it; ``HttpOnly``;
``Secure`` unless configured off), ended after ``idle`` seconds without a request and
``max_age`` after sign-in. Every form carries the session's CSRF token, and a post whose
``Origin`` is another site's is refused. Every decision is appended to the store with who
made it, the role and the reason; then the day is recomputed (the override reaches every
target as a normal change) and the decision is written to the
EMR as an ``AuditEvent``. Logs carry user names, day keys and counts only.
"""

from __future__ import annotations

import csv
import hmac
import io
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import anyio
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapter.domain import PatientDay
from adapter.fhir.refs import is_id
from adapter.store import SqlStore
from adapter.store.review import KINDS, SORTS, QueueFilter, ReviewRow
from adapter.workbench import charts, reports
from adapter.workbench.auth import (
    DUMMY,
    NEEDS,
    ROLES,
    Oidc,
    SessionRules,
    can,
    check_password,
)
from adapter.workbench.state import day_review

log = logging.getLogger(__name__)
#: what the day page says after a decision (the URL carries the code only)
MESSAGES = {
    "saved": "Saved.",
    "recomputed": "Saved; the day was recomputed.",
    "later": "Saved; the EMR did not answer, so the day will be recomputed as soon as it does.",
    "changed": "The day changed since you opened it: look again.",
    "no-line": "No such line on the day now.",
    "not-releasable": "That finding holds nothing a person may release.",
    "held": "The day is held: release it first.",
    "no-revert": "Nothing to revert.",
    "reason": "A reason is required.",
    "long-reason": "The reason is longer than 500 characters.",
    "units": "Units are a whole number.",
    "unknown-modifier": "Unknown modifier: use those of modifiers.toml.",
    "nothing-set": "Give the units or the modifiers to set.",
    "busy": "Too many decisions on this day just now: wait a minute.",
}
HERE = Path(__file__).parent
PAGE = 50
MAX_REASON = 500
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_MODIFIER = re.compile(r"[A-Z0-9]{2}")
_FAILURES_MAX, _LOCKOUT = 5, 300.0
#: the kv key of the time a user signed out (or got a new password): older sessions end
SIGNED_OUT = "workbench:signed-out:"
#: decisions one user may make on one day in a minute
_DECISIONS_PER_MINUTE = 20


@dataclass
class Workbench:
    """What the pages need: the store, and the service's hooks for a decision."""

    store: SqlStore
    session: SessionRules
    #: recompute a day now (the service's sync); raises when the EMR is away
    resync: Callable[[PatientDay], object]
    #: write the pending decisions to the EMR as AuditEvents (returns how many)
    audit: Callable[[], int]
    #: recompute the day later (the EMR did not answer the decision's recompute)
    resync_later: Callable[[PatientDay], None] = lambda day: None
    targets: Sequence[str] = ()  # the delivery targets' names (the day's delivery state)
    modifiers: frozenset[str] = frozenset()  # the modifiers an override may use
    oidc: Oidc | None = None
    clock: Callable[[], float] = time.time
    _failures: dict[str, list[float]] = field(default_factory=dict)
    _paces: dict[str, list[float]] = field(default_factory=dict)


class SecurityHeaders:
    """Headers on every answer: no script, no framing, no caching, no referrer to other sites
    (same-origin: the browser then names the origin of a form it posts, which is checked)."""

    def __init__(self, app: ASGIApp, secure: bool) -> None:
        self.app = app
        self.headers = [
            (
                b"content-security-policy",
                b"default-src 'none'; style-src 'self'; img-src 'self' "
                b"data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"same-origin"),
            (b"cache-control", b"no-store"),
            (b"cross-origin-opener-policy", b"same-origin"),
            *([(b"strict-transport-security", b"max-age=31536000")] if secure else []),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        await self.app(scope, receive, with_headers)


def workbench_app(wb: Workbench) -> ASGIApp:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        auto_reload=False,
    )
    env.filters["money"] = _money
    env.filters["when"] = lambda t: time.strftime("%Y-%m-%d %H:%M", time.gmtime(float(t)))
    pages = _Pages(wb, env)
    routes = [
        Route("/login", pages.login, methods=["GET", "POST"]),
        Route("/logout", pages.logout, methods=["POST"]),
        Route("/oidc/login", pages.oidc_login),
        Route("/oidc/callback", pages.oidc_callback),
        Route("/", pages.queue),
        Route("/queue.csv", pages.queue_csv),
        Route("/days/{key}", pages.day),
        Route("/days/{key}/act", pages.act, methods=["POST"]),
        Route("/reports", pages.reports),
        Route("/reports/{name}.csv", pages.report_csv),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [
        Middleware(
            SessionMiddleware,
            secret_key=wb.session.secret,
            session_cookie="wb_session",
            max_age=wb.session.max_age,
            same_site="lax",
            https_only=wb.session.secure,
            path="/review",
        ),
    ]
    app = Starlette(routes=routes, middleware=middleware)
    # outermost: the headers on every answer (a 500 too), and a small body read in time
    return SecurityHeaders(BodyLimit(app), secure=wb.session.secure)


class BodyLimit:
    """A request body of at most ``max_body`` bytes (the workbench's forms are small), read
    within ``timeout`` seconds: a longer one is refused with 413, a slower one with 408,
    before any page sees it."""

    def __init__(self, app: ASGIApp, max_body: int = 64_000, timeout: float = 10.0) -> None:
        self.app = app
        self.max_body = max_body
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        try:
            with anyio.fail_after(self.timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    size += len(message.get("body", b""))
                    if size > self.max_body:
                        await _refuse(send, 413, b"request body too large")
                        return
                    chunks.append(message.get("body", b""))
                    if not message.get("more_body"):
                        break
        except TimeoutError:
            await _refuse(send, 408, b"request body too slow")
            return
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _refuse(send: Send, status: int, text: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": text})


def _money(cents: Any) -> str:
    if cents is None:
        return "—"
    value = int(cents) / 100 if isinstance(cents, int) else float(cents)
    return f"${value:,.2f}"


class _Pages:
    def __init__(self, wb: Workbench, env: Environment) -> None:
        self.wb = wb
        self.env = env
        self.oauth: Any = None
        if wb.oidc is not None:
            from authlib.integrations.starlette_client import (  # type: ignore[import-untyped]  # noqa: PLC0415
                OAuth,
            )

            self.oauth = OAuth()
            self.oauth.register(
                "site",
                client_id=wb.oidc.client_id,
                client_secret=wb.oidc.client_secret,
                server_metadata_url=f"{wb.oidc.issuer.rstrip('/')}/.well-known/openid-configuration",
                client_kwargs={"scope": wb.oidc.scope, "code_challenge_method": "S256"},
            )

    # -- the session ---------------------------------------------------------------------------
    def _user(self, request: Request) -> tuple[str, str] | None:
        s = request.session
        user, role = s.get("user"), s.get("role")
        now = self.wb.clock()
        if not isinstance(user, str) or not isinstance(role, str):
            return None
        issued, seen = float(s.get("issued", 0)), float(s.get("seen", 0))
        if now - issued > self.wb.session.max_age or now - seen > self.wb.session.idle:
            s.clear()
            return None
        out = self.wb.store.get_value(f"{SIGNED_OUT}{user}")
        if out is not None and issued <= float(out):  # signed out (or a new password) since
            s.clear()
            return None
        if s.get("via") != "oidc":  # a local user disabled or changed since: out
            found = self.wb.store.user_get(user)
            if found is None or found[2] or found[1] != role:
                s.clear()
                return None
        s["seen"] = now
        return user, role

    @staticmethod
    def _csrf(request: Request) -> str:
        token = request.session.get("csrf")
        if not isinstance(token, str):
            token = secrets.token_urlsafe(32)
            request.session["csrf"] = token
        return token

    @staticmethod
    def _same_origin(request: Request) -> bool:
        origin = request.headers.get("origin")
        if origin is None or origin == "null":
            return origin is None
        host = request.headers.get("host", "")
        return urlsplit(origin).netloc == host

    async def _form(self, request: Request) -> Mapping[str, str] | None:
        """The posted form when its CSRF token is the session's and it comes from this site."""
        if not self._same_origin(request):
            return None
        form = await request.form(max_files=0, max_fields=50)
        values = {k: v for k, v in form.items() if isinstance(v, str)}
        token = request.session.get("csrf")
        sent = values.get("csrf", "")
        if not isinstance(token, str) or not hmac.compare_digest(token, sent):
            return None
        return values

    def _render(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        who: tuple[str, str] | None = (
            self._user(request) if "user" not in context else context.pop("user")
        )
        html = self.env.get_template(name).render(
            user=who,
            csrf=self._csrf(request),
            can=lambda need: who is not None and can(who[1], need),
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def _login_redirect(self, request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/review/login?{urlencode({'next': target})}", status_code=303)

    # -- sign-in -------------------------------------------------------------------------------
    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            return self._render(
                request,
                "login.html",
                user=None,
                error=None,
                next=_next(request.query_params.get("next")),
                oidc=self.wb.oidc is not None,
            )
        form = await self._form(request)
        if form is None:
            return self._render(
                request,
                "login.html",
                status=403,
                user=None,
                oidc=False,
                error="The form expired; sign in again.",
                next="/review/",
            )
        name = form.get("username", "").strip()[:100]
        password = form.get("password", "")
        client = request.client.host if request.client else ""
        role = await run_in_threadpool(self._check, name, password, client)
        if role is None:
            log.warning("workbench: sign-in refused for a user")
            return self._render(
                request,
                "login.html",
                status=401,
                user=None,
                oidc=False,
                error="Wrong user name or password (or too many tries).",
                next=_next(form.get("next")),
            )
        self._start(request, name, role)
        log.info("workbench: %s signed in (%s)", name, role)
        return RedirectResponse(_next(form.get("next")), status_code=303)

    def _check(self, name: str, password: str, client: str = "") -> str | None:
        """The user's role when the password is right; five wrong ones lock the name for
        five minutes from that client (a client elsewhere cannot lock a user out)."""
        now = self.wb.clock()
        slot = f"{client}|{name}"
        tries = [t for t in self.wb._failures.get(slot, []) if now - t < _LOCKOUT]
        found = self.wb.store.user_get(name) if name else None
        ok = check_password(password, found[0] if found else DUMMY)
        if len(tries) >= _FAILURES_MAX:  # locked: a try now neither counts nor extends it
            return None
        if not ok or found is None or found[2]:
            if len(self.wb._failures) > 10_000:  # names tried long ago are forgotten
                self.wb._failures = {k: v for k, v in self.wb._failures.items()
                                     if now - v[-1] < _LOCKOUT}  # fmt: skip
            self.wb._failures[slot] = [*tries, now][-_FAILURES_MAX:]
            return None
        self.wb._failures.pop(slot, None)
        return found[1]

    def _start(self, request: Request, name: str, role: str, via: str = "local") -> None:
        request.session.clear()  # a new session on sign-in (no fixation)
        now = self.wb.clock()
        request.session.update(
            {
                "user": name,
                "role": role,
                "issued": now,
                "seen": now,
                "via": via,
                "csrf": secrets.token_urlsafe(32),
            }
        )

    async def logout(self, request: Request) -> Response:
        if await self._form(request) is None:
            return HTMLResponse("The form expired or came from elsewhere", status_code=403)
        user = request.session.get("user")
        if isinstance(user, str):  # every session of the user ends, this cookie's and others'
            self.wb.store.set_value(f"{SIGNED_OUT}{user}", repr(self.wb.clock()))
        request.session.clear()
        return RedirectResponse("/review/login", status_code=303)

    async def oidc_login(self, request: Request) -> Response:
        if self.oauth is None:
            return HTMLResponse("OpenID Connect is not configured", status_code=404)
        redirect = str(request.url.replace(path="/review/oidc/callback", query=""))
        answer: Response = await self.oauth.site.authorize_redirect(request, redirect)
        return answer

    async def oidc_callback(self, request: Request) -> Response:
        if self.oauth is None or self.wb.oidc is None:
            return HTMLResponse("OpenID Connect is not configured", status_code=404)
        try:
            token = await self.oauth.site.authorize_access_token(request)
        except Exception as err:  # the provider refused, or the state is wrong
            log.warning("workbench: OpenID Connect sign-in failed: %s", type(err).__name__)
            return HTMLResponse("Sign-in failed", status_code=401)
        claims = dict(token.get("userinfo") or {})
        role = self.wb.oidc.role_of(claims)
        # named apart from the local users (an audit entry never confuses the two)
        name = "oidc:" + str(claims.get("preferred_username") or claims.get("email")
                             or claims.get("sub"))  # fmt: skip
        if role is None:
            log.warning("workbench: an OpenID Connect user without a workbench role")
            return HTMLResponse("Your account has no workbench role", status_code=403)
        self._start(request, name, role, via="oidc")
        log.info("workbench: %s signed in by OpenID Connect (%s)", name, role)
        return RedirectResponse("/review/", status_code=303)

    # -- the queue -----------------------------------------------------------------------------
    def _filter(self, request: Request) -> tuple[QueueFilter, str]:
        q = request.query_params

        def text(name: str) -> str | None:
            value = (q.get(name) or "").strip()
            return value[:100] if value else None

        def day(name: str) -> str | None:
            value = text(name)
            return value if value and _DATE.fullmatch(value) else None

        status = q.get("status") or "open"
        sort = q.get("sort") or "risk"
        f = QueueFilter(
            clinic=text("clinic"),
            payer=text("payer"),
            clinician=text("clinician"),
            finding=text("finding"),
            kind=text("kind") if text("kind") in KINDS else None,
            date_from=day("from"),
            date_to=day("to"),
            status=status if status in ("open", "held", "done", "all") else "open",
        )
        return f, sort if sort in SORTS else "risk"

    async def queue(self, request: Request) -> Response:
        if self._user(request) is None:
            return self._login_redirect(request)
        f, sort = self._filter(request)
        after = _cursor(request.query_params.get("after"), sort)
        rows, count, choices = await run_in_threadpool(self._queue_page, f, sort, after)
        base = {k: v for k, v in request.query_params.items() if k != "after"}
        more = None
        if len(rows) > PAGE:
            rows = rows[:PAGE]
            last = rows[-1]
            column = SORTS[sort][0]
            more = urlencode({**base, "after": f"{getattr(last, column)}~{last.day}"})
        return self._render(
            request,
            "queue.html",
            rows=rows,
            count=count,
            choices=choices,
            f=f,
            sort=sort,
            more=more,
            params=base,
            kinds=KINDS,
            first=after is None,
            csv=urlencode(base),
        )

    def _queue_page(
        self, f: QueueFilter, sort: str, after: tuple[Any, str] | None
    ) -> tuple[list[ReviewRow], int, dict[str, list[str]]]:
        rows = self.wb.store.review_queue(f, sort=sort, after=after, limit=PAGE + 1)
        return rows, self.wb.store.review_count(f), self.wb.store.review_choices()

    async def queue_csv(self, request: Request) -> Response:
        if self._user(request) is None:
            return self._login_redirect(request)
        f, sort = self._filter(request)
        rows = await run_in_threadpool(self.wb.store.review_queue, f, sort=sort, limit=100_000)
        header = [
            "day",
            "patient",
            "date",
            "payer",
            "clinic",
            "status",
            "errors",
            "warnings",
            "held",
            "unpriced",
            "rejected",
            "auth_low",
            "at_risk",
            "total",
            "findings",
            "clinicians",
            "version",
        ]
        body = [
            [
                r.day,
                r.patient,
                r.dos,
                r.payer,
                r.clinic,
                r.status,
                r.errors,
                r.warnings,
                r.held,
                r.unpriced,
                r.rejected,
                r.auth_low,
                f"{r.at_risk / 100:.2f}",
                f"{r.total / 100:.2f}",
                " ".join(r.findings),
                " ".join(r.clinicians),
                r.version,
            ]
            for r in rows
        ]
        return _csv("queue.csv", header, body)

    # -- a day ---------------------------------------------------------------------------------
    def _key(self, request: Request) -> str | None:
        key = str(request.path_params.get("key", ""))
        try:
            day = PatientDay.from_key(key)
        except ValueError:
            return None
        return key if is_id(day.patient.split("/", 1)[1]) else None

    async def day(self, request: Request) -> Response:
        if self._user(request) is None:
            return self._login_redirect(request)
        key = self._key(request)
        row = self.wb.store.review_row(key) if key else None
        if key is None or row is None:
            return self._render(request, "missing.html", status=404)
        versions, actions, deliveries, written = await run_in_threadpool(self._day_data, key)
        body = versions[0][3] if versions else {}
        reverted = {int(a.payload.get("action", 0)) for a in actions if a.action == "revert"}
        return await run_in_threadpool(
            self._render,
            request,
            "day.html",
            row=row,
            body=body,
            versions=versions,
            actions=actions,
            reverted=reverted,
            deliveries=deliveries,
            written=written,
            timeline=charts.timeline(body.get("periods", []), body.get("findings", [])),
            modifiers=sorted(self.wb.modifiers),
            message=MESSAGES.get(request.query_params.get("m") or ""),
        )

    def _day_data(self, key: str) -> tuple[Any, Any, Any, Any]:
        store = self.wb.store
        versions = store.review_versions(key)
        actions = store.review_actions(key)
        deliveries = [(t, store.outbox_rows_for_day(t, key)) for t in self.wb.targets]
        ledger = store.ledger_get(key)
        return versions, actions, deliveries, ledger

    async def act(self, request: Request) -> Response:
        who = self._user(request)
        if who is None:
            return HTMLResponse("Sign in first", status_code=401)
        form = await self._form(request)
        if form is None:
            log.warning("workbench: a decision without a valid CSRF token was refused")
            return HTMLResponse("The form expired or came from elsewhere", status_code=403)
        key = self._key(request)
        row = self.wb.store.review_row(key) if key else None
        if key is None or row is None:
            return HTMLResponse("No such day", status_code=404)
        action = form.get("action", "")
        need = NEEDS.get(action)
        if need is None:
            return HTMLResponse("No such decision", status_code=400)
        if action == "revert":  # undoing a decision needs the role that made it
            target = form.get("target", "")
            made = [a for a in self.wb.store.review_actions(key)
                    if target.isascii() and target.isdigit() and a.id == int(target)]  # fmt: skip
            if made and made[0].action in NEEDS:
                need = max(need, NEEDS[made[0].action], key=ROLES.index)
        if not can(who[1], need):
            log.warning("workbench: %s (%s) may not %s", who[0], who[1], action)
            return HTMLResponse(f"Your role may not {action}", status_code=403)
        if not self._pace(f"{who[0]}|{key}"):
            return self._back(key, MESSAGES["busy"])
        if form.get("version") != str(row.version):
            return self._back(key, MESSAGES["changed"])
        payload, problem = self._payload(action, form)
        reason = form.get("reason", "").strip()
        if problem is None and action not in ("rerun", "done", "reopen") and not reason:
            problem = MESSAGES["reason"]
        if problem is None and len(reason) > MAX_REASON:
            problem = MESSAGES["long-reason"]
        if problem is not None:
            return self._back(key, problem)
        return await run_in_threadpool(
            lambda: self._decide(key, who, action, payload=payload, reason=reason, row=row)
        )

    def _pace(self, slot: str) -> bool:
        """Whether one more decision fits the user's pace on the day."""
        now = self.wb.clock()
        recent = [t for t in self.wb._paces.get(slot, []) if now - t < 60]
        if len(recent) >= _DECISIONS_PER_MINUTE:
            return False
        if len(self.wb._paces) > 10_000:
            self.wb._paces = {k: v for k, v in self.wb._paces.items() if now - v[-1] < 60}
        self.wb._paces[slot] = [*recent, now]
        return True

    def _payload(self, action: str, form: Mapping[str, str]) -> tuple[dict[str, Any], str | None]:
        if action == "override":
            return self._override(form)
        if action == "release":
            ids = sorted(i for i in form.get("interventions", "").split(",") if i)
            return {"finding": form.get("finding", ""), "interventions": ids}, None
        if action == "revert":
            target = form.get("target", "")
            return (
                ({"action": int(target)}, None)
                if target.isascii() and target.isdigit() and len(target) < 18
                else ({}, MESSAGES["no-revert"])
            )
        return {}, None

    def _override(self, form: Mapping[str, str]) -> tuple[dict[str, Any], str | None]:
        parts = form.get("line", "").split("|")
        if len(parts) != 3:
            return {}, MESSAGES["no-line"]
        code, discipline, mods = parts
        payload: dict[str, Any] = {
            "code": code,
            "discipline": discipline,
            "modifiers": [m for m in mods.split("-") if m],
        }
        units = form.get("units", "").strip()
        if units:
            if not (units.isascii() and units.isdigit()) or int(units) > 99:
                return {}, MESSAGES["units"]
            payload["units"] = int(units)
        new = form.get("modifiers", "").strip()
        if new:
            given = [m.strip().upper() for m in re.split(r"[\s,\-]+", new) if m.strip()]
            wrong = [
                m
                for m in given
                if not _MODIFIER.fullmatch(m) or (self.wb.modifiers and m not in self.wb.modifiers)
            ]
            if wrong:
                return {}, MESSAGES["unknown-modifier"]
            payload["new_modifiers"] = given
        if "units" not in payload and "new_modifiers" not in payload:
            return {}, MESSAGES["nothing-set"]
        return payload, None

    def _decide(
        self,
        key: str,
        who: tuple[str, str],
        action: str,
        *,
        payload: dict[str, Any],
        reason: str,
        row: ReviewRow,
    ) -> Response:
        store = self.wb.store
        latest = store.review_versions(key, limit=1)[0][3]
        problem = self._check_decision(key, action, payload, latest)
        if problem is not None:
            return self._back(key, problem)
        action_id = store.review_act(
            key,
            user=who[0],
            role=who[1],
            action=action,
            payload=payload,
            reason=reason,
            version=row.version,
        )
        log.info("workbench: %s %s day %s (decision %d)", who[0], action, key, action_id)
        _, held = day_review(store.review_actions(key))
        if held:  # the decisions' hold is the truth the status shows
            store.review_set_status(key, "held")
        elif action == "done":
            store.review_set_status(key, "done")
        elif action in ("reopen", "unhold", "revert") or row.status == "held":
            store.review_set_status(key, "open")
        note = MESSAGES["saved"]
        if action not in ("done", "reopen"):
            day = PatientDay.from_key(key)
            try:
                self.wb.resync(day)
                note = MESSAGES["recomputed"]
            except Exception as err:  # the EMR away: the decision stands, the day waits
                log.warning("workbench: day %s not recomputed: %s", key, type(err).__name__)
                self.wb.resync_later(day)
                note = MESSAGES["later"]  # fmt: skip
        try:
            self.wb.audit()
        except Exception as err:
            log.warning("workbench: audit not written yet: %s", type(err).__name__)
        return self._back(key, note)

    def _check_decision(
        self, key: str, action: str, payload: Mapping[str, Any], latest: Mapping[str, Any]
    ) -> str | None:
        """Why a decision cannot be made on the day as it is now (None: it can)."""
        if action == "override":
            keys = {ln.get("key") for ln in latest.get("lines") or []}
            named = "|".join(
                [payload["code"], payload["discipline"], "-".join(payload["modifiers"])]
            )
            return None if named in keys else MESSAGES["no-line"]
        if action == "release":
            ok = any(f.get("code") == payload.get("finding") and f.get("releasable")
                     and sorted(f.get("interventions") or []) == payload.get("interventions")
                     for f in latest.get("findings") or [])  # fmt: skip
            return None if ok else MESSAGES["not-releasable"]
        if action == "done" and day_review(self.wb.store.review_actions(key))[1]:
            return MESSAGES["held"]
        if action == "revert":
            mine = [a for a in self.wb.store.review_actions(key) if a.id == payload["action"]]
            if not mine or mine[0].action not in ("override", "release", "hold"):
                return MESSAGES["no-revert"]
        return None

    @staticmethod
    def _back(key: str, message: str) -> Response:
        """Back to the day with one of ``MESSAGES``, by its code (no text from the URL is
        ever shown)."""
        code = next((c for c, text in MESSAGES.items() if text == message), "saved")
        return RedirectResponse(f"/review/days/{key}?{urlencode({'m': code})}", status_code=303)

    # -- reports -------------------------------------------------------------------------------
    async def reports(self, request: Request) -> Response:
        if self._user(request) is None:
            return self._login_redirect(request)
        span = _span(request)
        tables = await run_in_threadpool(reports.all_reports, self.wb.store, *span)
        drawn = {name: charts.chart(t) for name, t in tables.items()}
        return self._render(request, "reports.html", tables=tables, charts=drawn, span=span)

    async def report_csv(self, request: Request) -> Response:
        if self._user(request) is None:
            return self._login_redirect(request)
        name = str(request.path_params["name"])
        if name not in reports.REPORTS:
            return HTMLResponse("No such report", status_code=404)
        table = await run_in_threadpool(reports.REPORTS[name], self.wb.store, *_span(request))
        return _csv(f"{name}.csv", table.header, table.rows)


def _cursor(text: str | None, sort: str) -> tuple[Any, str] | None:
    if not text or "~" not in text:
        return None
    value, _, day = text.partition("~")
    column = SORTS[sort][0]
    if len(value) > 30:  # no sort value is longer (a longer one overflows the database)
        return None
    try:
        parsed: Any = (
            int(value) if column == "at_risk" else float(value) if column == "first_seen" else value
        )
    except ValueError:
        return None
    if isinstance(parsed, int) and abs(parsed) >= 2**62:
        return None
    return parsed, day[:200]


def _next(value: str | None) -> str:
    """Where to go after sign-in: a workbench path only (never another site)."""
    if value and value.startswith("/review/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/review/"


def _span(request: Request) -> tuple[str | None, str | None]:
    q = request.query_params
    start, end = q.get("from") or "", q.get("to") or ""
    return (start if _DATE.fullmatch(start) else None, end if _DATE.fullmatch(end) else None)


def _csv(name: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for r in rows:  # a cell a spreadsheet would run as a formula is quoted as text
        writer.writerow(
            ["'" + c if isinstance(c, str) and c and c[0] in "=+-@\t\r" else c for c in r]
        )
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )
