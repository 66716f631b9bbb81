"""SVG drawn on the server (no script, no chart library): the reports' charts and a day's
timeline of documented periods. Every text is escaped; every chart has a title and a text
alternative, and the table it comes from is on the page beside it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from markupsafe import Markup, escape

from adapter.workbench.reports import Table

PALETTE = ("#1f6feb", "#d29922", "#2da44e", "#cf222e", "#8250df", "#57606a", "#bf3989", "#0a7480")
W, H = 640, 260


def _svg(width: int, height: int, label: str, body: Sequence[str]) -> Markup:
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}" class="chart"><title>{escape(label)}</title>'
        + "".join(body)
        + "</svg>"
    )


def chart(table: Table) -> Markup:
    if not table.rows:
        return Markup('<p class="empty">No data for this span.</p>')
    if table.kind == "stacked":
        return _stacked(table)
    if table.kind == "line":
        return _line(table)
    return _bars(table)


def _bars(table: Table) -> Markup:
    rows = table.rows[:20]
    top = max(float(r[1]) for r in rows) or 1.0
    bar = 18
    height = 30 + (bar + 6) * len(rows)
    out = []
    for i, r in enumerate(rows):
        y = 20 + i * (bar + 6)
        width = (W - 260) * float(r[1]) / top
        out.append(
            f'<text x="190" y="{y + 13}" text-anchor="end" class="lbl">'
            f"{escape(str(r[0])[:28])}</text>"
            f'<rect x="200" y="{y}" width="{width:.1f}" height="{bar}" fill="{PALETTE[0]}">'
            f"<title>{escape(str(r[0]))}: {escape(str(r[1]))}</title></rect>"
            f'<text x="{205 + width:.1f}" y="{y + 13}" class="val">{escape(str(r[1]))}'
            "</text>"
        )
    return _svg(W, height, table.title, out)


def _stacked(table: Table) -> Markup:
    xs = list(dict.fromkeys(str(r[0]) for r in table.rows))[-12:]
    series = list(dict.fromkeys(str(r[1]) for r in table.rows))[: len(PALETTE)]
    values: dict[tuple[str, str], float] = {(str(r[0]), str(r[1])): float(r[2]) for r in table.rows}
    totals = [sum(values.get((x, s), 0.0) for s in series) for x in xs]
    top = max(totals) or 1.0
    step = (W - 200) / max(1, len(xs))
    out = []
    for i, x in enumerate(xs):
        base = float(H - 30)
        for j, s in enumerate(series):
            v = values.get((x, s), 0.0)
            h = (H - 60) * v / top
            base -= h
            out.append(
                f'<rect x="{40 + i * step:.1f}" y="{base:.1f}" width="{step * 0.7:.1f}" '
                f'height="{h:.1f}" fill="{PALETTE[j]}"><title>{escape(x)} {escape(s)}: '
                f"{v:g}</title></rect>"
            )
        out.append(
            f'<text x="{40 + i * step + step * 0.35:.1f}" y="{H - 12}" '
            f'text-anchor="middle" class="lbl">{escape(x)}</text>'
        )
    for j, s in enumerate(series):
        out.append(
            f'<rect x="{W - 150}" y="{20 + j * 18}" width="12" height="12" '
            f'fill="{PALETTE[j]}"/><text x="{W - 132}" y="{30 + j * 18}" class="lbl">'
            f"{escape(s)}</text>"
        )
    return _svg(W, H, table.title, out)


def _line(table: Table) -> Markup:
    col = table.header.index("share %")
    by_x: dict[str, list[float]] = {}
    for r in table.rows:
        by_x.setdefault(str(r[0]), []).append(float(r[col]))
    xs = list(by_x)[-12:]
    ys = [max(by_x[x]) for x in xs]
    step = (W - 80) / max(1, len(xs) - 1)
    points = [(40 + i * step, H - 30 - (H - 60) * y / 100) for i, y in enumerate(ys)]
    out = [
        f'<line x1="40" y1="{H - 30}" x2="{W - 40}" y2="{H - 30}" class="axis"/>',
        f'<text x="4" y="34" class="lbl">100%</text><text x="4" y="{H - 30}" class="lbl">0%</text>',
        '<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="'
        + " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        + '"/>',
    ]
    for (x, y), label, v in zip(points, xs, ys, strict=True):
        out.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#1f6feb"><title>'
            f"{escape(label)}: {v:g}%</title></circle>"
            f'<text x="{x:.1f}" y="{H - 12}" text-anchor="middle" class="lbl">'
            f"{escape(label)}</text>"
        )
    return _svg(W, H, table.title, out)


def _at(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None


def timeline(periods: Sequence[Mapping[str, Any]], findings: Sequence[Mapping[str, Any]]) -> Markup:
    """The day's documented periods, a row per clinician and code, on one time axis: held
    services hatched, services in an overlap finding outlined red, each with its minutes."""
    timed = [(p, s, e) for p in periods if (s := _at(p.get("start"))) and (e := _at(p.get("end")))]
    if not timed:
        return Markup('<p class="empty">No documented start and end times to draw.</p>')
    overlapping = {
        i for f in findings if "overlap" in str(f.get("code")) for i in f.get("interventions", [])
    }
    start = min(s for _, s, _ in timed)
    # the axis spans the documented periods, at most a day from the first (a period
    # documented years long is drawn to the edge, not over a years-long axis)
    end = min(max(e for _, _, e in timed), start + timedelta(days=1))
    timed = [(p, s, min(e, end)) for p, s, e in timed if s <= end]
    span = max(60.0, (end - start).total_seconds() / 60)
    step = 15 if span <= 240 else 60
    # a row per clinician and code; periods that overlap within a row go in lanes beneath
    lanes: dict[str, list[list[tuple[datetime, datetime]]]] = {}
    placed: list[tuple[Mapping[str, Any], datetime, datetime, str, int]] = []
    for p, s, e in sorted(timed, key=lambda t: t[1]):
        who = ", ".join(str(c.get("id", "")).split("/")[-1] for c in p.get("clinicians", []))
        name = f"{who or '(no performer)'} · {p.get('code')}"
        row = lanes.setdefault(name, [])
        lane = next((i for i, ln in enumerate(row) if all(e <= a or s >= b for a, b in ln)), None)
        if lane is None:
            row.append([])
            lane = len(row) - 1
        row[lane].append((s, e))
        placed.append((p, s, e, name, lane))
    top: dict[str, int] = {}
    y = 28
    for name, row in lanes.items():
        top[name] = y
        y += 30 * len(row) + 8
    height = y + 10
    left, width = 220, W + 120 - 240
    out = [
        '<defs><pattern id="held" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="3" height="6" fill="#cf222e" '
        'opacity="0.5"/></pattern></defs>'
    ]
    for tick in range(0, int(span) + 1, step):
        x = left + width * tick / span
        label = datetime.fromtimestamp(start.timestamp() + tick * 60, start.tzinfo).strftime(
            "%H:%M"
        )
        out.append(
            f'<line x1="{x:.1f}" y1="20" x2="{x:.1f}" y2="{height - 6}" class="grid"/>'
            f'<text x="{x:.1f}" y="14" text-anchor="middle" class="lbl">{label}</text>'
        )
    for name, y0 in top.items():
        out.append(
            f'<text x="{left - 8}" y="{y0 + 16}" text-anchor="end" class="lbl">'
            f"{escape(name[:34])}</text>"
        )
    for p, s, e, name, lane in placed:
        x = left + width * (s - start).total_seconds() / 60 / span
        w = max(2.0, width * (e - s).total_seconds() / 60 / span)
        y0 = top[name] + 30 * lane
        fill = "url(#held)" if p.get("held") else PALETTE[0]
        stroke = ' stroke="#cf222e" stroke-width="3"' if p.get("id") in overlapping else ""
        minutes = int(p.get("minutes") or 0)
        tip = f"{p.get('code')} {s:%H:%M}-{e:%H:%M}, {minutes} min"
        tip += (", held" if p.get("held") else "") + (", overlaps" if stroke else "")
        out.append(
            f'<rect x="{x:.1f}" y="{y0}" width="{w:.1f}" height="24" fill="{fill}"'
            f'{stroke} class="period"><title>{escape(tip)}</title></rect>'
            f'<text x="{x + 4:.1f}" y="{y0 + 16}" class="bar">{minutes} min</text>'
        )
    return _svg(W + 120, height, "Documented periods by clinician and code", out)
