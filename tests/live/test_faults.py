"""Write-back through failures: a 503 (before or after the server applied the write) is retried
and nothing is duplicated."""

from __future__ import annotations

from datetime import UTC, datetime

from adapter.emr.client import FhirClient, RetryPolicy
from adapter.intake.events import ChangeEvent
from adapter.mappings import load_rulebook
from adapter.pipeline import Options, handle_events
from tests.fault_proxy import FaultProxy
from tests.fhir.make import at, context, procedure
from tests.fhir_server import FhirServer
from tests.live.test_sync import charge_lines

NOW = datetime(2026, 11, 23, tzinfo=UTC)


def test_503_then_200_and_a_lost_response_write_each_charge_once(fresh_fhir: FhirServer) -> None:
    rulebook = load_rulebook()
    emr = FhirClient(fresh_fhir.base)
    proxy = FaultProxy(fresh_fhir.base)
    try:
        target = FhirClient(proxy.base, retry=RetryPolicy(sleep=lambda s: None))
        for n, plan in enumerate([["503", "503"], ["pass", "lost:503"], ["pass", "lost:504"]]):
            pid = f"fault-{n}"
            who = f"Patient/{pid}"
            fresh_fhir.put_all(
                *context(patient=pid),
                procedure(f"{pid}-a", "97112", at("09:00"), at("09:24"), patient=who),
                procedure(f"{pid}-b", "97110", at("09:24"), at("09:47"), patient=who),
            )
            proxy.plan.extend(plan)
            event = ChangeEvent("Procedure", f"{pid}-a")
            handle_events(emr, target, rulebook, [event], Options(evaluated_at=NOW))
            # redelivery of the same notification: still one of each
            again = handle_events(emr, target, rulebook, [event], Options(evaluated_at=NOW))
            assert not again[0].write.changed
            assert charge_lines(fresh_fhir, pid) == [
                ("97110", 1, "billable"),
                ("97112", 2, "billable"),
            ]
            assert len(fresh_fhir.search(f"Claim?patient=Patient/{pid}")) == 1
            assert len(fresh_fhir.search(f"Provenance?patient=Patient/{pid}")) <= 1
        injected = [a for _, _, a in proxy.seen if a != "pass"]
        print(f"injected {len(injected)} faults ({', '.join(injected)}); retries {target.retries}; "
              "duplicates 0")  # fmt: skip
        assert target.retries >= 4
    finally:
        proxy.close()
