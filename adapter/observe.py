"""Observability: JSON logs with a correlation id, Prometheus metrics, health checks.

Logs are one JSON object a line (``ts``, ``level``, ``logger``, ``msg``, ``correlation_id``) and
carry resource ids, counts and error types only — never names, birth dates or note text (a test
replays the fixtures and searches the logs for them).

Metrics (Prometheus text format with HELP and TYPE, ``GET /metrics``; ``prometheus_client``):
the counters of ``CATALOG`` (``charge_adapter_<name>_total``), the values of ``CALLBACKS`` read
at each scrape (inbox depth by status and the oldest pending row's age, dead letters, retries)
and the ``charge_adapter_processing_seconds`` histogram.
"""

from __future__ import annotations

import json
import logging
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series

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


#: every metric the adapter exposes: name (without the prefix) -> (kind, help, label names)
CATALOG: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "notifications_received": ("counter", "Notifications stored in the inbox, by kind", ("kind",)),
    "notifications_duplicate": ("counter", "Deliveries already in the inbox (stored once)", ()),
    "notifications_split": ("counter", "Notifications split into several inbox items", ()),
    "webhook_requests": ("counter", "Webhook requests answered, by status", ("status",)),
    "patient_days_processed": ("counter", "Patient-days synced with the write target", ()),
    "lines_written": ("counter", "ChargeItems created or updated", ()),
    "findings": ("counter", "Findings of the synced days, by code", ("code",)),
    "dead_lettered": ("counter", "Inbox items that became dead letters", ()),
    "worker_errors": ("counter", "Failures outside any inbox item (e.g. the store away)", ()),
    "rechecks": ("counter", "Procedures on two days queued for a recheck", ()),
    "rechecks_exhausted": ("counter", "Recheck chains stopped after too many in a row", ()),
    "history_rechecks": (
        "counter",
        "Later days queued again: an earlier day changed their KX total or treatment days",
        (),
    ),
    "history_truncated": ("counter", "_history reads cut at the page cap, by type", ("kind",)),
    "inbox_pruned": ("counter", "Done inbox rows and runs deleted by retention", ()),
    "outbox_sent": ("counter", "Messages a delivery target was sent (every try)", ("target",)),
    "outbox_acked": ("counter", "Messages a delivery target accepted or took", ("target",)),
    "outbox_rejected": ("counter", "Messages a delivery target refused for good", ("target",)),
    "outbox_retried": (
        "counter",
        "Tries a delivery target did not answer or deferred",
        ("target",),
    ),
}
#: gauges and counters read from elsewhere at each scrape: name -> (kind, help)
CALLBACKS: dict[str, tuple[str, str]] = {
    "inbox_rows": ("gauge", "Inbox rows by status"),
    "inbox_oldest_pending_seconds": ("gauge", "Age of the oldest pending inbox row"),
    "dead_letters": ("gauge", "Dead letters waiting for a person"),
    "retries": ("counter", "Temporary FHIR failures retried"),
    "outbox_rows": ("gauge", "Delivery targets' outbox messages by target and status"),
    "outbox_oldest_pending_seconds": ("gauge", "Age of a target's oldest message not delivered"),
}
Read = Callable[[], Mapping[tuple[tuple[str, str], ...], float]]


class Metrics:
    """The service's Prometheus registry (``prometheus_client``): the counters of ``CATALOG``,
    values read at scrape time (``gauge``), and the processing-time histogram."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._counters: dict[str, Counter] = {
            name: Counter(PREFIX + name, help_, labels, registry=self.registry)
            for name, (_, help_, labels) in CATALOG.items()
        }
        self._seconds = Histogram(
            PREFIX + "processing_seconds",
            "Seconds to sync one patient-day",
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._reads: dict[str, Read] = {}
        self.registry.register(_Callbacks(self._reads))

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        counter = self._counters[name.removesuffix("_total")]
        (counter.labels(**labels) if labels else counter).inc(amount)

    def observe(self, seconds: float) -> None:
        self._seconds.observe(seconds)

    def gauge(self, name: str, read: Read) -> None:
        """A value read at scrape time (one of ``CALLBACKS``)."""
        if name.removesuffix("_total") not in CALLBACKS:
            raise KeyError(name)
        self._reads[name.removesuffix("_total")] = read

    def value(self, name: str, **labels: str) -> float:
        sample = self.registry.get_sample_value(
            PREFIX + name.removesuffix("_total") + "_total", labels or None
        )
        return float(sample or 0.0)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


class _Callbacks(Collector):
    """The values of ``CALLBACKS``, read when scraped; one that cannot be read is left out."""

    def __init__(self, reads: dict[str, Read]) -> None:
        self.reads = reads

    def collect(self) -> Iterator[Metric]:
        for name, read in sorted(self.reads.items()):
            kind, help_ = CALLBACKS[name]
            try:
                values = read()
            except Exception:  # a store that is away: the series is left out this scrape
                continue
            labels = sorted({k for key in values for k, _ in key})
            family: CounterMetricFamily | GaugeMetricFamily = (
                CounterMetricFamily(PREFIX + name, help_, labels=labels)
                if kind == "counter"
                else GaugeMetricFamily(PREFIX + name, help_, labels=labels)
            )
            for key, v in sorted(values.items()):
                family.add_metric([dict(key).get(k, "") for k in labels], v)
            yield family

    def describe(self) -> Iterator[Metric]:
        return iter(())
