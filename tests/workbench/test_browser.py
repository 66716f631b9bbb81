"""The billing office's workbench end to end in a real browser (Playwright driving Debian's
Chromium), against the real FHIR server and a real MLLP receiver: sign in, the queue, a day
with an overlap, an override with a reason, the audit entry; the override reaches the FHIR
server (the ChargeItem's units, an AuditEvent) and the MLLP receiver (a credit and a new
charge). Screenshots are saved as test artefacts (``$WORKBENCH_SCREENSHOTS``, else the test's
temporary folder). A viewer cannot override; a form without the CSRF token, or without a
session, is refused."""

from __future__ import annotations

import copy
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright import sync_api as playwright

from adapter.delivery import Hl7Target, X12Target
from adapter.domain import PatientDay
from adapter.emr.client import FhirClient
from adapter.fhir import codes
from adapter.intake.events import ChangeEvent, Notification
from adapter.intake.webhook import Receiver
from adapter.mappings import load_rulebook
from adapter.pipeline import Options
from adapter.service import Service
from adapter.store import open_store
from adapter.web.server import WebhookServer
from adapter.workbench.auth import SessionRules, hash_password
from adapter.workbench.web import Workbench, workbench_app
from tests.fhir.make import at, context, procedure
from tests.fhir_server import FhirServer
from tests.live.test_targets_live import ENVELOPE, PROVIDER, _valid_837p
from tests.mllp_peer import Peer

CHROMIUM = "/usr/bin/chromium"
RULEBOOK = load_rulebook()
PASSWORD = "correct horse battery"


def _day(pid: str, procs: list[tuple[str, str, str, str]], dos: str = "2026-03-02") -> list[Any]:
    ctx = copy.deepcopy(context(patient=pid))
    for r in ctx:
        if r["resourceType"] == "Encounter":
            r["id"] = f"{pid}-enc"
            r["period"] = {"start": at("08:00", dos), "end": at("12:00", dos)}
        if r["resourceType"] == "CarePlan":
            r["created"] = dos
        if r["resourceType"] == "Coverage":  # the year's spend so far is known (no KX warning)
            r["extension"] = [
                {"url": codes.EXT_YTD_PT_SLP, "valueMoney": {"value": 100.00, "currency": "USD"}}
            ]
    out = []
    for rid, code, start, end in procs:
        p = procedure(f"{pid}-{rid}", code, at(start, dos) if start else None,
                      at(end, dos) if end else None, patient=f"Patient/{pid}",
                      encounter=f"Encounter/{pid}-enc")  # fmt: skip
        p["reasonCode"] = [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm",
                                        "code": "M54.50"}]}]  # fmt: skip
        out.append(p)
    return [*ctx, *out]


@pytest.fixture
def desk(fresh_fhir: FhirServer, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Three synced days (one with a same-code overlap, one clean, one with a missing end
    time), delivered to the MLLP receiver; the workbench on the adapter's web server."""
    peer = Peer().start()
    fresh_fhir.put_all(
        *_day("wb-ovl", [("a", "97110", "09:00", "09:30"), ("b", "97110", "09:20", "09:45")]),
        *_day("wb-ok", [("a", "97112", "11:00", "11:38")]),
        *_day("wb-end", [("a", "97530", "09:50", None), ("b", "97110", "10:00", "10:30")]),
    )
    client = FhirClient(fresh_fhir.base)
    store = open_store(tmp_path / "wb.db")
    targets = [Hl7Target(name="billing-dft", host="127.0.0.1", port=peer.port, timeout=3),
               X12Target(name="clearinghouse", folder=tmp_path / "drop", envelope=ENVELOPE,
                         provider=PROVIDER, payer_ids={"medicare": "MEDICARE01"})]  # fmt: skip
    service = Service(client, client, RULEBOOK, Options(), store, targets=targets)
    for rid in ("wb-ovl-a", "wb-ovl-b", "wb-ok-a", "wb-end-a", "wb-end-b"):
        service.inbox.enqueue(Notification(events=(ChangeEvent("Procedure", rid, source="t"),)))
    assert service.drain(timeout=90)
    service.deliver_all()
    store.user_put("biller1", hash_password(PASSWORD), "biller")
    store.user_put("viewer1", hash_password(PASSWORD), "viewer")
    store.user_put("manager1", hash_password(PASSWORD), "manager")
    wb = Workbench(store=store, session=SessionRules(secret="s" * 40, secure=False),
                   resync=service.resync, audit=service.write_audits,
                   resync_later=service.resync_later, targets=[t.name for t in targets],
                   modifiers=frozenset(RULEBOOK.modifiers.order))  # fmt: skip
    server = WebhookServer(Receiver(lambda n: None, secret="x"), port=0,
                           mounts=[("/review", workbench_app(wb))])  # fmt: skip
    server.start()
    shots = Path(os.environ.get("WORKBENCH_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    try:
        yield {"base": f"http://127.0.0.1:{server.port}", "service": service, "peer": peer,
               "fhir": fresh_fhir, "shots": shots, "store": store,
               "drop": tmp_path / "drop"}  # fmt: skip
    finally:
        server.stop()
        peer.stop()
        store.close()


def _sign_in(page: Any, base: str, user: str) -> None:
    page.goto(f"{base}/review/")
    assert "/review/login" in page.url
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/review/(\?.*)?$"))


def test_a_biller_overrides_a_line_and_it_reaches_every_target(desk: dict[str, Any]) -> None:
    base, peer = desk["base"], desk["peer"]
    assert len(peer.received) == 3  # one DFT per day before any decision
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox"])  # fmt: skip
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        _sign_in(page, base, "biller1")
        # the queue: the three days need attention (the clean one has none: done)
        rows = page.locator("table.queue tbody tr")
        assert rows.count() == 2, page.inner_text("table.queue")
        assert "same-code-overlap" in page.inner_text("table.queue")
        page.screenshot(path=str(desk["shots"] / "queue.png"), full_page=True)
        # keyboard: the first Tab reaches the skip link, which moves to the content
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "skip"
        # the filters
        page.select_option("select[name=finding]", "same-code-overlap")
        page.get_by_role("button", name="Show").click()
        assert page.locator("table.queue tbody tr").count() == 1
        page.get_by_role("link", name="2026-03-02").click()
        page.wait_for_url(re.compile(r".*/review/days/wb-ovl:2026-03-02"))
        # the day: the timeline (two periods, outlined as an overlap), the 8-minute figures
        assert page.locator("figure.timeline svg rect.period").count() == 2
        assert page.locator("figure.timeline svg rect[stroke='#cf222e']").count() == 2
        assert "97110" in page.inner_text("table.minutes")
        lines = page.inner_text("table.lines")
        assert re.search(r"97110\s+PT\s+GP\s+3\s+45", lines), lines
        page.screenshot(path=str(desk["shots"] / "day.png"), full_page=True)
        form = page.locator("form.override").first
        form.get_by_label("Units").fill("2")
        form.get_by_label("Reason").fill("Overlap documented twice; 2 units per the note")
        form.get_by_role("button", name="Override").click()
        page.wait_for_url(re.compile(r".*[?]m=recomputed$"))
        assert "the day was recomputed" in page.inner_text("p.note")
        audit = page.inner_text("ol.audit")
        assert "override by biller1 (biller)" in audit and "2 units per the note" in audit
        assert re.search(r"97110\s+PT\s+GP\s+2\s+45", page.inner_text("table.lines"))
        assert "units 3 -> 2 by biller1" in (page.text_content("table.lines") or "")
        page.screenshot(path=str(desk["shots"] / "day-after-override.png"), full_page=True)
        page.goto(f"{base}/review/reports")
        assert page.locator("svg.chart").count() >= 5
        page.screenshot(path=str(desk["shots"] / "reports.png"), full_page=True)
        # a tablet: the day's tables scroll inside the page, nothing is cut
        tablet = browser.new_page(viewport={"width": 768, "height": 1024}, has_touch=True,
                                  storage_state=page.context.storage_state())  # fmt: skip
        tablet.goto(f"{base}/review/days/wb-ovl:2026-03-02")
        assert tablet.evaluate("document.documentElement.scrollWidth") <= 768
        tablet.screenshot(path=str(desk["shots"] / "day-tablet.png"), full_page=True)
        browser.close()
    _reached_every_target(desk)


def _reached_every_target(desk: dict[str, Any]) -> None:
    service, peer = desk["service"], desk["peer"]
    # the MLLP receiver: a credit of the 3 units and a charge of 2
    deadline = time.monotonic() + 20
    while len(peer.received) < 4 and time.monotonic() < deadline:
        service.deliver_all()
        time.sleep(0.2)
    last = [s.split("|") for s in peer.received[-1].split("\r") if s.startswith("FT1")]
    assert [(f[6], f[10]) for f in last] == [("CR", "3"), ("CG", "2")]
    # the FHIR server: the ChargeItem now bills 2 units; the decision is an AuditEvent there
    fhir: FhirServer = desk["fhir"]
    items = [c for c in fhir.search("ChargeItem?subject=Patient/wb-ovl")
             if c.get("status") == "billable"]  # fmt: skip
    assert [c["quantity"]["value"] for c in items] == [2]
    events = fhir.search("AuditEvent?_count=50")
    assert len(events) == 1 and events[0]["agent"][0]["who"]["display"] == "biller1"
    assert "2 units per the note" in events[0]["outcomeDesc"]
    assert desk["store"].review_actions("wb-ovl:2026-03-02")[0].audit == "written"
    # the clearinghouse: the day's claim replaced (frequency 7), every file valid
    texts = _valid_837p(desk["drop"])
    assert len(texts) == 4 and sum("*11:B:7*" in t for t in texts) == 1


def _session(base: str, user: str | None) -> tuple[requests.Session, str]:
    """A signed-in HTTP session (or none) and the CSRF token of its forms."""
    http = requests.Session()
    page = http.get(f"{base}/review/login", timeout=10).text
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token
    if user is not None:
        sign_in = {"csrf": token[1], "username": user, "password": PASSWORD}
        answer = http.post(f"{base}/review/login", timeout=10, allow_redirects=False,
                           data=sign_in)  # fmt: skip
        assert answer.status_code == 303
        day = http.get(f"{base}/review/days/wb-ovl:2026-03-02", timeout=10).text
        token = re.search(r'name="csrf" value="([^"]+)"', day)
        assert token
    return http, token[1]


def test_roles_csrf_and_sessions_are_enforced(desk: dict[str, Any]) -> None:
    base = desk["base"]
    act = f"{base}/review/days/wb-ovl:2026-03-02/act"
    form = {"action": "override", "line": "97110|PT|GP", "units": "1", "reason": "x",
            "version": "1"}  # fmt: skip
    # no session: pages send to the sign-in, a decision is refused
    anonymous = requests.get(f"{base}/review/", timeout=10, allow_redirects=False)
    assert anonymous.status_code == 303 and "/review/login" in anonymous.headers["location"]
    assert requests.post(act, data=form, timeout=10).status_code == 401
    # a viewer sees the day without forms, and may not override
    viewer, token = _session(base, "viewer1")
    assert "form class=\"override\"" not in viewer.get(
        f"{base}/review/days/wb-ovl:2026-03-02", timeout=10).text  # fmt: skip
    assert viewer.post(act, data={**form, "csrf": token}, timeout=10).status_code == 403
    # a biller without the CSRF token, with another's, or from another origin: refused
    biller, token = _session(base, "biller1")
    assert biller.post(act, data=form, timeout=10).status_code == 403
    assert biller.post(act, data={**form, "csrf": "forged"}, timeout=10).status_code == 403
    assert biller.post(act, data={**form, "csrf": token}, timeout=10,
                       headers={"Origin": "https://evil.example"}).status_code == 403  # fmt: skip
    assert desk["store"].review_actions("wb-ovl:2026-03-02") == []
    # wrong passwords: refused, and the account is locked after five
    for _ in range(5):
        http, t = _session(base, None)
        assert http.post(f"{base}/review/login", timeout=10, data={
            "csrf": t, "username": "biller1", "password": "wrong"}).status_code == 401  # fmt: skip
    http, t = _session(base, None)
    assert http.post(f"{base}/review/login", timeout=10, data={
        "csrf": t, "username": "biller1", "password": PASSWORD}).status_code == 401  # fmt: skip
    # the CSV exports: the queue and each report, for a signed-in user only
    queue = viewer.get(f"{base}/review/queue.csv?status=all", timeout=10)
    assert queue.headers["content-type"].startswith("text/csv")
    assert queue.text.splitlines()[0].startswith("day,patient,date,payer")
    assert len(queue.text.splitlines()) == 4  # the header and three days
    units = viewer.get(f"{base}/review/reports/units-by-code.csv", timeout=10).text
    assert units.splitlines()[0] == "month,code,units" and "2026-03,PT 97110," in units
    assert requests.get(f"{base}/review/queue.csv", timeout=10,
                        allow_redirects=False).status_code == 303  # fmt: skip
    # the answers carry the security headers
    headers = viewer.get(f"{base}/review/", timeout=10).headers
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"


def test_a_day_whose_procedures_went_away_leaves_the_queue(desk: dict[str, Any]) -> None:
    """The EMR deletes the day's procedures: its review record becomes a version with nothing
    on it, done (and the receivers got a credit and a void, as for any such day)."""
    fhir: FhirServer = desk["fhir"]
    service: Service = desk["service"]
    store = desk["store"]
    assert store.review_row("wb-end:2026-03-02").status == "open"
    for rid in ("wb-end-a", "wb-end-b"):
        status, _ = fhir.request("DELETE", f"Procedure/{rid}")
        assert status in (200, 204)
        service.inbox.enqueue(Notification(events=(
            ChangeEvent("Procedure", rid, deleted=True, source="gone"),)))  # fmt: skip
    assert service.drain(timeout=90)
    row = store.review_row("wb-end:2026-03-02")
    assert row.status == "done" and row.version == 2 and row.total == 0 and row.errors == 0
    assert store.review_versions("wb-end:2026-03-02")[0][3]["lines"] == []


def test_holds_reverts_and_forged_lines(desk: dict[str, Any]) -> None:
    """(review findings) a held day cannot be marked done, and its status follows the hold;
    a biller cannot revert a manager's hold; a line the day does not have is refused before
    it is stored; a day a decision could not recompute is recomputed later."""
    base, store, service = desk["base"], desk["store"], desk["service"]
    key = "wb-end:2026-03-02"
    act = f"{base}/review/days/{key}/act"

    def version() -> str:
        return str(store.review_row(key).version)

    manager, m_token = _session(base, "manager1")
    biller, b_token = _session(base, "biller1")
    hold_form = {"csrf": m_token, "action": "hold", "reason": "payer audit", "version": version()}
    answer = manager.post(act, timeout=30, data=hold_form)
    assert answer.status_code == 200 and store.review_row(key).status == "held"
    done = manager.post(act, timeout=30, data={"csrf": m_token, "action": "done",
                                                "version": version()})  # fmt: skip
    assert "release it first" in done.text and store.review_row(key).status == "held"
    hold = store.review_actions(key)[-1]
    assert hold.action == "hold"
    refused = biller.post(act, timeout=30, data={"csrf": b_token, "action": "revert",
                                                  "target": str(hold.id), "reason": "no",
                                                  "version": version()})  # fmt: skip
    assert refused.status_code == 403
    manager.post(act, timeout=30, data={"csrf": m_token, "action": "revert",
                                         "target": str(hold.id), "reason": "audit over",
                                         "version": version()})  # fmt: skip
    assert store.review_row(key).status == "open" and not service.held(key)
    forged = biller.post(act, timeout=30, data={"csrf": b_token, "action": "override",
                                                 "line": "97110|XX|GP", "units": "1",
                                                 "reason": "x", "version": version()})  # fmt: skip
    assert "No such line" in forged.text
    assert [a.action for a in store.review_actions(key)] == ["hold", "revert"]
    service.resync_later(PatientDay.from_key(key))
    assert service.resync_pending() == 1 and service.resync_pending() == 0
