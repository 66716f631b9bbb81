"""The site time zone: EMRs that send UTC instants ("...T00:08:00Z") put a Pacific evening
session on the next UTC day. With ``timezone`` set, dates of service are the site's dates, so
the session stays one patient-day (and one 8-minute-rule pool)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.cli import main
from adapter.fhir.dates import service_date_of
from adapter.fhir.refs import parse_datetime
from adapter.intake.spool import Spool

from ..fhir.make import bundle, context, procedure

LA = ZoneInfo("America/Los_Angeles")


def evening_in_utc() -> list[dict[str, Any]]:
    """3:45-4:32 pm in Los Angeles on 2 March 2026, written as UTC instants (as some EMRs do):
    the first procedure starts before midnight UTC, the second after it."""
    resources = context()
    for r in resources:
        if r["resourceType"] == "Encounter":
            r["period"] = {"start": "2026-03-02T23:40:00Z", "end": "2026-03-03T00:40:00Z"}
    return [
        *resources,
        procedure("a", "97110", "2026-03-02T23:45:00Z", "2026-03-03T00:08:00Z"),  # 23 min
        procedure("b", "97112", "2026-03-03T00:08:00Z", "2026-03-03T00:32:00Z"),  # 24 min
    ]


def test_dates_of_service_in_the_site_zone() -> None:
    late = procedure("x", "97110", "2026-03-03T01:08:00Z", None)
    assert service_date_of(late) == "2026-03-03"  # the instant's own offset (UTC)
    assert service_date_of(late, LA) == "2026-03-02"  # 5:08 pm on the 2nd in Los Angeles
    local = procedure("y", "97110", "2026-03-02T17:08:00-08:00", None)
    assert service_date_of(local) == service_date_of(local, LA) == "2026-03-02"
    # summer time: UTC-7 in July
    assert service_date_of(procedure("z", "97110", "2026-07-02T06:30:00Z", None), LA) == (
        "2026-07-01"
    )
    # a bare date stays the date it says
    assert service_date_of({"performedDateTime": "2026-03-02"}, LA) == "2026-03-02"
    moment, _ = parse_datetime("2026-03-03T01:08:00Z", LA)
    assert moment is not None and moment.utcoffset() == timedelta(hours=-8)


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 12, 31)),
    st.sampled_from(["America/New_York", "America/Chicago", "America/Denver",
                     "America/Los_Angeles", "Pacific/Honolulu", "Asia/Kolkata", "UTC"]),
)  # fmt: skip
def test_the_date_of_service_is_the_instants_date_in_the_zone(moment: datetime, name: str) -> None:
    instant = moment.replace(tzinfo=UTC, microsecond=0)
    zone = ZoneInfo(name)
    written = instant.strftime("%Y-%m-%dT%H:%M:%SZ")
    proc = procedure("p", "97110", written, None)
    assert service_date_of(proc, zone) == instant.astimezone(zone).date().isoformat()


def test_the_spool_groups_a_day_by_the_site_date() -> None:
    for zone, days in ((None, 2), (LA, 1)):
        spool = Spool(zone=zone)
        try:
            for i, r in enumerate(evening_in_utc()):
                spool.add(r, file=0, where=str(i))
            spool.finish()
            assert len(list(spool.days())) == days
        finally:
            spool.close()


def test_replay_with_a_timezone_bills_one_day_not_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "evening.json"
    src.write_text(json.dumps(bundle(*evening_in_utc())))

    def replay(*extra: str) -> dict[str, Any]:
        out = tmp_path / f"out{len(extra)}"
        assert main(["replay", str(src), "--out", str(out), "--json", *extra]) == 0
        return dict(json.loads(capsys.readouterr().out))

    split = replay()
    # read in UTC, 23 and 24 minutes fall on two dates: 2 + 2 units, one more than the minutes
    # support (the CMS 8-minute rule pools a day's timed minutes: 47 min is 3 units)
    assert (split["patient_days"], split["units"]) == (2, 4)
    site = replay("--timezone", "America/Los_Angeles")
    assert (site["patient_days"], site["units"]) == (1, 3)


def test_an_unknown_timezone_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "evening.json"
    src.write_text(json.dumps(bundle(*evening_in_utc())))
    assert main(["replay", str(src), "--out", str(tmp_path / "o"), "--timezone", "Mars/Base"]) == 2
    assert "Mars/Base" in capsys.readouterr().err
    config = tmp_path / "a.toml"
    config.write_text('timezone = "Pacific/Nowhere"\n')
    assert main(["replay", str(src), "--out", str(tmp_path / "o"), "--config", str(config)]) == 2
    assert "not an IANA time zone" in capsys.readouterr().err


def test_coverage_and_plan_periods_are_read_in_the_site_zone() -> None:
    """A coverage that ended at 9 pm Pacific on the 2nd, written in UTC as 05:00Z on the 3rd, no
    longer covers a session on the 3rd in Los Angeles; nor does a plan of care ending so."""
    from adapter.domain import FindingCode
    from adapter.mappings import load_rulebook
    from adapter.pipeline import Options
    from adapter.replay import evaluate_bundle

    ended = {"start": "2026-01-01", "end": "2026-03-03T05:00:00Z"}
    resources = context(period=ended)
    for r in resources:
        if r["resourceType"] == "CarePlan":
            r["period"] = ended
        if r["resourceType"] == "Encounter":
            r["period"] = {"start": "2026-03-03T16:50:00Z", "end": "2026-03-03T18:00:00Z"}
    day = [*resources, procedure("m", "97110", "2026-03-03T17:00:00Z", "2026-03-03T17:30:00Z")]
    rulebook = load_rulebook()
    findings = {}
    for zone in (None, LA):
        _, (decision,), _ = evaluate_bundle(bundle(*day), rulebook, Options(zone=zone))
        findings[zone] = {f.code for f in decision.findings}
    assert FindingCode.COVERAGE_MISSING not in findings[None]  # the 3rd, read as written
    assert FindingCode.NO_PLAN_OF_CARE not in findings[None]
    assert FindingCode.COVERAGE_MISSING in findings[LA]
    assert FindingCode.NO_PLAN_OF_CARE in findings[LA]
