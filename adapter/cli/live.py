"""The commands beside an EMR: ``serve``, ``subscribe``, ``unsubscribe``, ``poll``, ``work``."""

from __future__ import annotations

import argparse
import getpass
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from adapter.cds.service import CdsServices
from adapter.cds.tokens import CdsClient
from adapter.cli.offline import build_options, envelope_of, profile_of, provider_of
from adapter.config import Settings, load_settings
from adapter.delivery import Hl7Target, Target, X12Target
from adapter.domain import Rulebook
from adapter.emr import subscriptions
from adapter.emr.client import check_capabilities
from adapter.errors import AdapterError, ConfigError
from adapter.intake.events import Notification
from adapter.intake.webhook import Receiver
from adapter.ledger import read_authorizations, read_opening_balances
from adapter.mappings import DEFAULT_MAPPINGS_DIR, load_rulebook
from adapter.observe import configure_logging
from adapter.pipeline import Options
from adapter.service import Health, Service
from adapter.store import open_store
from adapter.web.server import WebhookServer
from adapter.workbench.auth import Oidc, SessionRules, hash_password
from adapter.workbench.web import SIGNED_OUT, Workbench, workbench_app

log = logging.getLogger(__name__)
DEAD_LETTERS_EXIT = 6  # poll --once / work --until-empty: some items became dead letters


def live_setup(args: argparse.Namespace) -> tuple[Settings, Rulebook, Options]:
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
        kx_opening=read_opening_balances(settings.kx_opening) if settings.kx_opening else {},
        authorizations=(
            read_authorizations(settings.authorizations, rulebook.payers)
            if settings.authorizations
            else {}
        ),
        emr_authorizations=settings.emr_authorizations,
        poll_context=settings.poll_context,
        bill_from=settings.bill_from,
        # [[targets]] without a fhir one: the billing system takes only DFT or 837P
        write_fhir=not settings.targets or any(t.kind == "fhir" for t in settings.targets),
        build=build_options(settings),
    )
    return settings, rulebook, options


def service_of(
    args: argparse.Namespace, *, check: Callable[[Settings], None] = lambda s: None
) -> tuple[Settings, Service]:
    """The settings and the service they describe (``check`` runs on the settings first)."""
    settings, rulebook, options = live_setup(args)
    check(settings)
    emr = settings.emr()
    store = open_store(
        settings.store_url(),
        max_attempts=settings.max_attempts,
        pool_size=2 * settings.workers + 2,  # a day lock holds one connection while it syncs
    )
    service = Service(
        emr, settings.target(emr), rulebook, options, store, lease=settings.lease_seconds,
        max_events=settings.max_events_per_item, retention_days=settings.retention_days,
        targets=targets_of(settings, rulebook),
    )  # fmt: skip
    return settings, service


def targets_of(settings: Settings, rulebook: Rulebook) -> list[Target]:
    """The delivery targets of the config's ``[[targets]]`` (the FHIR write-back aside)."""
    descriptions = {c: e[0].descriptor for c, e in rulebook.codes.items() if e}
    out: list[Target] = []
    for t in settings.targets:
        if t.kind == "hl7v2-mllp":
            assert t.host is not None and t.port is not None
            out.append(Hl7Target(name=t.name, host=t.host, port=t.port, profile=profile_of(t),
                                 tls=t.tls, cafile=str(settings.ca_bundle)
                                 if settings.ca_bundle else None,
                                 descriptions=descriptions))  # fmt: skip
        elif t.kind == "x12-837p":
            assert t.folder is not None
            out.append(X12Target(name=t.name, folder=t.folder, envelope=envelope_of(t),
                                 provider=provider_of(t),
                                 place_of_service=settings.place_of_service or "11",
                                 payer_ids=dict(t.payer_ids)))  # fmt: skip
    return out


def cds_of(settings: Settings, service: Service) -> CdsServices | None:
    """The CDS Hooks services of ``[cds]`` (None: not configured, not served)."""
    c = settings.cds
    if c is None:
        return None
    clients = {}
    for client in c.clients:
        try:
            pem = client.public_key.read_text() if client.public_key else None
        except OSError as err:
            raise ConfigError(f"cds client {client.iss}: {client.public_key}: {err}") from None
        clients[client.iss] = CdsClient(iss=client.iss, public_key=pem,
                                        jwks_url=client.jwks_url, sub=client.sub)  # fmt: skip
    review = f"{c.base_url}/review" if settings.workbench else None  # the cards link there
    return CdsServices(service.rulebook, service.options, service.store, clients, c.base_url,
                       fhir_servers=frozenset(u.rstrip("/") for u in c.fhir_servers),
                       budget=c.budget_ms / 1000, review_url=review)  # fmt: skip


def workbench_of(settings: Settings, service: Service) -> Any:
    """The workbench's ASGI application of ``[workbench]`` (None: not configured)."""
    w = settings.workbench
    if w is None:
        return None
    oidc = None
    if w.oidc is not None:
        oidc = Oidc(issuer=w.oidc.issuer, client_id=w.oidc.client_id,
                    client_secret=w.oidc.client_secret.get_secret_value(),
                    role_claim=w.oidc.role_claim, roles=tuple(w.oidc.roles.items()))  # fmt: skip
    rules = SessionRules(secret=w.session_secret.get_secret_value(),
                         max_age=int(w.session_hours * 3600), idle=int(w.idle_minutes * 60),
                         secure=w.secure_cookie)  # fmt: skip
    return workbench_app(Workbench(
        store=service.store, session=rules, resync=service.resync, audit=service.write_audits,
        resync_later=service.resync_later,
        targets=[t.name for t in service.targets],
        modifiers=frozenset(service.rulebook.modifiers.order), oidc=oidc,
    ))  # fmt: skip


def serve(args: argparse.Namespace) -> int:
    def refuse_unauthenticated(settings: Settings) -> None:
        problem = settings.webhook.problem(args.host or settings.webhook.host)
        if problem:
            raise ConfigError(problem)

    settings, service = service_of(args, check=refuse_unauthenticated)
    hook = settings.webhook
    host = args.host or hook.host
    receiver = Receiver(
        service.inbox.enqueue,
        path=hook.path,
        secret=hook.secret.get_secret_value() if hook.secret else None,
        secret_header=hook.secret_header,
        max_body=hook.max_body,
        allow_unauthenticated=hook.allow_unauthenticated,
        metrics=service.metrics,
    )
    server = WebhookServer(
        receiver, host, args.port if args.port is not None else hook.port, ops=Health(service),
        cds=cds_of(settings, service),
        mounts=[("/review", app)] if (app := workbench_of(settings, service)) else [],
    )  # fmt: skip
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(
        target=_capabilities, args=(service, stop), name="emr-check", daemon=True
    ).start()  # the EMR may be down: deliveries are queued meanwhile
    service.start(settings.workers)
    server.start()
    print(f"listening on {host}:{server.port}{hook.path}", flush=True)
    while not stop.wait(settings.poll_interval):
        try:
            service.inbox.enqueue(Notification(catch_up=True, kind="sweep"), source="sweep")
        except Exception as err:  # the store is away: the next sweep tries again
            log.error("sweep not queued: %s", type(err).__name__)
    server.stop()
    service.stop()
    service.store.close()
    print("stopped", flush=True)
    return 0


def _capabilities(service: Service, stop: threading.Event, every: float = 30.0) -> None:
    """Check the EMR's CapabilityStatement once it answers (every ``every`` seconds until
    then), and warn about what it lacks."""
    while not stop.is_set():
        try:
            statement = service.emr.capabilities()
        except AdapterError as err:
            log.warning("the EMR does not answer (%s); asking again in %.0f s",
                        type(err).__name__, every)  # fmt: skip
            stop.wait(every)
            continue
        for c in check_capabilities(statement):
            if not c.ok:
                print(f"charge-adapter: warning: the EMR lacks {c.what}: {c.detail}",
                      file=sys.stderr)  # fmt: skip
        return


def subscribe(args: argparse.Namespace) -> int:
    settings, _, _ = live_setup(args)
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


def unsubscribe(args: argparse.Namespace) -> int:
    settings, _, _ = live_setup(args)
    for ref in subscriptions.remove(settings.emr()):
        print(f"deleted   {ref}")
    return 0


def poll(args: argparse.Namespace) -> int:
    settings, service = service_of(args)
    for c in check_capabilities(service.emr.capabilities(), write=service.target is service.emr):
        if not c.ok:
            print(f"charge-adapter: warning: the EMR lacks {c.what}: {c.detail}", file=sys.stderr)
    while True:
        found = service.inbox.catch_up()
        service.drain()
        service.deliver_all()
        print(
            f"{found} change(s); {service.counters.days} patient-day(s) synced, "
            f"{service.counters.written} written; inbox {counts(service.store.counts())}",
            flush=True,
        )
        if args.once:
            if service.counters.dead:
                print(f"charge-adapter: {service.counters.dead} item(s) became dead letters "
                      "(charge-adapter dead-letters list)", file=sys.stderr)  # fmt: skip
                return DEAD_LETTERS_EXIT
            return 0
        time.sleep(settings.poll_interval)


def backfill(args: argparse.Namespace) -> int:
    """The history before ``bill_from``: the EMR's completed procedures from ``--since`` kept
    in the ledger (the clocks' counts, the KX total), nothing written."""
    settings, service = service_of(args)
    if settings.bill_from is None:
        raise ConfigError("backfill needs bill_from in the config: the first date the adapter "
                          "bills (the history before it is only kept, never written)")  # fmt: skip
    if args.since >= settings.bill_from:
        raise ConfigError(f"--since {args.since} is not before bill_from {settings.bill_from}")
    found, kept = service.backfill(args.since, settings.bill_from)
    print(f"{found} patient-day(s) from {args.since} to {settings.bill_from}; {kept} kept as "
          "history (nothing written)")  # fmt: skip
    return 0


def users(args: argparse.Namespace) -> int:
    """``users list``, ``users add NAME --role ROLE`` (the password from ``--password-file``,
    else asked twice on the terminal), ``users disable NAME``: the workbench's local users."""
    settings = load_settings(args.config, store=args.store)
    store = open_store(settings.store_url())
    try:
        if args.action == "list":
            for name, role, disabled in store.users():
                print(f"{name:30} {role:8} {'disabled' if disabled else ''}")
            return 0
        if not args.name:
            raise ConfigError(f"users {args.action} needs a user name")
        if args.action == "disable":
            if not store.user_disable(args.name):
                raise ConfigError(f"no workbench user {args.name}")
            print(f"user {args.name} disabled")
            return 0
        if args.role is None:
            raise ConfigError("users add needs --role (viewer, biller, manager, admin)")
        if args.password_file is not None:
            password = args.password_file.read_text().rstrip("\n")
        else:
            password = getpass.getpass("password: ")
            if getpass.getpass("again: ") != password:
                raise ConfigError("the passwords differ")
        try:
            store.user_put(args.name, hash_password(password), args.role)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        store.set_value(f"{SIGNED_OUT}{args.name}", repr(time.time()))  # old sessions end
        print(f"user {args.name} ({args.role}) saved")
        return 0
    finally:
        store.close()


def outbox(args: argparse.Namespace) -> int:
    """``outbox list [TARGET]``, ``outbox show ID``, ``outbox retry ID`` (a rejected message
    queued again)."""
    settings = load_settings(args.config, store=args.store)
    store = open_store(settings.store_url())
    try:
        if args.action == "list":
            for (target, status), n in sorted(store.outbox_counts().items()):
                print(f"{target:20} {status:10} {n}")
            for r in store.outbox_rows(target=args.target, status=args.status):
                print(f"{r.id:>7}  {r.target:14} {r.day:40} #{r.seq:<3} {r.status:9} "
                      f"{r.ack or '-':3} {r.attempts:>3} {r.last_error or ''}")  # fmt: skip
            return 0
        row = store.outbox_get(args.id) if args.id is not None else None
        if row is None:
            raise ConfigError(f"no outbox message {args.id}")
        if args.action == "show":
            print(f"id {row.id}  target {row.target}  day {row.day}  seq {row.seq}  "
                  f"status {row.status}  ack {row.ack or '-'}")  # fmt: skip
            print(f"attempts {row.attempts}")
            print(f"control {row.control}  last error {row.last_error or '-'}")
            print(row.body.replace("\r", "\n"))
            return 0
        if not store.outbox_resend(row.id):
            raise ConfigError(f"outbox message {row.id} is {row.status}: only a rejected one "
                              "is sent again")  # fmt: skip
        print(f"outbox message {row.id} queued again")
        return 0
    finally:
        store.close()


def counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "empty"


def work(args: argparse.Namespace) -> int:
    """A worker replica: process the shared inbox (PostgreSQL) until stopped, or until empty."""
    _, service = service_of(args)
    if args.until_empty:
        service.drain(timeout=float("inf"))
        service.deliver_all()
    else:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: service.stopping.set())
        service.run()
    print(f"{service.counters.days} patient-day(s) synced, {service.counters.written} written; "
          f"inbox {counts(service.store.counts())}")  # fmt: skip
    return DEAD_LETTERS_EXIT if args.until_empty and service.counters.dead else 0
