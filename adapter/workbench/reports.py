"""The workbench's reports: SQL over the review tables, each a small table (its chart is
drawn from it, its CSV is it), over an optional span of dates of service."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from adapter.store import SqlStore


@dataclass(frozen=True, slots=True)
class Table:
    title: str
    header: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    #: how to draw it: "bars" (label, value), "stacked" (x, series, value), "line" (x, value)
    kind: str = "bars"
    unit: str = ""


def _span(column: str, start: str | None, end: str | None) -> tuple[str, tuple[Any, ...]]:
    where, params = [], []
    if start:
        where.append(f"{column} >= ?")
        params.append(start)
    if end:
        where.append(f"{column} <= ?")
        params.append(end)
    return (" AND ".join(where) or "1 = 1"), tuple(params)


def units_by_code(store: SqlStore, start: str | None, end: str | None) -> Table:
    where, params = _span("dos", start, end)
    rows = store.review_report(
        f"SELECT SUBSTR(dos, 1, 7), discipline || ' ' || code, SUM(units) FROM review_lines "
        f"WHERE {where} GROUP BY SUBSTR(dos, 1, 7), discipline, code ORDER BY 1, 2",
        params,
    )
    return Table(
        "Units per code and discipline, by month",
        ("month", "code", "units"),
        [(m, c, int(u)) for m, c, u in rows],
        "stacked",
        "units",
    )


def findings_by_kind(store: SqlStore, start: str | None, end: str | None) -> Table:
    where, params = _span("d.dos", start, end)
    rows = store.review_report(
        "SELECT t.value, COUNT(*) FROM review_tags t JOIN review_days d ON d.day = t.day "
        f"WHERE t.kind = 'finding' AND {where} GROUP BY t.value ORDER BY 2 DESC, 1",
        params,
    )
    return Table(
        "Days with each finding",
        ("finding", "days"),
        [(f, int(n)) for f, n in rows],
        "bars",
        "days",
    )


def findings_by_clinician(store: SqlStore, start: str | None, end: str | None) -> Table:
    where, params = _span("d.dos", start, end)
    rows = store.review_report(
        "SELECT t.value, SUM(CASE WHEN d.errors > 0 THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN d.warnings > 0 THEN 1 ELSE 0 END), COUNT(*) FROM review_tags t "
        f"JOIN review_days d ON d.day = t.day WHERE t.kind = 'clinician' AND {where} "
        "GROUP BY t.value ORDER BY 2 DESC, 1",
        params,
    )
    return Table(
        "Days with findings, by clinician",
        ("clinician", "days with errors", "days with warnings", "days"),
        [(c, int(e), int(w), int(n)) for c, e, w, n in rows],
        "bars",
        "days",
    )


def assistant_share(store: SqlStore, start: str | None, end: str | None) -> Table:
    where, params = _span("dos", start, end)
    rows = store.review_report(
        "SELECT SUBSTR(dos, 1, 7), discipline, SUM(CASE WHEN assistant = 1 THEN units ELSE 0 "
        f"END), SUM(units) FROM review_lines WHERE {where} GROUP BY SUBSTR(dos, 1, 7), "
        "discipline ORDER BY 1, 2",
        params,
    )
    return Table(
        "CQ/CO share of units (assistants), by month",
        ("month", "discipline", "assistant units", "units", "share %"),
        [
            (m, d, int(a), int(u), round(100 * int(a) / int(u), 1) if int(u) else 0.0)
            for m, d, a, u in rows
        ],
        "line",
        "%",
    )


def kx_crossings(store: SqlStore, start: str | None, end: str | None) -> Table:
    where, params = _span("d.dos", start, end)
    rows = store.review_report(
        "SELECT SUBSTR(d.dos, 1, 7), COUNT(*) FROM review_tags t JOIN review_days d "
        f"ON d.day = t.day WHERE t.kind = 'note' AND t.value = 'kx-applied' AND {where} "
        "GROUP BY SUBSTR(d.dos, 1, 7) ORDER BY 1",
        params,
    )
    return Table(
        "Days billed over the KX threshold, by month",
        ("month", "days"),
        [(m, int(n)) for m, n in rows],
        "bars",
        "days",
    )


def revenue_by_payer(store: SqlStore, start: str | None, end: str | None) -> Table:
    where, params = _span("dos", start, end)
    rows = store.review_report(
        f"SELECT payer, SUM(total), COUNT(*) FROM review_days WHERE {where} GROUP BY payer "
        "ORDER BY 2 DESC, 1",
        params,
    )
    return Table(
        "Charges by payer profile",
        ("payer", "charges", "days"),
        [(p, round(int(t) / 100, 2), int(n)) for p, t, n in rows],
        "bars",
        "$",
    )


def denial_risk(store: SqlStore, start: str | None, end: str | None) -> Table:
    where, params = _span("dos", start, end)
    rows = store.review_report(
        "SELECT SUBSTR(dos, 1, 7), SUM(CASE WHEN errors > 0 OR held > 0 THEN 1 ELSE 0 END), "
        f"COUNT(*), SUM(at_risk) FROM review_days WHERE {where} GROUP BY SUBSTR(dos, 1, 7) "
        "ORDER BY 1",
        params,
    )
    return Table(
        "Denial risk: share of days with an error or a held service, by month",
        ("month", "days at risk", "days", "share %", "money at risk"),
        [
            (
                m,
                int(r),
                int(n),
                round(100 * int(r) / int(n), 1) if int(n) else 0.0,
                round(int(a) / 100, 2),
            )
            for m, r, n, a in rows
        ],
        "line",
        "%",
    )


REPORTS: dict[str, Callable[[SqlStore, str | None, str | None], Table]] = {
    "units-by-code": units_by_code,
    "findings-by-kind": findings_by_kind,
    "findings-by-clinician": findings_by_clinician,
    "assistant-share": assistant_share,
    "kx-crossings": kx_crossings,
    "revenue-by-payer": revenue_by_payer,
    "denial-risk": denial_risk,
}


def all_reports(store: SqlStore, start: str | None, end: str | None) -> dict[str, Table]:
    return {name: fn(store, start, end) for name, fn in REPORTS.items()}
