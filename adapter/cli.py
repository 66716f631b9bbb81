"""The ``charge-adapter`` command line. ``main(argv) -> int`` is what tests call."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from adapter import __version__
from adapter.errors import AdapterError
from adapter.mappings import DEFAULT_MAPPINGS_DIR, load_rulebook


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
    return parser


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
        parser.print_help()
        return 0
    except AdapterError as err:
        print(f"charge-adapter: {type(err).__name__}: {err}", file=sys.stderr)
        return err.exit_code


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
