"""The ``charge-adapter`` command line. ``main(argv) -> int`` is what tests call."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from adapter import __version__
from adapter import replay as replay_mod
from adapter.config import Settings, load_settings, masked, zone_of
from adapter.domain import Rulebook
from adapter.emr import subscriptions
from adapter.emr.client import check_capabilities
from adapter.errors import AdapterError, ConfigError
from adapter.fhir.build import BuildOptions
from adapter.intake.events import Notification
from adapter.intake.webhook import Receiver, WebhookServer
from adapter.mappings import DEFAULT_MAPPINGS_DIR, load_rulebook
from adapter.observe import configure_logging
from adapter.pipeline import Options
from adapter.service import Health, Service
from adapter.store import open_store


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="charge-adapter",
        description="Therapy charge capture for FHIR R4 EMRs: CPT units, modifiers and "
        "documentation findings, each explained.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _offline_commands(sub)
    _live_commands(sub)
    return parser


if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


def _offline_commands(sub: Subparsers) -> None:
    """Commands that need no server: check-mappings, replay, explain."""
    check = sub.add_parser(
        "check-mappings",
        help="validate a mappings directory (codes, payers, NCCI, limits, CMS files)",
        description="Load and validate every file of a mappings directory; print a summary, or "
        "the file, entry and reason of the first problem.",
    )
    check.add_argument(
        "directory",
        nargs="?",
        type=Path,
        default=DEFAULT_MAPPINGS_DIR,
        help="mappings directory (default: the shipped mappings/)",
    )
    rp = sub.add_parser(
        "replay",
        help="replay FHIR bundles / NDJSON into the transaction bundles the adapter would write",
        description="Read FHIR R4 Bundles (collection, transaction, batch, searchset), NDJSON "
        "files or directories of them; evaluate every patient-day; write one transaction Bundle "
        "per input file into --out; print a summary. Exit 0 when every input was read.",
    )
    rp.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    rp.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    _common(rp)
    rp.add_argument("--json", action="store_true", help="print the summary as JSON")
    ex = sub.add_parser(
        "explain",
        help="explain, per patient-day, the minutes, method, units, modifiers and findings",
    )
    ex.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    ex.add_argument("--encounter", metavar="ID", help="only patient-days of this Encounter id")
    _common(ex)


def _live_commands(sub: Subparsers) -> None:
    """Commands beside an EMR: serve, subscribe, unsubscribe, poll, work, check-config, doctor,
    dead-letters."""
    sv = sub.add_parser(
        "serve", help="run the webhook receiver and worker (Ctrl-C / SIGTERM stops)"
    )
    _live(sv)
    sv.add_argument("--host", help="listen address (default: webhook.host)")
    sv.add_argument("--port", type=int, help="listen port (default: webhook.port)")
    sb = sub.add_parser("subscribe", help="create or update the Subscriptions on the EMR")
    _live(sb)
    sb.add_argument("--endpoint", help="the URL the EMR calls (default: webhook.public_url)")
    us = sub.add_parser("unsubscribe", help="remove the adapter's Subscriptions from the EMR")
    _live(us)
    pl = sub.add_parser("poll", help="poll the EMR for changed procedures (no Subscriptions)")
    _live(pl)
    pl.add_argument("--once", action="store_true", help="poll once and exit")
    wk = sub.add_parser("work", help="process the durable inbox (a worker replica)")
    _live(wk)
    wk.add_argument("--until-empty", action="store_true", help="exit when nothing is due")
    cc = sub.add_parser("check-config", help="validate and print the effective configuration")
    cc.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    dr = sub.add_parser("doctor", help="check the EMR connection, auth and capabilities")
    _live(dr)
    dl = sub.add_parser("dead-letters", help="list, show, retry or discard dead letters")
    dl.add_argument("action", choices=["list", "show", "retry", "discard"])
    dl.add_argument("id", nargs="?", type=int)
    dl.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    dl.add_argument("--store", metavar="URL", help="store URL (default: from the config)")


def _live(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    p.add_argument(
        "--store", metavar="URL", help="sqlite:///PATH or postgresql://… (default: config)"
    )
    p.add_argument("--emr", metavar="URL", help="EMR FHIR base URL (default: emr_base_url)")
    p.add_argument("--write", metavar="URL", help="write-back base URL (default: the EMR)")
    p.add_argument("--mappings", type=Path, metavar="DIR", help="mappings directory")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    p.add_argument("--payer", metavar="PROFILE", help="payer profile for every patient-day")
    p.add_argument("--mappings", type=Path, metavar="DIR", help="mappings directory")
    p.add_argument(
        "--timezone",
        metavar="ZONE",
        help="the site's IANA time zone: dates of service are dates there (default: config "
        "timezone, else each time's own offset)",
    )


def _setup(args: argparse.Namespace) -> tuple[Rulebook, Options]:
    settings: Settings = load_settings(args.config)
    rulebook = load_rulebook(args.mappings or settings.mappings or DEFAULT_MAPPINGS_DIR)
    for name, value in (("--payer", args.payer), ("default_payer", settings.default_payer)):
        if value is not None and value not in rulebook.payers:
            raise ConfigError(
                f"{name} {value!r} is not a payer profile ({', '.join(sorted(rulebook.payers))})"
            )
    zone = zone_of(args.timezone, "--timezone") if args.timezone else settings.zone()
    options = Options(
        payer_override=args.payer,
        default_payer=settings.default_payer,
        evaluated_at=datetime.now(UTC),
        zone=zone,
        build=BuildOptions(
            agent=f"therapy-charge-adapter {__version__}",
            billing_recipient=settings.billing_recipient,
        ),
    )
    return rulebook, options


def _progress(message: str) -> None:
    if sys.stderr.isatty():
        print(f"\r{message}\033[K", end="", file=sys.stderr, flush=True)
    else:
        print(message, file=sys.stderr, flush=True)


def _replay(args: argparse.Namespace) -> int:
    rulebook, options = _setup(args)
    summary = replay_mod.replay(args.paths, args.out, rulebook, options, progress=_progress)
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr)
    if args.json:
        print(json.dumps(summary.as_json(), indent=2))
    else:
        print(summary.table())
    for p in summary.unreadable:
        print(f"charge-adapter: InputError: {p.reason}", file=sys.stderr)
    return 4 if summary.unreadable else 0


def _explain(args: argparse.Namespace) -> int:
    rulebook, options = _setup(args)
    shown = 0
    for result, decision in replay_mod.decisions(args.paths, rulebook, options):
        if args.encounter and not any(
            e.split("/")[-1] == args.encounter.split("/")[-1]
            for e in result.parsed.facts.encounters
        ):
            continue
        if shown:
            print()
        print(decision.explain())
        shown += 1
    if shown == 0:
        print("no patient-day matched" if args.encounter else "no billable therapy found")
    return 0


def _live_setup(args: argparse.Namespace) -> tuple[Settings, Rulebook, Options]:
    settings = load_settings(
        args.config, emr_base_url=args.emr, write_base_url=args.write, store=args.store
    )
    configure_logging(settings.log_level)
    rulebook = load_rulebook(args.mappings or settings.mappings or DEFAULT_MAPPINGS_DIR)
    if settings.default_payer not in rulebook.payers:
        raise ConfigError(f"default_payer {settings.default_payer!r} is not a payer profile")
    options = Options(
        default_payer=settings.default_payer,
        evaluated_at=None,
        zone=settings.zone(),
        build=BuildOptions(
            agent=f"therapy-charge-adapter {__version__}",
            billing_recipient=settings.billing_recipient,
        ),
    )
    return settings, rulebook, options


def _service(args: argparse.Namespace) -> tuple[Settings, Service]:
    settings, rulebook, options = _live_setup(args)
    emr = settings.emr()
    store = open_store(settings.store_url(), max_attempts=settings.max_attempts)
    service = Service(
        emr, settings.target(emr), rulebook, options, store, lease=settings.lease_seconds
    )
    return settings, service


def _serve(args: argparse.Namespace) -> int:
    settings, service = _service(args)
    hook = settings.webhook
    receiver = Receiver(
        service.inbox.enqueue,
        path=hook.path,
        secret=hook.secret.get_secret_value() if hook.secret else None,
        secret_header=hook.secret_header,
        max_body=hook.max_body,
    )
    server = WebhookServer(
        receiver, args.host or hook.host, args.port if args.port is not None else hook.port,
        ops=Health(service),
    )  # fmt: skip
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    problems = [c for c in check_capabilities(service.emr.capabilities()) if not c.ok]
    for c in problems:
        print(f"charge-adapter: warning: the EMR lacks {c.what}: {c.detail}", file=sys.stderr)
    service.start(settings.workers)
    server.start()
    print(f"listening on {args.host or hook.host}:{server.port}{hook.path}", flush=True)
    while not stop.wait(settings.poll_interval):
        service.inbox.enqueue(Notification(catch_up=True, kind="sweep"), source="sweep")
    server.stop()
    service.stop()
    service.store.close()
    print("stopped", flush=True)
    return 0


def _subscribe(args: argparse.Namespace) -> int:
    settings, _, _ = _live_setup(args)
    endpoint = args.endpoint or settings.webhook.public_url
    if not endpoint:
        raise ConfigError("no endpoint: set webhook.public_url or pass --endpoint")
    emr = settings.emr()
    missing = [c for c in check_capabilities(emr.capabilities(), write=False, subscriptions=True)
               if not c.ok and c.what == "Subscription create"]  # fmt: skip
    if missing:
        raise ConfigError("the EMR's CapabilityStatement has no Subscription create: use poll")
    hook, subs = settings.webhook, settings.subscription
    header = f"{hook.secret_header}: {hook.secret.get_secret_value()}" if hook.secret else None
    wanted = subscriptions.desired(
        endpoint, kind=subs.kind, criteria=subs.criteria, content=subs.content,
        topic=subs.topic, header=header,
    )  # fmt: skip
    for action, ref in subscriptions.ensure(emr, wanted):
        print(f"{action:9} {ref}")
    return 0


def _unsubscribe(args: argparse.Namespace) -> int:
    settings, _, _ = _live_setup(args)
    for ref in subscriptions.remove(settings.emr()):
        print(f"deleted   {ref}")
    return 0


def _poll(args: argparse.Namespace) -> int:
    settings, service = _service(args)
    for c in check_capabilities(service.emr.capabilities(), write=service.target is service.emr):
        if not c.ok:
            print(f"charge-adapter: warning: the EMR lacks {c.what}: {c.detail}", file=sys.stderr)
    while True:
        found = service.inbox.catch_up()
        service.drain()
        print(
            f"{found} change(s); {service.counters.days} patient-day(s) synced, "
            f"{service.counters.written} written; inbox {_counts(service.store.counts())}",
            flush=True,
        )
        if args.once:
            return 0
        time.sleep(settings.poll_interval)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "empty"


def _work(args: argparse.Namespace) -> int:
    """A worker replica: process the shared inbox (PostgreSQL) until stopped, or until empty."""
    _, service = _service(args)
    if args.until_empty:
        service.drain(timeout=float("inf"))
    else:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: service.stopping.set())
        service.run()
    print(f"{service.counters.days} patient-day(s) synced, {service.counters.written} written; "
          f"inbox {_counts(service.store.counts())}")  # fmt: skip
    return 0


def _check_config(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    rulebook = load_rulebook(settings.mappings or DEFAULT_MAPPINGS_DIR)
    if settings.default_payer not in rulebook.payers:
        raise ConfigError(f"default_payer {settings.default_payer!r} is not a payer profile")
    print(json.dumps(masked(settings), indent=2))
    print(f"configuration OK (rulebook {rulebook.version})", file=sys.stderr)
    return 0


def _doctor(args: argparse.Namespace) -> int:
    settings, _, _ = _live_setup(args)
    results: list[tuple[bool, str]] = []

    def line(ok: bool, text: str) -> None:
        results.append((ok, text))
        print(f"{'ok  ' if ok else 'FAIL'}  {text}", flush=True)

    emr = settings.emr()
    clients = [("EMR", emr)]
    target = settings.target(emr)
    if target is not emr:
        clients.append(("write target", target))
    for name, client in clients:
        try:
            statement = client.capabilities()
            line(True, f"{name} reachable: {client.base_url} (FHIR {statement.get('fhirVersion')})")
        except AdapterError as err:
            line(False, f"{name} not reachable: {err}")
            continue
        try:
            next(iter(client.search("Procedure", {"_count": "1"})), None)
            line(True, f"{name} auth works ({settings.auth.type})")
        except AdapterError as err:
            line(False, f"{name} auth: {err}")
        for c in check_capabilities(statement, write=client is target, subscriptions=client is emr):
            line(c.ok, f"{name} {c.what}" + (f": {c.detail}" if c.detail else ""))
    try:
        store = open_store(settings.store_url())
        store.counts()
        store.close()
        line(True, "store reachable")
    except AdapterError as err:
        line(False, f"store: {err}")
    failed = sum(1 for ok, _ in results if not ok)
    print(f"{len(results) - failed} ok, {failed} failed")
    return 0 if failed == 0 else 5


def _dead_letters(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    store = open_store(args.store or settings.store_url())
    try:
        if args.action == "list":
            items = store.dead_letters()
            for dead in items:
                when = datetime.fromtimestamp(dead.received_at, UTC).isoformat(timespec="seconds")
                refs = ", ".join(f"{e['kind']}/{e['id']}" for e in dead.payload.get("events", []))
                print(f"{dead.id:>8}  {when}  {dead.source:<10} attempts {dead.attempts}  "
                      f"{refs or 'catch-up'}  {(dead.last_error or '')[:80]}")  # fmt: skip
            print(f"{len(items)} dead letter(s); inbox {_counts(store.counts())}")
            return 0
        if args.id is None:
            raise ConfigError(f"dead-letters {args.action} needs an id")
        item = store.get(args.id)
        if item is None or item.status != "dead":
            raise ConfigError(f"no dead letter {args.id}")
        if args.action == "show":
            shown = {"id": item.id, "source": item.source, "attempts": item.attempts,
                     "error": item.last_error, "payload": item.payload}  # fmt: skip
            print(json.dumps(shown, indent=2))
        elif args.action == "retry":
            store.retry(item.id)
            print(f"dead letter {item.id} queued again")
        else:
            store.discard(item.id)
            print(f"dead letter {item.id} discarded")
        return 0
    finally:
        store.close()


def _check_mappings(directory: Path) -> int:
    rulebook = load_rulebook(directory)
    ptp = sum(len(v) for v in rulebook.ptp.values())
    cms_ptp = sum(1 for v in rulebook.ptp.values() for e in v if e.from_cms_file)
    mue = sum(len(v) for v in rulebook.mue.values())
    print(f"mappings OK: {directory}")
    print(f"  rulebook version  {rulebook.version}")
    print(f"  codes             {len(rulebook.codes)} ({len(rulebook.text_matches)} text matches)")
    print(f"  payer profiles    {', '.join(sorted(rulebook.payers))}")
    print(f"  NCCI PTP edits    {ptp} ({cms_ptp} from CMS files)")
    print(f"  MUE values        {mue}")
    print(f"  unit thresholds   {len(rulebook.unit_thresholds)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "check-mappings":
            return _check_mappings(args.directory)
        if args.command == "replay":
            return _replay(args)
        if args.command == "explain":
            return _explain(args)
        commands = {"serve": _serve, "subscribe": _subscribe, "unsubscribe": _unsubscribe,
                    "poll": _poll, "work": _work, "dead-letters": _dead_letters,
                    "check-config": _check_config, "doctor": _doctor}  # fmt: skip
        if args.command in commands:
            return commands[args.command](args)
        parser.print_help()
        return 0
    except AdapterError as err:
        print(f"charge-adapter: {type(err).__name__}: {err}", file=sys.stderr)
        return err.exit_code


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
