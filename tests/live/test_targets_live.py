"""The delivery targets beside the FHIR write-back (issue 16), against the real FHIR server, a
real MLLP receiver (hl7apy's MLLPServer) and a drop folder: DFT^P03 and 837P from the same
decisions; a changed day credits and replaces; a receiver that goes away mid-batch and comes
back loses nothing and doubles nothing (counted by MSH-10 and by FT1 line); AE 207 is retried,
AR is recorded and shown; every 837P file passes pyx12."""

from __future__ import annotations

import copy
import io
import time
from pathlib import Path
from typing import Any

import pyx12.params
import pyx12.x12n_document

from adapter.delivery import Hl7Target, X12Target
from adapter.emr.client import FhirClient
from adapter.intake.events import ChangeEvent, Notification
from adapter.mappings import load_rulebook
from adapter.pipeline import Options
from adapter.service import Service
from adapter.store import open_store
from adapter.x12.p837 import BillingProvider, Envelope
from tests.fhir.make import at, context, procedure
from tests.fhir_server import FhirServer
from tests.mllp_peer import Peer

RULEBOOK = load_rulebook()
ENVELOPE = Envelope(sender_id="TESTSUBMITTER", receiver_id="TESTRECEIVER",
                    submitter_name="Test Therapy Clinic", receiver_name="Test Clearinghouse",
                    contact_name="Test Biller", contact_phone="5555550100")  # fmt: skip
PROVIDER = BillingProvider(name="Test Therapy Clinic", npi="1999999984", tax_id="123456789",
                           address="1 Test Street", city="Testville", state="MN",
                           postal_code="555550001")  # fmt: skip


def _patient(pid: str, dos: str, minutes: int = 30, mrn: str | None = None) -> list[dict[str, Any]]:
    ctx = copy.deepcopy(context(patient=pid))
    for r in ctx:
        if r["resourceType"] == "Patient":
            r["identifier"] = [{"system": "urn:test:mrn", "value": mrn or f"MRN-{pid}"}]
        if r["resourceType"] == "CarePlan":
            r["created"] = dos
        if r["resourceType"] == "Encounter":
            r["id"] = f"{pid}-enc"
            r["period"] = {"start": at("08:00", dos), "end": at("12:00", dos)}
    me = f"Patient/{pid}"
    proc = procedure(f"{pid}-a", "97110", at("09:00", dos), at(f"09:{minutes:02d}", dos),
                     patient=me, encounter=f"Encounter/{pid}-enc")  # fmt: skip
    proc["reasonCode"] = [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm",
                                       "code": "M54.50"}]}]  # fmt: skip
    return [*ctx, proc]


def _service(fhir: FhirServer, tmp_path: Path, peer: Peer) -> Service:
    client = FhirClient(fhir.base)
    targets = [
        Hl7Target(name="billing-dft", host="127.0.0.1", port=peer.port, timeout=3),
        X12Target(name="clearinghouse", folder=tmp_path / "drop", envelope=ENVELOPE,
                  provider=PROVIDER, payer_ids={"medicare": "MEDICARE01"}),
    ]  # fmt: skip
    return Service(client, client, RULEBOOK, Options(), open_store(tmp_path / "t.db"),
                   targets=targets)  # fmt: skip


def _notify(service: Service, *ids: str, source: str = "t") -> None:
    for rid in ids:
        service.inbox.enqueue(Notification(events=(ChangeEvent("Procedure", rid, source=source),)))
    assert service.drain(timeout=90)


def _deliver(service: Service, timeout: float = 30.0) -> None:
    """Deliver until nothing is pending (waiting out the retries' backoff)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        service.deliver_all()
        if not service.store.outbox_rows(status="pending"):
            return
        time.sleep(0.3)
    raise AssertionError("messages still pending")


def _valid_837p(folder: Path) -> list[str]:
    texts = [f.read_text() for f in sorted(folder.glob("*.837p.x12"))]
    for text in texts:
        ack = io.StringIO()
        assert pyx12.x12n_document.x12n_document(pyx12.params.params(), io.StringIO(text), ack,
                                                 None), ack.getvalue()  # fmt: skip
        assert "IK5*A~" in ack.getvalue()
    return texts


def test_dft_and_837p_from_the_same_decisions(fresh_fhir: FhirServer, tmp_path: Path) -> None:
    peer = Peer(flaky=1).start()
    try:
        fresh_fhir.put_all(*_patient("tg-a", "2026-03-02"), *_patient("tg-b", "2026-03-03"))
        service = _service(fresh_fhir, tmp_path, peer)
        _notify(service, "tg-a-a", "tg-b-a")
        _deliver(service)  # the first try meets AE 207 (database busy): tried again
        assert peer.tries == 3 and len(peer.received) == 2
        assert [(f[6], f[25].split("^")[0], f[10]) for f in peer.lines()] == [
            ("CG", "97110", "2"), ("CG", "97110", "2")]  # fmt: skip
        texts = _valid_837p(tmp_path / "drop")
        assert len(texts) == 2 and all("*11:B:1*" in t for t in texts)
        # the same notification again: nothing new anywhere
        _notify(service, "tg-a-a", source="again")
        _deliver(service)
        assert len(peer.received) == 2 and len(list((tmp_path / "drop").glob("*"))) == 2
        # tg-a's 97110 becomes 20 minutes (1 unit): a credit of the 2 units and a charge of 1;
        # a replacement claim (frequency 7)
        changed = _patient("tg-a", "2026-03-02", minutes=20)[-1]
        fresh_fhir.put_all(changed)
        _notify(service, "tg-a-a", source="changed")
        _deliver(service)
        last = [s.split("|") for s in peer.received[-1].split("\r") if s.startswith("FT1")]
        assert [(f[6], f[10]) for f in last] == [("CR", "2"), ("CG", "1")]
        texts = _valid_837p(tmp_path / "drop")
        assert len(texts) == 3 and sum("*11:B:7*" in t for t in texts) == 1
        counts = service.store.outbox_counts()
        assert counts == {("billing-dft", "acked"): 3, ("clearinghouse", "delivered"): 3}
        service.store.close()
    finally:
        peer.stop()


def test_a_receiver_away_mid_batch_loses_nothing_and_doubles_nothing(
    fresh_fhir: FhirServer, tmp_path: Path
) -> None:
    peer = Peer().start()
    port = peer.port
    try:
        pids = [f"tk-{n}" for n in range(6)]
        for n, pid in enumerate(pids):
            fresh_fhir.put_all(*_patient(pid, f"2026-03-{n + 2:02d}"))
        fresh_fhir.put_all(*_patient("tk-reject", "2026-03-10", mrn="reject-me"))
        service = _service(fresh_fhir, tmp_path, peer)
        _notify(service, *(f"{p}-a" for p in pids[:3]))
        service.deliver_all()
        assert len(peer.received) == 3
        peer.stop()  # the receiver goes away; three more days and one it will refuse
        _notify(service, *(f"{p}-a" for p in pids[3:]), "tk-reject-a")
        service.deliver_all()
        pending = service.store.outbox_rows(target="billing-dft", status="pending")
        assert len(pending) == 4 and pending[-1].last_error  # the oldest waits, retried
        assert len(list((tmp_path / "drop").glob("*.837p.x12"))) == 7  # the folder is not away
        peer = Peer(port=port, received=peer.received, seen=peer.seen).start()
        _deliver(service)
        controls = [next(s for s in m.split("\r") if s.startswith("MSH")).split("|")[9]
                    for m in peer.received]  # fmt: skip
        assert len(controls) == len(set(controls)) == 6  # every day once, none twice
        assert len(peer.lines()) == 6
        rejected = service.store.outbox_rows(target="billing-dft", status="rejected")
        assert len(rejected) == 1 and rejected[0].ack == "AR"
        assert "patient unknown to billing" in (rejected[0].last_error or "")
        assert service.store.outbox_resend(rejected[0].id)  # a person fixed it; sent again
        service.deliver_all()
        assert service.store.outbox_get(rejected[0].id).status == "rejected"  # type: ignore[union-attr]
        service.store.close()
    finally:
        peer.stop()


def test_a_refused_first_message_resent_and_accepted_clears_the_days_count(
    fresh_fhir: FhirServer, tmp_path: Path
) -> None:
    """The day's first message is refused (AR): the workbench counts one refused target. A
    person fixes the receiver and resends it (same seq); once accepted the count is 0 again."""
    peer = Peer(refuse=1).start()
    try:
        fresh_fhir.put_all(*_patient("tk-fixed", "2026-03-12"))
        service = _service(fresh_fhir, tmp_path, peer)
        _notify(service, "tk-fixed-a")
        _deliver(service)
        day = "tk-fixed:2026-03-12"
        assert (service.store.review_row(day) or _never()).rejected == 1
        (refused,) = service.store.outbox_rows(target="billing-dft", status="rejected")
        assert refused.seq == 1 and service.store.outbox_resend(refused.id)
        _deliver(service)
        assert service.store.outbox_get(refused.id).status == "acked"  # type: ignore[union-attr]
        assert (service.store.review_row(day) or _never()).rejected == 0
        service.store.close()
    finally:
        peer.stop()


def _never() -> Any:
    raise AssertionError("the day has no review record")


def test_beside_an_emr_that_takes_only_dft(fresh_fhir: FhirServer, tmp_path: Path) -> None:
    """[[targets]] without a fhir one: nothing is written over FHIR, the DFT carries the day."""
    from dataclasses import replace

    peer = Peer().start()
    try:
        fresh_fhir.put_all(*_patient("only-dft", "2026-03-02"))
        service = _service(fresh_fhir, tmp_path, peer)
        service.options = replace(service.options, write_fhir=False)
        _notify(service, "only-dft-a")
        _deliver(service)
        assert len(peer.received) == 1 and len(peer.lines()) == 1
        assert fresh_fhir.search("ChargeItem?subject=Patient/only-dft") == []
        assert fresh_fhir.search("Claim?patient=Patient/only-dft") == []
        service.store.close()
    finally:
        peer.stop()


def _net(peer: Peer) -> dict[str, int]:
    """The units the receiver holds per code: charges less credits."""
    held: dict[str, int] = {}
    for f in peer.lines():
        sign = 1 if f[6] == "CG" else -1
        held[f[25].split("^")[0]] = held.get(f[25].split("^")[0], 0) + sign * int(f[10])
    return {k: v for k, v in held.items() if v}


def test_what_the_receiver_holds_is_always_the_last_decision(
    fresh_fhir: FhirServer, tmp_path: Path
) -> None:
    """(review) messages are composed when sent, from what the receiver accepted: a day that
    changes twice while the receiver is away sends one message; a refused message is not sent
    again on an unchanged re-sync, and the next change is composed from what was accepted; a
    procedure moved to another day credits and voids the day it left."""
    peer = Peer().start()
    port = peer.port
    try:
        fresh_fhir.put_all(*_patient("tr-a", "2026-03-02"))
        service = _service(fresh_fhir, tmp_path, peer)
        _notify(service, "tr-a-a")
        _deliver(service)
        assert _net(peer) == {"97110": 2}
        peer.stop()
        for minutes, tag in ((20, "one"), (45, "two")):  # 1 unit, then 3
            fresh_fhir.put_all(_patient("tr-a", "2026-03-02", minutes=minutes)[-1])
            _notify(service, "tr-a-a", source=tag)
            service.deliver_all()
        peer = Peer(port=port, received=peer.received, seen=peer.seen, refuse=1).start()
        _deliver(service)  # the one message left is refused (AR)
        assert _net(peer) == {"97110": 2}
        assert [r.status for r in service.store.outbox_rows(target="billing-dft")][:2] == [
            "rejected", "superseded"]  # fmt: skip
        _notify(service, "tr-a-a", source="again")  # nothing changed: nothing queued again
        assert service.store.outbox_rows(target="billing-dft", status="pending") == []
        fresh_fhir.put_all(_patient("tr-a", "2026-03-02", minutes=38)[-1])  # 3 units still
        fresh_fhir.put_all(_patient("tr-a", "2026-03-02", minutes=30)[-1])  # back to 2
        _notify(service, "tr-a-a", source="back")
        _deliver(service)
        assert _net(peer) == {"97110": 2}  # what it accepted is what the day bills
        # the procedure moves to 2026-03-05: the old day is credited and its claim voided
        moved = _patient("tr-a", "2026-03-02")[-1]
        moved["performedPeriod"] = {"start": at("09:00", "2026-03-05"),
                                    "end": at("09:30", "2026-03-05")}  # fmt: skip
        del moved["encounter"]  # the visit of 2026-03-02 is not this one's any more
        fresh_fhir.put_all(moved)
        _notify(service, "tr-a-a", source="moved")
        _deliver(service)
        assert _net(peer) == {"97110": 2}  # 2 credited on the old day, 2 charged on the new
        days = {next(s for s in m.split("\r") if s.startswith("FT1")).split("|")[4]
                for m in peer.received}  # fmt: skip
        assert days == {"20260302", "20260305"}
        texts = _valid_837p(tmp_path / "drop")
        assert sum("*11:B:8*" in t for t in texts) == 1  # the old day's claim voided
        for m in peer.received:  # FT1-2 unique within a message
            ids = [s.split("|")[2] for s in m.split("\r") if s.startswith("FT1")]
            assert len(ids) == len(set(ids))
        service.store.close()
    finally:
        peer.stop()
