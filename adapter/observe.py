"""Observability: JSON logs with a correlation id, Prometheus metrics, health checks.

Logs are one JSON object a line (``ts``, ``level``, ``logger``, ``msg``, ``correlation_id``) and
carry resource ids, counts and error types only — never names, birth dates or note text (a test
replays the fixtures and searches the logs for them).

Metrics (Prometheus text format, ``GET /metrics``):
``charge_adapter_notifications_received_total{kind}``, ``..._patient_days_processed_total``,
``..._lines_written_total``, ``..._findings_total{code}``, ``..._retries_total``,
``..._dead_letters``, ``..._inbox_rows{status}`` and the ``..._processing_seconds`` histogram.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO

correlation: ContextVar[str] = ContextVar("correlation_id", default="-")
PREFIX = "charge_adapter_"
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@contextmanager
def correlated(value: str | None = None) -> Iterator[str]:
    """Run a block under a correlation id (a new one unless given)."""
    cid = value or uuid.uuid4().hex[:12]
    token = correlation.set(cid)
    try:
        yield cid
    finally:
        correlation.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "correlation_id": correlation.get(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__  # the type only: messages may quote data
        return json.dumps(entry)


def configure_logging(level: str = "INFO", stream: IO[str] | None = None) -> logging.Handler:
    """JSON logs on stderr (or ``stream``) for the adapter's loggers, and for the web server's
    (uvicorn's errors go through the same JSON lines). Without ``stream`` the handler writes to
    whatever ``sys.stderr`` is when a record is logged."""
    handler: logging.Handler = logging.StreamHandler(stream) if stream else _StderrHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("adapter")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    for name in ("uvicorn", "uvicorn.error"):
        web = logging.getLogger(name)
        web.handlers[:] = [handler]
        web.setLevel("WARNING")
        web.propagate = False
    return handler


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler on the current ``sys.stderr`` (not the one at configuration time)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


class Metrics:
    """A small thread-safe Prometheus registry (counters, gauges by callback, one histogram)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.hist_counts = [0] * (len(BUCKETS) + 1)
        self.hist_sum = 0.0
        self.gauges: dict[str, Callable[[], Mapping[tuple[tuple[str, str], ...], float]]] = {}

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self.lock:
            self.counters[key] = self.counters.get(key, 0.0) + amount

    def observe(self, seconds: float) -> None:
        with self.lock:
            self.hist_sum += seconds
            for n, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    self.hist_counts[n] += 1
                    break
            else:
                self.hist_counts[-1] += 1

    def gauge(
        self, name: str, read: Callable[[], Mapping[tuple[tuple[str, str], ...], float]]
    ) -> None:
        self.gauges[name] = read

    def value(self, name: str, **labels: str) -> float:
        return self.counters.get((name, tuple(sorted(labels.items()))), 0.0)

    def render(self) -> str:
        lines: list[str] = []
        with self.lock:
            counters = dict(self.counters)
            counts, total = list(self.hist_counts), self.hist_sum
        names = sorted({n for n, _ in counters})
        for name in names:
            lines.append(f"# TYPE {PREFIX}{name} counter")
            for (n, labels), v in sorted(counters.items()):
                if n == name:
                    lines.append(f"{PREFIX}{name}{_labels(labels)} {v:g}")
        for name, read in sorted(self.gauges.items()):
            try:
                values = read()
            except Exception:  # a gauge that cannot be read right now is left out
                continue
            lines.append(f"# TYPE {PREFIX}{name} gauge")
            lines += [f"{PREFIX}{name}{_labels(k)} {v:g}" for k, v in sorted(values.items())]
        lines.append(f"# TYPE {PREFIX}processing_seconds histogram")
        running = 0
        for bound, c in zip(BUCKETS, counts, strict=False):
            running += c
            lines.append(f'{PREFIX}processing_seconds_bucket{{le="{bound:g}"}} {running}')
        running += counts[-1]
        lines.append(f'{PREFIX}processing_seconds_bucket{{le="+Inf"}} {running}')
        lines.append(f"{PREFIX}processing_seconds_sum {total:.6f}")
        lines.append(f"{PREFIX}processing_seconds_count {running}")
        return "\n".join(lines) + "\n"


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{str(v).replace(chr(92), "").replace(chr(34), "")}"' for k, v in labels)
    return "{" + inner + "}"
