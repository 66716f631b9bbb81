"""The ``charge-adapter`` command line. ``main(argv) -> int`` is what tests call.

The commands live by what they need: ``offline`` (check-mappings, replay, explain), ``live``
(serve, subscribe, unsubscribe, poll, work), ``ops`` (check-config, doctor, dead-letters).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from adapter import __version__
from adapter.cli import live, offline, ops
from adapter.errors import AdapterError
from adapter.mappings import DEFAULT_MAPPINGS_DIR

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "check-mappings": lambda args: offline.check_mappings(args.directory),
    "replay": offline.replay_command,
    "explain": offline.explain,
    "serve": live.serve,
    "subscribe": live.subscribe,
    "unsubscribe": live.unsubscribe,
    "poll": live.poll,
    "backfill": live.backfill,
    "outbox": live.outbox,
    "users": live.users,
    "work": live.work,
    "check-config": ops.check_config,
    "doctor": ops.doctor,
    "dead-letters": ops.dead_letters,
    "prune": ops.prune,
}


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
    rp.add_argument(
        "--emit", default="fhir", metavar="FORMATS",
        help="what to write, comma-separated: fhir (<name>.transaction.json), hl7v2 "
        "(<name>.hl7: DFT^P03 messages, MLLP-framed), x12 (<name>.837p.x12: 837P, needs an "
        "x12-837p target in the config); default fhir",
    )  # fmt: skip
    _common(rp)
    rp.add_argument("--json", action="store_true", help="print the summary as JSON")
    rp.add_argument(
        "--workers", type=int, metavar="N",
        help="processes evaluating the days (default: one per core; the output is the same "
        "byte for byte whatever N; the FHIR output of 400+ patient-days only)",
    )  # fmt: skip
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
    bf = sub.add_parser(
        "backfill", help="keep the EMR's days before bill_from as history (nothing written)"
    )
    _live(bf)
    bf.add_argument(
        "--since", type=date.fromisoformat, required=True, metavar="DATE",
        help="the first date of service to read (e.g. a year before bill_from)",
    )  # fmt: skip
    wk = sub.add_parser("work", help="process the durable inbox (a worker replica)")
    _live(wk)
    wk.add_argument("--until-empty", action="store_true", help="exit when nothing is due")
    cc = sub.add_parser("check-config", help="validate and print the effective configuration")
    cc.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    dr = sub.add_parser("doctor", help="check the EMR connection, auth and capabilities")
    _live(dr)
    pr = sub.add_parser("prune", help="delete done inbox rows and runs older than the retention")
    pr.add_argument("--days", type=float, help="keep this many days (default: retention_days)")
    pr.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    pr.add_argument("--store", metavar="URL", help="store URL (default: from the config)")
    ob = sub.add_parser("outbox", help="the delivery targets' messages: list, show or retry")
    ob.add_argument("action", choices=["list", "show", "retry"])
    ob.add_argument("id", nargs="?", type=int)
    ob.add_argument("--target", help="list: one target's messages")
    ob.add_argument("--status", help="list: pending | acked | delivered | rejected")
    ob.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    ob.add_argument("--store", metavar="URL", help="store URL (default: from the config)")
    wu = sub.add_parser("users", help="the workbench's local users: list, add or disable")
    wu.add_argument("action", choices=["list", "add", "disable"])
    wu.add_argument("name", nargs="?")
    wu.add_argument("--role", choices=["viewer", "biller", "manager", "admin"])
    wu.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help="add: read the password from FILE (else it is asked for)",
    )
    wu.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    wu.add_argument("--store", metavar="URL", help="store URL (default: from the config)")
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
    p.add_argument(
        "--kx-opening",
        type=Path,
        metavar="CSV",
        help="opening balances of the year's KX totals (patient,year,pt_slp,ot): spend outside "
        "the input (default: config kx_opening, else each Coverage's extensions)",
    )
    p.add_argument(
        "--authorizations",
        type=Path,
        metavar="CSV",
        help="payers' authorizations (patient,number,discipline,code,start,end,visits,units,"
        "payer), besides the input's ClaimResponses (default: config authorizations)",
    )
    p.add_argument(
        "--as-of",
        metavar="INSTANT",
        help="evaluate as at this moment (ISO 8601 with offset, e.g. 2026-04-01T12:00:00Z): "
        "Claim.created and what counts as not yet ended (default: now); pin it for outputs "
        "that compare byte for byte across days",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    command = COMMANDS.get(args.command or "")
    if command is None:
        parser.print_help()
        return 0
    try:
        return command(args)
    except AdapterError as err:
        print(f"charge-adapter: {type(err).__name__}: {err}", file=sys.stderr)
        return err.exit_code


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
