"""The operator's commands: ``check-config``, ``doctor``, ``dead-letters``."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from adapter.cli.live import counts, live_setup
from adapter.config import load_settings, masked
from adapter.emr.client import check_capabilities
from adapter.errors import AdapterError, ConfigError
from adapter.mappings import DEFAULT_MAPPINGS_DIR, load_rulebook
from adapter.store import open_store


def check_config(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    rulebook = load_rulebook(settings.mappings or DEFAULT_MAPPINGS_DIR)
    if settings.default_payer not in rulebook.payers:
        raise ConfigError(f"default_payer {settings.default_payer!r} is not a payer profile")
    problem = settings.webhook.problem()
    if problem:
        raise ConfigError(problem)
    print(json.dumps(masked(settings), indent=2))
    print(f"configuration OK (rulebook {rulebook.version})", file=sys.stderr)
    return 0


def doctor(args: argparse.Namespace) -> int:
    settings, _, _ = live_setup(args)
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
    problem = settings.webhook.problem()
    line(problem is None, "webhook secret" + (f": {problem}" if problem else " set"))
    failed = sum(1 for ok, _ in results if not ok)
    print(f"{len(results) - failed} ok, {failed} failed")
    return 0 if failed == 0 else 5


def prune(args: argparse.Namespace) -> int:
    """Retention now: delete done inbox rows and runs older than ``--days`` (default: the
    ``retention_days`` setting)."""
    settings = load_settings(args.config)
    days = args.days if args.days is not None else settings.retention_days
    if days <= 0:
        raise ConfigError("--days must be more than 0")
    store = open_store(args.store or settings.store_url())
    try:
        deleted = store.prune(store.clock() - days * 86400)
        print(
            f"{deleted} row(s) older than {days:g} day(s) deleted; inbox {counts(store.counts())}"
        )
        return 0
    finally:
        store.close()


def dead_letters(args: argparse.Namespace) -> int:
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
            print(f"{len(items)} dead letter(s); inbox {counts(store.counts())}")
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
