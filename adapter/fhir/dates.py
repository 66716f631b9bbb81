"""Dates of service and periods: which date a procedure is on, and whether a period (a
coverage's, a plan of care's, a role's) covers a date.

With a site time zone, a time is read in that zone first, so a late-evening session written in
UTC stays on its local date.
"""

from __future__ import annotations

from datetime import date, tzinfo
from typing import Any

from adapter.fhir.refs import DATE, DATETIME, Resource, parse_datetime


def service_date_of(procedure: Resource, zone: tzinfo | None = None) -> str | None:
    """The date of service: the date of the procedure's start in the site's time ``zone`` when
    one is set (right for EMRs that send UTC instants), else in the start's own offset. A bare
    date is taken as it is."""
    period = procedure.get("performedPeriod")
    start = period.get("start") if isinstance(period, dict) else None
    for value in (start, procedure.get("performedDateTime")):
        if isinstance(value, str) and DATE.match(value):
            if zone is not None and DATETIME.match(value):
                moment, _ = parse_datetime(value, zone)
                return moment.date().isoformat() if moment is not None else None
            try:
                return date.fromisoformat(value[:10]).isoformat()
            except ValueError:
                return None
    return None


def bound_date(value: Any, zone: tzinfo | None) -> str | None:
    """A period bound's date: in the site's ``zone`` when it has a time and one is set (as
    dates of service are), else as written."""
    if not isinstance(value, str):
        return None
    if zone is not None and DATETIME.match(value):
        moment, _ = parse_datetime(value, zone)
        if moment is not None:
            return moment.date().isoformat()
    return value[:10]


def in_period(period: Any, service_date: str, zone: tzinfo | None = None) -> bool:
    """Whether a FHIR Period covers ``service_date`` (no period, or an open end, covers)."""
    if not isinstance(period, dict):
        return True
    start, end = bound_date(period.get("start"), zone), bound_date(period.get("end"), zone)
    if start is not None and start > service_date:
        return False
    return not (end is not None and end < service_date)
