"""The workbench's pages without an EMR (the day records from the fixture library; the
recompute hook does nothing here: the browser test covers it end to end): what an attacker
tried (issue 18's security review). Sessions end everywhere on sign-out; crafted parameters
answer as pages, never a 500; messages are codes; a day's decisions are never cut short; the
timeline of a years-long period stays small; bodies are small and quick; decisions are paced."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from adapter.intake.webhook import Receiver
from adapter.mappings import load_rulebook
from adapter.pipeline import Options
from adapter.replay import decisions
from adapter.store import SqlStore, open_store
from adapter.web.server import WebhookServer, WebServer
from adapter.workbench import charts
from adapter.workbench.auth import SessionRules, hash_password
from adapter.workbench.state import day_review, record
from adapter.workbench.web import BodyLimit, Workbench, workbench_app

FIXTURES = Path(__file__).parents[2] / "fixtures"
RULEBOOK = load_rulebook()
PASSWORD = "a long enough password"
DAY = "stroke-same-code-overlap-same-pt"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, SqlStore]]:
    store = open_store(tmp_path / "w.db")
    for r, d in decisions([FIXTURES / DAY, FIXTURES / "sci-time-missing"], RULEBOOK, Options()):
        key = d.patient_id.split("/")[-1] + ":" + d.service_date.isoformat()
        summary, body = record(d, r.parsed.day, "", RULEBOOK)
        store.review_put(key, summary, body, "sync")
    for name, role in (("biller1", "biller"), ("manager1", "manager")):
        store.user_put(name, hash_password(PASSWORD), role)
    wb = Workbench(store=store, session=SessionRules(secret="w" * 40, secure=False),
                   resync=lambda day: None, audit=lambda: 0,
                   modifiers=frozenset(RULEBOOK.modifiers.order))  # fmt: skip
    server = WebhookServer(Receiver(lambda n: None, secret="x"), port=0,
                           mounts=[("/review", workbench_app(wb))])  # fmt: skip
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}/review", store
    finally:
        server.stop()
        store.close()


def _signed_in(base: str, user: str) -> tuple[requests.Session, str]:
    http = requests.Session()
    token = re.search(r'name="csrf" value="([^"]+)"', http.get(f"{base}/login", timeout=10).text)
    assert token
    answer = http.post(f"{base}/login", timeout=10, data={
        "csrf": token[1], "username": user, "password": PASSWORD})  # fmt: skip
    page = answer.text
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert answer.status_code == 200 and found
    return http, found[1]


def _key(store: SqlStore) -> str:
    from adapter.store.review import QueueFilter

    return next(r.day for r in store.review_queue(QueueFilter(status="all"))
                if r.patient.split("/")[-1].startswith("stroke"))  # fmt: skip


def test_signing_out_ends_every_copy_of_the_session(site: tuple[str, SqlStore]) -> None:
    base, _ = site
    http, token = _signed_in(base, "biller1")
    cookie = http.cookies.get("wb_session")
    assert http.post(f"{base}/logout", data={"csrf": token}, timeout=10).status_code == 200
    thief = requests.Session()
    thief.cookies.set("wb_session", cookie, path="/review")
    replayed = thief.get(f"{base}/", timeout=10, allow_redirects=False)
    assert replayed.status_code == 303 and "/review/login" in replayed.headers["location"]


def test_crafted_parameters_answer_as_pages(site: tuple[str, SqlStore]) -> None:
    base, store = site
    http, token = _signed_in(base, "biller1")
    key = _key(store)
    for query in ("after=99999999999999999999~a", "after=1e999~x", "sort=risk&after=-~~",
                  "from=2026-99-99", "kind=%00", "status=x"):  # fmt: skip
        page = http.get(f"{base}/?{query}", timeout=10)
        assert page.status_code == 200, query
        assert "default-src 'none'" in page.headers["content-security-policy"]
    act = f"{base}/days/{key}/act"
    version = str(store.review_row(key).version)
    for form in ({"action": "override", "line": "97110|PT|GP", "units": "²", "reason": "r"},
                 {"action": "revert", "target": "²", "reason": "r"}):  # fmt: skip
        answer = http.post(act, timeout=10, data={**form, "csrf": token, "version": version})
        assert answer.status_code == 200 and 'class="note"' in answer.text
    # the message is a code: text in the URL is never shown
    spoof = http.get(f"{base}/days/{key}?m=Session+expired+go+to+evil.example", timeout=10)
    assert "evil.example" not in spoof.text
    # missing pages and errors carry the headers too
    missing = http.get(f"{base}/nowhere", timeout=10)
    assert missing.status_code == 404 and "content-security-policy" in missing.headers


def test_a_days_decisions_are_never_cut_short(site: tuple[str, SqlStore]) -> None:
    """600 re-runs, then a manager's hold: the day is held (the rules read all decisions)."""
    _, store = site
    key = _key(store)
    for _ in range(600):
        store.review_act(key, user="b1", role="biller", action="rerun", payload={}, reason="",
                         version=1)  # fmt: skip
    store.review_act(key, user="m1", role="manager", action="hold", payload={}, reason="h",
                     version=1)  # fmt: skip
    assert day_review(store.review_actions(key))[1]


def test_decisions_are_paced(site: tuple[str, SqlStore]) -> None:
    base, store = site
    http, token = _signed_in(base, "biller1")
    key = _key(store)
    version = str(store.review_row(key).version)
    notes = []
    for _ in range(22):
        rerun = {"csrf": token, "action": "rerun", "version": version}
        page = http.post(f"{base}/days/{key}/act", timeout=10, data=rerun).text
        notes.append("Too many decisions" in page)
    assert notes[:20] == [False] * 20 and notes[20:] == [True, True]
    assert len(store.review_actions(key)) == 20


def test_a_years_long_period_draws_a_small_timeline() -> None:
    periods = [{"id": "Procedure/a", "code": "97110", "start": "2026-03-02T09:00:00-05:00",
                "end": "2036-03-02T09:00:00-05:00", "minutes": 5_260_000, "clinicians": [],
                "held": True}]  # fmt: skip
    started = time.perf_counter()
    svg = str(charts.timeline(periods, []))
    assert time.perf_counter() - started < 1.0 and len(svg) < 20_000


def test_bodies_are_small_and_quick(site: tuple[str, SqlStore]) -> None:
    base, _ = site
    big = requests.post(f"{base}/login", data={"username": "x" * 100_000}, timeout=10)
    assert big.status_code == 413

    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(len(await request.body())))

    server = WebServer(BodyLimit(Starlette(routes=[Route("/", echo, methods=["POST"])]),
                                 timeout=0.5), port=0)  # fmt: skip
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            started = time.monotonic()
            answer: Any = sock.recv(200)
        assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 3
        assert requests.post(f"http://127.0.0.1:{server.port}/", data=b"12345",
                             timeout=5).text == "5"  # fmt: skip
    finally:
        server.stop()
