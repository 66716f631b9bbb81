"""The ``charge-adapter`` command line. ``main(argv) -> int`` is what tests call."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from adapter import __version__
from adapter.config import Settings, load_settings
from adapter.domain import Rulebook
from adapter.errors import AdapterError, ConfigError
from adapter.fhir.build import BuildOptions
from adapter.intake import replay as replay_mod
from adapter.mappings import DEFAULT_MAPPINGS_DIR, load_rulebook
from adapter.pipeline import Options


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="charge-adapter",
        description="Therapy charge capture for FHIR R4 EMRs: CPT units, modifiers and "
        "documentation findings, each explained.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
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
    return parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    p.add_argument("--payer", metavar="PROFILE", help="payer profile for every patient-day")
    p.add_argument("--mappings", type=Path, metavar="DIR", help="mappings directory")


def _setup(args: argparse.Namespace) -> tuple[Rulebook, Options]:
    settings: Settings = load_settings(args.config)
    rulebook = load_rulebook(args.mappings or settings.mappings or DEFAULT_MAPPINGS_DIR)
    for name, value in (("--payer", args.payer), ("default_payer", settings.default_payer)):
        if value is not None and value not in rulebook.payers:
            raise ConfigError(
                f"{name} {value!r} is not a payer profile ({', '.join(sorted(rulebook.payers))})"
            )
    options = Options(
        payer_override=args.payer,
        default_payer=settings.default_payer,
        evaluated_at=datetime.now(UTC),
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
        parser.print_help()
        return 0
    except AdapterError as err:
        print(f"charge-adapter: {type(err).__name__}: {err}", file=sys.stderr)
        return err.exit_code


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
