"""Benchmarks of the charge adapter: offline replay throughput and live end-to-end latency.

    python bench/run.py replay --procedures 10000 [--format ndjson|bundles] [--seed 0] [--keep DIR]
    python bench/run.py live [--patient-days 200] [--rate 20] [--seed 0]

Every figure is printed as one JSON line
(``{"bench": ..., "figure": ..., "value": ..., "target": ..., "met": ...}``), then one summary
line. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import operator
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import jwt
import orjson
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from adapter.cds.service import REVIEW, CdsServices  # noqa: E402
from adapter.cds.tokens import CdsClient  # noqa: E402
from adapter.intake.webhook import Receiver  # noqa: E402
from adapter.mappings import load_rulebook  # noqa: E402
from adapter.pipeline import Options  # noqa: E402
from adapter.store import open_store  # noqa: E402
from adapter.web.server import WebhookServer  # noqa: E402
from bench.generate import (  # noqa: E402
    Day,
    Generator,
    PatientUnit,
    Rates,
    team_resources,
    write_bundles,
    write_ndjson,
)

Resource = dict[str, Any]
T = TypeVar("T")
VENV_BIN = Path(sys.executable).parent
SECRET = "bench-hook-secret"

# Targets from the benchmark issue; None: reported, no target.
REPLAY_TARGETS: dict[str, str | None] = {
    "procedures_per_s": ">=2000",
    "patient_days_per_s": None,
    "peak_rss_mb": None,
    "worker_peak_rss_mb": None,
    "limit_ratio": "<=6",  # on every core (issue 19)
    "limit_ratio_single": "<=10",  # one process
    "single_s": None,
    "identical_output": ">=1",
    "replay_s": None,
    "baseline_s": None,
    "generate_s": None,
}
LIVE_TARGETS: dict[str, str | None] = {
    "latency_p50_s": None,
    "latency_p95_s": None,
    "latency_p99_s": "<1",
    "sustained_patient_days_per_s": None,
    "offered_patient_days_per_s": None,
    "adapter_s_per_patient_day": None,
    "direct_write_s_per_patient_day": None,
    "overhead_ratio": "<=2",
    "latency_over_direct_ratio": None,
    "syncs_per_patient_day": None,
    "missing_patient_days": "==0",
}


# -- output ----------------------------------------------------------------------------------
def met(value: float, target: str | None) -> bool | None:
    if target is None:
        return None
    checks: dict[str, Callable[[float, float], bool]] = {
        ">=": operator.ge, "<=": operator.le, "==": operator.eq, "<": operator.lt,
        ">": operator.gt,
    }  # fmt: skip
    for op, check in checks.items():  # two-character operators first
        if target.startswith(op):
            return bool(check(value, float(target[len(op) :])))
    raise ValueError(target)


def emit(line: dict[str, Any]) -> None:
    print(orjson.dumps(line).decode(), flush=True)


def report(bench: str, size: dict[str, Any], figures: dict[str, float],
           targets: dict[str, str | None], extra: dict[str, Any]) -> None:  # fmt: skip
    results: dict[str, bool | None] = {}
    for name, value in figures.items():
        target = targets.get(name)
        results[name] = met(value, target)
        emit({"bench": bench, **size, "figure": name, "value": round(value, 4),
              "target": target, "met": results[name]})  # fmt: skip
    judged = {k: v for k, v in results.items() if v is not None}
    emit({"bench": bench, **size, "summary": True,
          "figures": {k: round(v, 4) for k, v in figures.items()},
          "targets_met": sorted(k for k, v in judged.items() if v),
          "targets_missed": sorted(k for k, v in judged.items() if not v),
          **extra})  # fmt: skip


@contextmanager
def workdir(keep: Path | None, prefix: str) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
    else:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            yield Path(tmp)


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


# -- replay ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ChildRun:
    seconds: float
    peak_rss_mb: float
    returncode: int
    stdout: bytes
    stderr: bytes


def run_child(cmd: list[str], scratch: Path, name: str) -> ChildRun:
    """Run ``cmd`` to completion; wall time and that child's own peak RSS (``wait4``)."""
    out, err = scratch / f"{name}.stdout", scratch / f"{name}.stderr"
    with out.open("wb") as fo, err.open("wb") as fe:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss is in kilobytes on Linux
    return ChildRun(seconds, usage.ru_maxrss / 1024, proc.returncode, out.read_bytes(),
                    err.read_bytes())  # fmt: skip


def cmd_replay(args: argparse.Namespace) -> int:
    n: int = args.procedures
    with workdir(args.keep, "charge-bench-replay-") as tmp:
        inputs, out = tmp / "input", tmp / "out"
        gen = Generator(args.seed)
        writer = write_ndjson if args.format == "ndjson" else write_bundles
        stats, gen_s = timed(lambda: writer(gen, inputs, n))
        exe = VENV_BIN / "charge-adapter"
        adapter = [str(exe)] if exe.exists() else [sys.executable, "-m", "adapter.cli"]
        workers = args.workers or os.cpu_count() or 1
        runs = {}
        runs_wanted = [("single", 1, tmp / "out-single")] if args.single else []
        for name, n_workers, folder in [*runs_wanted, ("replay", workers, out)]:
            cmd = [*adapter, "replay", str(inputs), "--out", str(folder), "--json",
                   "--workers", str(n_workers)]  # fmt: skip
            runs[name] = run_child(cmd, tmp, name)
            if runs[name].returncode != 0:
                sys.stderr.write(runs[name].stderr.decode(errors="replace")[-3000:])
                raise SystemExit(f"replay failed with exit code {runs[name].returncode}")
        run, single = runs["replay"], runs.get("single")
        summary = orjson.loads(run.stdout)
        same = single is not None and all((out / f.name).read_bytes() == f.read_bytes()
                                          for f in (tmp / "out-single").iterdir())  # fmt: skip
        base = run_child(
            [sys.executable, str(Path(__file__).resolve().parent / "baseline.py"), str(inputs),
             str(out),
             str(tmp / "baseline-out")], tmp, "baseline",
        )  # fmt: skip
        if base.returncode != 0:
            sys.stderr.write(base.stderr.decode(errors="replace")[-3000:])
            raise SystemExit("baseline failed")
        inner = orjson.loads(base.stdout)
        out_bytes = sum(p.stat().st_size for p in out.glob("*.transaction.json"))
        days = int(summary["patient_days"])
        figures = {
            "procedures_per_s": stats.procedures / run.seconds,
            "patient_days_per_s": days / run.seconds,
            "peak_rss_mb": run.peak_rss_mb,
            "worker_peak_rss_mb": float(summary.get("worker_peak_rss_mb") or 0.0),
            "limit_ratio": run.seconds / base.seconds,
            **(
                {
                    "limit_ratio_single": single.seconds / base.seconds,
                    "single_s": single.seconds,
                    "identical_output": 1.0 if same else 0.0,
                }
                if single is not None
                else {}
            ),
            "replay_s": run.seconds,
            "baseline_s": base.seconds,
            "generate_s": gen_s,
        }
        size = {"procedures": stats.procedures, "format": args.format}
        report("replay", size, figures, REPLAY_TARGETS, {
            "patient_days": days, "patients": stats.patients, "input_mb": stats.bytes / 2**20,
            "output_mb": out_bytes / 2**20, "charge_items": summary["charge_items"],
            "claims": summary["claims"], "findings": sum(summary["findings"].values()),
            "baseline_inner_s": inner["seconds"], "baseline_peak_rss_mb": base.peak_rss_mb,
            "seed": args.seed, "cpus": os.cpu_count(), "workers": workers,
            "python": sys.version.split()[0],
        })  # fmt: skip
    return 0


# -- live ------------------------------------------------------------------------------------
def live_days(seed: int, prefix: str, count: int) -> tuple[list[PatientUnit], list[Resource]]:
    """``count`` patients with one clean patient-day of 2 procedures each, and the context."""
    gen = Generator(seed, prefix=prefix, rates=Rates.clean(), visits=1, spacing=1, per_day=2)
    units = list(gen.units(2 * count))
    context: list[Resource] = []
    for team in sorted({u.team for u in units}):
        context += team_resources(prefix, team)
    for u in units:
        context += u.context
        context += [d.encounter for d in u.days]
    return units, context


def put_bundle(resources: list[Resource]) -> Resource:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources
        ],
    }


class Http:
    """A keep-alive JSON client for the bench's own traffic (not the adapter's)."""

    def __init__(self, base: str) -> None:
        import requests  # noqa: PLC0415  (lazy: the replay baseline child stays lean)

        self.base = base.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update({"Content-Type": "application/fhir+json",
                                     "Accept": "application/fhir+json"})  # fmt: skip

    def post(self, path: str, body: Resource) -> Resource:
        resp = self.session.post(f"{self.base}/{path}".rstrip("/"), data=orjson.dumps(body),
                                 timeout=60)  # fmt: skip
        if resp.status_code >= 300:
            raise RuntimeError(f"POST {path or '/'}: {resp.status_code} {resp.text[:500]}")
        return dict(resp.json())

    def get(self, path: str) -> Resource:
        resp = self.session.get(f"{self.base}/{path}", timeout=60)
        if resp.status_code >= 300:
            raise RuntimeError(f"GET {path}: {resp.status_code} {resp.text[:500]}")
        return dict(resp.json())


def seed_server(http: Http, resources: list[Resource], chunk: int = 100) -> None:
    for i in range(0, len(resources), chunk):
        http.post("", put_bundle(resources[i : i + chunk]))


def has_charges(http: Http, patient: str) -> bool:
    bundle = http.get(f"ChargeItem?subject={patient}&_count=5")
    return bool(bundle.get("entry"))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def cmd_live(args: argparse.Namespace) -> int:  # noqa: PLR0912, PLR0915 (the live benchmark's script, step by step)
    # imported here so that `replay` does not load the live stack
    from adapter.domain import PatientDay  # noqa: PLC0415
    from adapter.emr import subscriptions  # noqa: PLC0415
    from adapter.emr.client import FhirClient  # noqa: PLC0415
    from adapter.intake.webhook import Receiver  # noqa: PLC0415
    from adapter.mappings import load_rulebook  # noqa: PLC0415
    from adapter.pipeline import Options  # noqa: PLC0415
    from adapter.replay import evaluate_bundle  # noqa: PLC0415
    from adapter.service import Service  # noqa: PLC0415
    from adapter.store import open_store  # noqa: PLC0415
    from adapter.web.server import WebhookServer  # noqa: PLC0415
    from tests import fhir_server  # noqa: PLC0415
    from tests.mllp_peer import Peer  # noqa: PLC0415

    n, rate, warm = args.patient_days, args.rate, args.warmup
    with workdir(args.keep, "charge-bench-live-") as tmp:
        server = fhir_server.start(tmp, "subscriptions: {retries: 3}\n")
        try:
            http = Http(server.base)
            warm_units, warm_ctx = live_days(args.seed + 1, "warm", warm)
            units, ctx = live_days(args.seed, "live", n)
            direct_units, direct_ctx = live_days(args.seed, "direct", n)
            direct_procs = [p for u in direct_units for d in u.days for p in d.procedures]
            alone_units, alone_ctx = live_days(args.seed, "alone", n)
            alone_procs = [p for u in alone_units for d in u.days for p in d.procedures]
            # context first (and the direct and alone sets' procedures, before any
            # Subscription exists)
            seed_server(http, warm_ctx + ctx + direct_ctx + direct_procs + alone_ctx + alone_procs)

            client = FhirClient(server.base)
            requests_sent = count_requests(client)
            rulebook = load_rulebook()
            store = open_store(tmp / "state" / "adapter.db")
            peer = Peer().start() if args.targets else None
            targets = bench_targets(peer.port, tmp / "drop") if peer is not None else []
            service = Service(client, client, rulebook, Options(), store, targets=targets)
            busy = {"enqueue": 0.0, "sync": 0.0, "skipped": 0.0, "syncs": 0}
            lock = threading.Lock()
            enqueue, sync = service.inbox.enqueue, service.sync

            def timed_enqueue(notification: Any, source: str | None = None) -> None:
                start = time.perf_counter()
                try:
                    enqueue(notification, source)
                finally:
                    with lock:
                        busy["enqueue"] += time.perf_counter() - start

            def timed_sync(day: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                result = None
                try:
                    result = sync(day, **kwargs)
                    return result
                finally:
                    with lock:
                        # a sync that found its changes already synced (after waiting for the
                        # day lock another worker held) is counted apart
                        key = "sync" if result is not None else "skipped"
                        busy[key] += time.perf_counter() - start
                        busy["syncs"] += result is not None

            service.inbox.enqueue = timed_enqueue  # type: ignore[method-assign]
            service.sync = timed_sync  # type: ignore[method-assign]
            receiver = Receiver(service.inbox.enqueue, secret=SECRET)
            cds_client = LiveCds([u.context + team_resources("live", u.team)
                                  + [u.days[0].encounter] + u.days[0].procedures
                                  for u in units]) if args.targets else None  # fmt: skip
            web = WebhookServer(receiver, "127.0.0.1", 0,
                                cds=cds_client.services(store) if cds_client else None)  # fmt: skip
            web.start()
            if cds_client is not None:
                cds_client.port = web.port
            service.start(args.workers)
            try:
                wanted = subscriptions.desired(
                    f"http://127.0.0.1:{web.port}/notify", kind="rest-hook",
                    criteria=["Procedure?", "Encounter?"], content="full-resource", topic=None,
                    header=f"X-Adapter-Secret: {SECRET}",
                )  # fmt: skip
                subscriptions.ensure(client, wanted)
                time.sleep(0.5)
                # warm-up days (not measured)
                for u in warm_units:
                    http.post("", put_bundle(u.days[0].procedures))
                deadline = time.monotonic() + 60
                pending = [u.days[0].patient for u in warm_units]
                while pending and time.monotonic() < deadline:
                    pending = [p for p in pending if not has_charges(http, p)]
                    time.sleep(0.05)
                busy.update({"enqueue": 0.0, "sync": 0.0, "skipped": 0.0, "syncs": 0})
                requests_sent.clear()
                cpu_before = (cpu_seconds(server.process.pid), cpu_seconds(os.getpid()))
                lat, load_cpu = generate_load(server.base, [u.days[0] for u in units], rate,
                                              cds_client)  # fmt: skip
                # charges are readable before the sync returns (ledger, metrics): let it finish
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    counts = store.counts()
                    sending = {k: v for k, v in store.outbox_counts().items()
                               if k[1] in ("pending", "sending")}  # fmt: skip
                    if not counts.get("pending") and not counts.get("processing") and not sending:
                        break
                    time.sleep(0.05)
                time.sleep(0.3)
                adapter_busy = dict(busy)
                live_requests = sum(requests_sent.values())
                server_cpu = cpu_seconds(server.process.pid) - cpu_before[0]
                adapter_cpu = cpu_seconds(os.getpid()) - cpu_before[1]
                delivered = outbox_times(store)
            finally:
                web.stop()
                service.stop()
                subscriptions.remove(client)
                store.close()
                if peer is not None:
                    peer.stop()

            # the adapter alone: each day of an identical set synced one after another, with no
            # other load (no deliveries, no other worker, no poller): the conditions the direct
            # writes below are measured in
            alone_store = open_store(tmp / "state" / "alone.db")
            alone_service = Service(client, client, rulebook, Options(), alone_store)
            alone: list[float] = []
            requests_sent.clear()
            cpu_before = (cpu_seconds(server.process.pid), cpu_seconds(os.getpid()))
            for u in alone_units:
                day = u.days[0]
                _, seconds = timed(
                    lambda p=day.patient, d=day.dos: alone_service.sync(PatientDay.of(p, d))  # type: ignore[misc]
                )
                alone.append(seconds)
            alone_store.close()
            alone_requests = sum(requests_sent.values())
            alone_cpu = (cpu_seconds(server.process.pid) - cpu_before[0],
                         cpu_seconds(os.getpid()) - cpu_before[1])  # fmt: skip

            # the server's own cost: the same ChargeItem/Claim/... writes, posted directly
            bundles = []
            for u in direct_units:
                day = u.days[0]
                resources = team_resources("direct", u.team) + u.context + [day.encounter]
                doc = {"resourceType": "Bundle", "type": "collection",
                       "entry": [{"resource": r} for r in resources + day.procedures]}  # fmt: skip
                tx, _, _ = evaluate_bundle(doc, rulebook)
                bundles.append(tx)
            direct: list[float] = []
            cpu_before = (cpu_seconds(server.process.pid), cpu_seconds(os.getpid()))
            for tx in bundles:
                _, seconds = timed(lambda tx=tx: http.post("", tx))  # type: ignore[misc]
                direct.append(seconds)
            written = sum(len(b["entry"]) for b in bundles)
            direct_cpu = (cpu_seconds(server.process.pid) - cpu_before[0],
                          cpu_seconds(os.getpid()) - cpu_before[1])  # fmt: skip
        finally:
            server.stop()

    ok = [v for v in lat.latencies if v is not None]
    missing = len(lat.latencies) - len(ok)
    direct_mean = statistics.fmean(direct)
    adapter_per_day = (adapter_busy["enqueue"] + adapter_busy["sync"]) / n
    alone_mean = statistics.fmean(alone)
    figures = {
        "latency_p50_s": percentile(ok, 50) if ok else float("nan"),
        "latency_p95_s": percentile(ok, 95) if ok else float("nan"),
        "latency_p99_s": percentile(ok, 99) if ok else float("nan"),
        "sustained_patient_days_per_s": len(ok) / lat.span if lat.span else 0.0,
        "offered_patient_days_per_s": n / lat.post_span if lat.post_span else 0.0,
        "adapter_s_per_patient_day": alone_mean,
        "direct_write_s_per_patient_day": direct_mean,
        "overhead_ratio": alone_mean / direct_mean,
        "adapter_under_load_s_per_patient_day": adapter_per_day,
        "overhead_under_load_ratio": adapter_per_day / direct_mean,
        "latency_over_direct_ratio": statistics.fmean(ok) / direct_mean if ok else float("nan"),
        "syncs_per_patient_day": adapter_busy["syncs"] / n,
        "missing_patient_days": float(missing),
        "emr_requests_per_patient_day": live_requests / n,
        "emr_requests_per_patient_day_alone": alone_requests / n,
        "late_posts": float(lat.late_posts),
        # CPU seconds per patient-day under load (2 cores: the sum bounds the sustainable rate)
        "server_cpu_s_per_patient_day": server_cpu / n,
        "adapter_cpu_s_per_patient_day": adapter_cpu / n,
        "load_generator_cpu_s_per_patient_day": load_cpu / n,
        "cpu_bound_patient_days_per_s": (os.cpu_count() or 1)
        * n
        / (server_cpu + adapter_cpu + load_cpu),
        # the same, alone (step 6: the server answering the adapter's reads and write) and for
        # the direct writes (step 7: the server's write, the bench posting it)
        "alone_server_cpu_s_per_patient_day": alone_cpu[0] / n,
        "alone_adapter_cpu_s_per_patient_day": alone_cpu[1] / n,
        "direct_server_cpu_s_per_patient_day": direct_cpu[0] / n,
        "direct_client_cpu_s_per_patient_day": direct_cpu[1] / n,
    }
    for name, times in delivered.items():
        key = name.replace("-", "_")
        figures[f"{key}_messages"] = float(len(times))
        figures[f"{key}_p99_s"] = percentile(times, 99) if times else float("nan")
    if lat.cds_ms:
        figures["cds_p95_ms"] = percentile(lat.cds_ms, 95)
    report("live", {"patient_days": n, "rate": rate}, figures, LIVE_TARGETS, {
        "latency_mean_s": statistics.fmean(ok) if ok else None,
        "latency_max_s": max(ok) if ok else None,
        "post_mean_s": statistics.fmean(lat.post_seconds),
        "adapter_enqueue_s": adapter_busy["enqueue"], "adapter_sync_s": adapter_busy["sync"],
        "adapter_skipped_sync_s": adapter_busy["skipped"],
        "adapter_alone_p50_s": percentile(alone, 50),
        "direct_entries_per_patient_day": written / n,
        "direct_p50_s": percentile(direct, 50), "poll_rounds": lat.rounds,
        "targets": [t.name for t in targets], "cds_calls": len(lat.cds_ms),
        "requests_by_kind": dict(requests_sent),
        "seed": args.seed, "cpus": os.cpu_count(), "python": sys.version.split()[0],
    })  # fmt: skip
    return 0


def count_requests(client: Any) -> Counter[str]:
    """Count the adapter's own requests to the EMR (at the ``requests`` session under its
    FHIR client: a batch is one request), by method and first path segment."""
    sent: Counter[str] = Counter()
    send = client.session.request

    def counted(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        path = url.removeprefix(client.base_url).lstrip("/").split("?")[0].split("/")[0]
        sent[f"{method} {path or '/'}"] += 1
        return send(method, url, *args, **kwargs)

    client.session.request = counted
    return sent


def outbox_times(store: Any) -> dict[str, list[float]]:
    """Each target's messages: seconds from queued (the sync) to acknowledged / written."""
    rows = store._run("SELECT target, created_at, done_at FROM outbox WHERE done_at IS NOT NULL "
                      "AND status IN ('acked', 'delivered')", ())  # fmt: skip
    out: dict[str, list[float]] = {}
    for target, created, done in rows:
        out.setdefault(str(target), []).append(float(done) - float(created))
    return out


_CDS_SESSIONS = threading.local()  # the CDS caller's keep-alive session, one per thread


class LiveCds:
    """The EHR's CDS client in the live bench: an ``encounter-discharge`` call per posted day
    (the day's procedures and context as the prefetch), signed with a fresh ES384 JWT. It runs
    in the load generator's process (picklable: the key as PEM)."""

    iss, base = "https://ehr.example.org", "https://adapter.example.org"

    def __init__(self, day_resources: list[list[Resource]]) -> None:
        key = ec.generate_private_key(ec.SECP384R1())
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        self.public_pem = key.public_key().public_bytes(serialization.Encoding.PEM, spki).decode()
        self.private_pem = key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption())  # fmt: skip
        self.days = day_resources
        self.port = 0

    def services(self, store: Any) -> CdsServices:
        """The adapter's CDS Hooks services that trust this client."""
        return CdsServices(load_rulebook(), Options(), store,
                           {self.iss: CdsClient(iss=self.iss, public_key=self.public_pem)},
                           self.base)  # fmt: skip

    def call(self, i: int) -> float:
        resources = self.days[i]
        patient = next(r["id"] for r in resources if r["resourceType"] == "Patient")
        encounter = next(r["id"] for r in resources if r["resourceType"] == "Encounter")
        bundle = {"resourceType": "Bundle", "type": "searchset",
                  "entry": [{"resource": r} for r in resources]}  # fmt: skip
        body = {"hook": "encounter-discharge", "hookInstance": str(uuid.uuid4()),
                "context": {"userId": "Practitioner/x", "patientId": patient,
                            "encounterId": encounter},
                "prefetch": {"procedures": bundle}}  # fmt: skip
        now = int(time.time())
        token = jwt.encode({"iss": self.iss, "sub": "bench",
                            "aud": f"{self.base}/cds-services/{REVIEW}", "exp": now + 60,
                            "iat": now, "jti": str(uuid.uuid4())}, self.private_pem,
                           algorithm="ES384")  # fmt: skip
        session = getattr(_CDS_SESSIONS, "session", None) or requests.Session()
        _CDS_SESSIONS.session = session
        started = time.perf_counter()
        answer = session.post(f"http://127.0.0.1:{self.port}/cds-services/{REVIEW}",
                              data=orjson.dumps(body), timeout=30,
                              headers={"Authorization": f"Bearer {token}",
                                       "Content-Type": "application/json"})  # fmt: skip
        elapsed = 1000 * (time.perf_counter() - started)
        if answer.status_code != 200:
            raise RuntimeError(f"cds call answered {answer.status_code}")
        return elapsed


def cpu_seconds(pid: int) -> float:
    """A process's CPU time so far (user + system, from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def generate_load(base: str, days: list[Day], rate: float,
                  cds: LiveCds | None) -> tuple[LiveRun, float]:  # fmt: skip
    """``measure_live`` in a process of its own (so that the load generator's threads do not
    compete with the adapter's for its interpreter lock); its CPU seconds too."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_generate_load, (base, days, rate, cds))


def _generate_load(base: str, days: list[Day], rate: float,
                   cds: LiveCds | None) -> tuple[LiveRun, float]:  # fmt: skip
    before = cpu_seconds(os.getpid())
    run = measure_live(base, days, rate, cds=cds.call if cds is not None else None)
    return run, cpu_seconds(os.getpid()) - before


@dataclass(slots=True)
class LiveRun:
    latencies: list[float | None]
    post_seconds: list[float]
    span: float  # first post -> last ChargeItem readable
    post_span: float  # first post -> last post started
    rounds: int
    late_posts: int  # posts that started more than 50 ms after their time
    cds_ms: list[float]  # the CDS Hooks calls' wall times


def charged(http: Http, patients: list[str]) -> set[str]:
    """Which of ``patients`` have a ChargeItem (one search per 50: ``subject`` OR list)."""
    found: set[str] = set()
    for i in range(0, len(patients), 50):
        chunk = patients[i : i + 50]
        bundle = http.get(f"ChargeItem?subject={','.join(chunk)}&_elements=subject&_count=1000")
        found.update(str(e["resource"]["subject"]["reference"]) for e in bundle.get("entry", []))
    return found


def measure_live(  # noqa: C901, PLR0915 (the load generator, its poller and its CDS client)
    base: str, days: list[Day], rate: float, timeout: float = 60.0,
    cds: Callable[[int], float] | None = None,
) -> LiveRun:  # fmt: skip
    """Offer the days at ``rate`` per second, open loop: each day's 2 procedures are posted
    (one transaction) at its own time by a pool of posting threads, whatever the earlier
    posts are still doing (a single poster waiting for each answer offers less than the rate
    as soon as the server slows down). With ``cds``, each day is also checked by a CDS Hooks
    call at its time (as an EHR does before the note is signed). A poller asks which posted
    days have charges, one search per 50 open days, until every day has them."""
    n = len(days)
    posted: list[float | None] = [None] * n
    found: list[float | None] = [None] * n
    post_seconds: list[float] = []
    cds_ms: list[float] = []
    lock = threading.Lock()
    done_posting = threading.Event()
    rounds = late = 0
    pool = [Http(base) for _ in range(16)]
    free = list(pool)

    def post(i: int) -> None:
        with lock:
            http = free.pop()
        try:
            start = time.perf_counter()
            posted[i] = start
            http.post("", put_bundle(days[i].procedures))
            with lock:
                post_seconds.append(time.perf_counter() - start)
        finally:
            with lock:
                free.append(http)

    def check(i: int) -> None:
        ms = cds(i) if cds is not None else 0.0
        with lock:
            cds_ms.append(ms)

    def scheduler() -> None:
        nonlocal late
        from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

        with ThreadPoolExecutor(len(pool)) as posts, ThreadPoolExecutor(4) as checks:
            t0 = time.perf_counter()
            for i in range(n):
                due = t0 + i / rate
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                late += time.perf_counter() - due > 0.05
                posts.submit(post, i)
                if cds is not None:
                    checks.submit(check, i)
        done_posting.set()

    def poller() -> None:
        nonlocal rounds
        http = Http(base)
        last_progress = time.perf_counter()
        while True:
            open_days = [i for i in range(n) if posted[i] is not None and found[i] is None]
            if not open_days:
                if done_posting.is_set() and all(f is not None for f in found):
                    return
                time.sleep(0.005)
                continue
            rounds += 1
            have = charged(http, [days[i].patient for i in open_days])
            now = time.perf_counter()
            for i in open_days:
                if days[i].patient in have:
                    found[i] = now
                    last_progress = now
            if done_posting.is_set() and time.perf_counter() - last_progress > timeout:
                return
            time.sleep(0.01)

    threads = [threading.Thread(target=scheduler), threading.Thread(target=poller)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    first = min(p for p in posted if p is not None)
    last_post = max(p for p in posted if p is not None)
    found_ok = [f for f in found if f is not None]
    latencies = [
        (f - p) if f is not None and p is not None else None
        for p, f in zip(posted, found, strict=True)
    ]
    return LiveRun(latencies, post_seconds, (max(found_ok) - first) if found_ok else 0.0,
                   last_post - first, rounds, late, cds_ms)  # fmt: skip


# -- delivery targets ------------------------------------------------------------------------
def bench_envelope() -> tuple[Any, Any]:
    """The 837P envelope and billing provider of the bench (the tests' synthetic ones)."""
    from adapter.x12.p837 import BillingProvider, Envelope  # noqa: PLC0415

    envelope = Envelope(sender_id="BENCHSUBMITTER", receiver_id="BENCHRECEIVER",
                        submitter_name="Bench Therapy Clinic", receiver_name="Bench Clearinghouse",
                        contact_name="Bench Biller", contact_phone="5555550100")  # fmt: skip
    provider = BillingProvider(name="Bench Therapy Clinic", npi="1999999984",
                               tax_id="123456789", address="1 Bench Street", city="Benchville",
                               state="MN", postal_code="555550001")  # fmt: skip
    return envelope, provider


def bench_targets(peer_port: int, folder: Path) -> list[Any]:
    """A DFT^P03 target on the local MLLP peer and an 837P target on a drop folder."""
    from adapter.delivery import Hl7Target, X12Target  # noqa: PLC0415

    envelope, provider = bench_envelope()
    payer_ids = {p: f"BENCH{p.upper()[:8]}" for p in load_rulebook().payers}
    return [Hl7Target(name="billing-dft", host="127.0.0.1", port=peer_port, timeout=10),
            X12Target(name="clearinghouse", folder=folder, envelope=envelope, provider=provider,
                      payer_ids=payer_ids)]  # fmt: skip


def day_outputs(inputs: Path, scratch: Path) -> Iterator[Any]:
    """Every billable patient-day of the generated ``inputs`` as the targets get it."""
    from datetime import UTC, datetime  # noqa: PLC0415

    from adapter.delivery import DayOutput  # noqa: PLC0415
    from adapter.intake.sources import expand  # noqa: PLC0415
    from adapter.intake.spool import Spool  # noqa: PLC0415
    from adapter.replay import Summary, days, ingest  # noqa: PLC0415

    rulebook = load_rulebook()
    at = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
    spool = Spool(scratch / "spool.sqlite")
    try:
        ingest(expand([inputs]), spool, Summary(rulebook_version=rulebook.version), None)
        for _, result in days(spool, rulebook, Options()):
            if result.decision is not None and result.parties is not None:
                yield DayOutput(result.decision, result.parsed.facts, result.parties, at)
    finally:
        spool.close()


def cmd_delivery(args: argparse.Namespace) -> int:
    """Each delivery target's sustained messages/s and time to acknowledgement: the days of
    ``--procedures`` generated procedures queued (as a sync queues them: desire, compare,
    store), then sent by the service's own delivery code, one target after the other, to the
    local MLLP peer (hl7apy's MLLPServer, tests/mllp_peer.py) and to a drop folder."""
    from adapter.emr.client import FhirClient  # noqa: PLC0415
    from adapter.service import Service  # noqa: PLC0415
    from tests.mllp_peer import Peer  # noqa: PLC0415

    with workdir(args.keep, "charge-bench-delivery-") as tmp:
        stats = write_ndjson(Generator(args.seed), tmp / "input", args.procedures)
        peer = Peer().start()
        store = open_store(args.store or tmp / "delivery.db")
        try:
            targets = bench_targets(peer.port, tmp / "drop")
            client = FhirClient("http://127.0.0.1:9/fhir")  # never called: delivery only
            service = Service(client, client, load_rulebook(), Options(), store,
                              targets=targets)  # fmt: skip
            queued = {t.name: 0 for t in targets}
            queue_s = 0.0
            n_days = 0
            for out in day_outputs(tmp / "input", tmp):
                n_days += 1
                started = time.perf_counter()
                for target in targets:  # what Service._queue_outbound does per synced day
                    desired = target.desire(out)
                    if store.outbox_latest(target.name, out.facts.day.key) is None:
                        queued[target.name] += store.outbox_queue(
                            target.name, out.facts.day.key, 1, desired) is not None  # fmt: skip
                queue_s += time.perf_counter() - started
            figures: dict[str, float] = {"queue_ms_per_day": 1000 * queue_s / max(n_days, 1)}
            extra: dict[str, Any] = {"patient_days": n_days, "queued": queued}
            for target in targets:
                each: list[float] = []
                started = time.perf_counter()
                while True:
                    t0 = time.perf_counter()
                    if not service.deliver_once(target):
                        break
                    each.append(time.perf_counter() - t0)
                span = time.perf_counter() - started
                done = store.outbox_counts()
                key = target.name.replace("-", "_")
                figures[f"{key}_messages_per_s"] = len(each) / span if span else 0.0
                figures[f"{key}_p50_ms"] = 1000 * percentile(each, 50) if each else 0.0
                figures[f"{key}_p99_ms"] = 1000 * percentile(each, 99) if each else 0.0
                extra[target.name] = {s: c for (t, s), c in done.items() if t == target.name}
            extra["peer_received"] = len(peer.received)
            extra["files_written"] = len(list((tmp / "drop").glob("*.837p.x12")))
        finally:
            store.close()
            peer.stop()
    size = {"procedures": stats.procedures, "store": "postgresql" if args.store else "sqlite"}
    report("delivery", size, figures, dict.fromkeys(figures), extra)
    return 0


# -- cli -------------------------------------------------------------------------------------
def cmd_cds(args: argparse.Namespace) -> int:
    """CDS Hooks card latency (issue 17: p95 <= 200 ms with prefetch on this machine): a CDS
    client signs a fresh ES384 JWT per call and posts the fixture days' encounter-discharge
    requests to the adapter's real web server on loopback; wall time per call, client side.
    ``--reads``: no prefetch; the service reads the encounter's procedures and context from
    the real FHIR test server (seeded with the fixtures) with the request's
    fhirAuthorization, within the budget (calls the budget cut short are counted apart)."""
    from tests import fhir_server  # noqa: PLC0415

    fixtures = Path(__file__).parents[1] / "fixtures"
    base, iss = "https://adapter.example.org", "https://ehr.example.org"
    key = ec.generate_private_key(ec.SECP384R1())
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, spki).decode()
    requests_, seeded = [], []
    for case in sorted(fixtures.glob("*/input.json"))[: args.days]:
        resources = [e["resource"] for e in orjson.loads(case.read_bytes())["entry"]]
        patient = next((r["id"] for r in resources if r["resourceType"] == "Patient"), None)
        encounter = next((r["id"] for r in resources if r["resourceType"] == "Encounter"), None)
        if patient is None or (args.reads and encounter is None):
            continue
        seeded += resources
        prefetch = {"procedures": {"resourceType": "Bundle", "type": "searchset",
                                   "entry": [{"resource": r} for r in resources]}}  # fmt: skip
        requests_.append({"hook": "encounter-discharge", "hookInstance": "",
                          "context": {"userId": "Practitioner/x", "patientId": patient,
                                      "encounterId": encounter or "x"},
                          **({} if args.reads else {"prefetch": prefetch})})  # fmt: skip
    with workdir(args.keep, "bench-cds-") as tmp:
        ehr = fhir_server.start(tmp) if args.reads else None
        if ehr is not None:
            ehr.put_all(*seeded)
            auth = {"access_token": "bench", "token_type": "Bearer", "expires_in": 300,
                    "scope": "patient/*.read", "subject": "cds-service"}  # fmt: skip
            requests_ = [dict(r, fhirServer=ehr.base, fhirAuthorization=auth) for r in requests_]
        store = open_store(tmp / "cds.db")
        cds = CdsServices(load_rulebook(), Options(), store,
                          {iss: CdsClient(iss=iss, public_key=pem)}, base,
                          fhir_servers=frozenset({ehr.base} if ehr else ()))  # fmt: skip
        server = WebhookServer(Receiver(lambda n: None, secret="s"), port=0, cds=cds)
        server.start()
        session = requests.Session()
        times: list[float] = []
        cut_short = 0
        try:
            for n in range(args.calls):
                body = dict(requests_[n % len(requests_)], hookInstance=str(uuid.uuid4()))
                now = int(time.time())
                token = jwt.encode({"iss": iss, "sub": "bench", "aud": f"{base}/cds-services/"
                                    f"{REVIEW}", "exp": now + 60, "iat": now,
                                    "jti": str(uuid.uuid4())}, key, algorithm="ES384")  # fmt: skip
                started = time.perf_counter()
                answer = session.post(f"http://127.0.0.1:{server.port}/cds-services/{REVIEW}",
                                      data=orjson.dumps(body), timeout=30,
                                      headers={"Authorization": f"Bearer {token}",
                                               "Content-Type": "application/json"})  # fmt: skip
                elapsed = time.perf_counter() - started
                if answer.status_code != 200:
                    raise SystemExit(f"cds call answered {answer.status_code}")
                if n >= args.warmup:
                    times.append(elapsed * 1000)
                    cut_short += any("incomplete" in c["summary"] for c in answer.json()["cards"])
        finally:
            server.stop()
            store.close()
            if ehr is not None:
                ehr.stop()
    report("cds", {"calls": len(times), "days": len(requests_)},
           {"p50_ms": percentile(times, 50), "p95_ms": percentile(times, 95),
            **({"over_budget_calls": cut_short} if args.reads else {})},
           {} if args.reads else {"p95_ms": "<=200"},
           {"prefetch": not args.reads, "budget_ms": cds.budget * 1000})  # fmt: skip
    return 0


def _review_days(n: int, seed: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """``n`` synthetic patient-days as the workbench records them: a year of dates, 10
    clinics, 50 clinicians, 5 payers, findings drawn from the common ones."""
    import random  # noqa: PLC0415

    rng = random.Random(seed)
    kinds = ["time-missing", "note-vague", "same-code-overlap", "kx-applied", "no-price",
             "progress-report-due", "authorization-running-out", "ncci-not-distinct",
             "overlapping-services", "under-8-minutes"]  # fmt: skip
    payers = ["medicare", "medicaid", "commercial", "tricare", "workers-comp"]
    for i in range(n):
        found = rng.sample(kinds, rng.choice([0, 0, 1, 1, 2, 3]))
        errors = sum(f in ("time-missing", "overlapping-services", "no-price") for f in found)
        dos = f"2026-{1 + i % 12:02d}-{1 + (i // 12) % 28:02d}"
        total = rng.randrange(5_000, 60_000)
        yield f"bench-{i}:{dos}", {
            "patient": f"Patient/bench-{i}", "dos": dos, "payer": rng.choice(payers),
            "clinic": f"Organization/clinic-{i % 10}", "errors": errors,
            "warnings": len(found) - errors, "held": errors, "unpriced": int("no-price" in found),
            "rejected": 0, "auth_low": int("authorization-running-out" in found),
            "at_risk": total if found else 0, "total": total, "findings": found,
            "clinicians": [f"PractitionerRole/r{rng.randrange(50)}"],
            "lines": [{"code": "97110", "discipline": "PT", "units": 2, "modifiers": "GP",
                       "assistant": False, "net": total}],
        }  # fmt: skip


def cmd_workbench(args: argparse.Namespace) -> int:
    """The workbench's pages at ``--days`` patient-days (issue 18: the queue under 300 ms
    server time at 100k): the real web server on loopback, a signed-in session, wall time per
    page on the client side (an upper bound of the server's time), p50 and p95 per page."""
    from adapter.workbench.auth import SessionRules, hash_password  # noqa: PLC0415
    from adapter.workbench.web import Workbench, workbench_app  # noqa: PLC0415

    with workdir(args.keep, "bench-workbench-") as tmp:
        store = open_store(args.store or tmp / "wb.db")
        started = time.perf_counter()
        for key, summary in _review_days(args.days, args.seed):
            store.review_put(key, summary, {"lines": [], "findings": [], "periods": []}, "sync")
        fill = time.perf_counter() - started
        store.user_put("bench", hash_password("bench password 1"), "viewer")
        wb = Workbench(store=store, session=SessionRules(secret="b" * 40, secure=False),
                       resync=lambda day: None, audit=lambda: 0)  # fmt: skip
        server = WebhookServer(Receiver(lambda n: None, secret="s"), port=0,
                               mounts=[("/review", workbench_app(wb))])  # fmt: skip
        server.start()
        base = f"http://127.0.0.1:{server.port}/review"
        http = requests.Session()
        try:
            page = http.get(f"{base}/login", timeout=30).text
            token = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            login = {"csrf": token, "username": "bench", "password": "bench password 1"}
            http.post(f"{base}/login", data=login, timeout=30)
            first = http.get(f"{base}/", timeout=60).text
            more = first.split('href="/review/?', 1)[1].split('" rel="next"', 1)[0]
            more = more.replace("&amp;", "&")
            pages = {
                "queue": "/", "queue_page_2": f"/?{more}",
                "queue_by_finding": "/?finding=time-missing",
                "queue_by_clinician": "/?clinician=PractitionerRole/r7&sort=age",
                "queue_held_by_payer": "/?kind=held&payer=tricare&sort=date",
                "queue_by_clinic_dates": "/?clinic=Organization/clinic-3&from=2026-03-01"
                                         "&to=2026-05-31",
                "day": "/days/bench-17:" + next(k for k, _ in _review_days(18, args.seed)
                                               if k.startswith("bench-17:")).split(":", 1)[1],
                "reports": "/reports",
            }  # fmt: skip
            times: dict[str, list[float]] = {name: [] for name in pages}
            for n in range(args.rounds):
                for name, path in pages.items():
                    t = time.perf_counter()
                    answer = http.get(base + path, timeout=120)
                    elapsed = (time.perf_counter() - t) * 1000
                    if answer.status_code != 200:
                        raise SystemExit(f"{name} answered {answer.status_code}")
                    if n >= args.warmup:
                        times[name].append(elapsed)
        finally:
            server.stop()
            store.close()
    queue = [t for name, ts in times.items() if name.startswith("queue") for t in ts]
    figures = {"queue_p50_ms": percentile(queue, 50), "queue_p95_ms": percentile(queue, 95)}
    for name, ts in times.items():
        figures[f"{name}_p50_ms"] = percentile(ts, 50)
    extra = {"fill_s": round(fill, 1), "store": "postgresql" if args.store else "sqlite"}
    report("workbench", {"days": args.days, "rounds": args.rounds - args.warmup},
           figures, {"queue_p95_ms": "<=300"}, extra)  # fmt: skip
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("replay", help="offline replay throughput, memory and limit ratio")
    r.add_argument("--procedures", type=int, default=10_000)
    r.add_argument("--format", choices=("ndjson", "bundles"), default="ndjson")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--keep", type=Path, default=None, help="keep inputs and outputs in DIR")
    r.add_argument("--workers", type=int, default=0, help="replay processes (0: one per core)")
    r.add_argument(
        "--no-single",
        dest="single",
        action="store_false",
        help="skip the one-process run (and the byte-for-byte comparison)",
    )
    lv = sub.add_parser("live", help="end-to-end latency on the real FHIR test server")
    lv.add_argument("--patient-days", type=int, default=200)
    lv.add_argument("--rate", type=float, default=20.0, help="patient-days posted per second")
    lv.add_argument("--workers", type=int, default=4, help="adapter worker threads")
    lv.add_argument("--warmup", type=int, default=5, help="unmeasured patient-days first")
    lv.add_argument("--seed", type=int, default=0)
    lv.add_argument("--keep", type=Path, default=None, help="keep the server's work dir in DIR")
    lv.add_argument(
        "--no-targets",
        dest="targets",
        action="store_false",
        help="the FHIR write-back alone (no DFT, 837P or CDS Hooks calls)",
    )
    cd = sub.add_parser(
        "cds", help="CDS Hooks card latency, with prefetch or with EHR reads (p50, p95)"
    )
    cd.add_argument("--calls", type=int, default=200)
    cd.add_argument("--days", type=int, default=40, help="fixture cases to cycle through")
    cd.add_argument("--warmup", type=int, default=10)
    cd.add_argument("--keep", type=Path, default=None)
    cd.add_argument(
        "--reads",
        action="store_true",
        help="no prefetch: the service reads from the FHIR test server",
    )
    wb = sub.add_parser("workbench", help="the workbench's pages at 100k days (p50, p95)")
    wb.add_argument("--days", type=int, default=100_000)
    wb.add_argument("--rounds", type=int, default=12)
    wb.add_argument("--warmup", type=int, default=2)
    wb.add_argument("--seed", type=int, default=0)
    wb.add_argument("--store", metavar="URL", help="a PostgreSQL store (default: SQLite)")
    wb.add_argument("--keep", type=Path, default=None)
    dv = sub.add_parser("delivery", help="each delivery target's messages/s and time to ack")
    dv.add_argument("--procedures", type=int, default=10_000)
    dv.add_argument("--seed", type=int, default=0)
    dv.add_argument("--store", metavar="URL", help="a PostgreSQL store (default: SQLite)")
    dv.add_argument("--keep", type=Path, default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command = {"replay": cmd_replay, "live": cmd_live, "cds": cmd_cds,
               "workbench": cmd_workbench, "delivery": cmd_delivery}[args.command]  # fmt: skip
    return command(args)


if __name__ == "__main__":
    raise SystemExit(main())
