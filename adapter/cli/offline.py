"""The commands that need no server: ``check-mappings``, ``replay``, ``explain``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from adapter import __version__
from adapter import replay as replay_mod
from adapter.config import Settings, TargetSettings, load_settings, zone_of
from adapter.domain import Rulebook
from adapter.errors import ConfigError
from adapter.fhir.build import BuildOptions
from adapter.hl7v2.dft import SiteProfile
from adapter.ledger import read_authorizations, read_opening_balances
from adapter.mappings import DEFAULT_MAPPINGS_DIR, load_rulebook
from adapter.pipeline import Options
from adapter.x12.p837 import BillingProvider, Envelope


def setup(args: argparse.Namespace) -> tuple[Rulebook, Options]:
    settings: Settings = load_settings(args.config)
    rulebook = load_rulebook(args.mappings or settings.mappings or DEFAULT_MAPPINGS_DIR)
    for name, value in (("--payer", args.payer), ("default_payer", settings.default_payer)):
        if value is not None and value not in rulebook.payers:
            raise ConfigError(
                f"{name} {value!r} is not a payer profile ({', '.join(sorted(rulebook.payers))})"
            )
    zone = zone_of(args.timezone, "--timezone") if args.timezone else settings.zone()
    opening = args.kx_opening or settings.kx_opening
    grants = args.authorizations or settings.authorizations
    options = Options(
        payer_override=args.payer,
        default_payer=settings.default_payer,
        evaluated_at=_as_of(args.as_of),
        kx_opening=read_opening_balances(opening) if opening else {},
        authorizations=read_authorizations(grants, rulebook.payers) if grants else {},
        zone=zone,
        build=build_options(settings),
    )
    return rulebook, options


def build_options(settings: Settings) -> BuildOptions:
    """How the output resources are written, from the settings."""
    options = BuildOptions(
        agent=f"therapy-charge-adapter {__version__}",
        billing_recipient=settings.billing_recipient,
        billing_provider=settings.billing_provider,
        place_of_service=settings.place_of_service,
    )
    if settings.modifier_extension:
        return replace(options, modifier_extension=settings.modifier_extension)
    return options


def _as_of(text: str | None) -> datetime:
    """The ``--as-of`` instant (now when not given); an instant without an offset is refused."""
    if text is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--as-of {text!r} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        raise ConfigError(f"--as-of {text!r} has no offset (add Z or ±hh:mm)")
    return moment


def progress(message: str) -> None:
    if sys.stderr.isatty():
        print(f"\r{message}\033[K", end="", file=sys.stderr, flush=True)
    else:
        print(message, file=sys.stderr, flush=True)


def replay_command(args: argparse.Namespace) -> int:
    rulebook, options = setup(args)
    formats = formats_of(args.emit, load_settings(args.config))
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    summary = replay_mod.replay(args.paths, args.out, rulebook, options, progress=progress,
                                formats=formats, workers=workers)  # fmt: skip
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr)
    if args.json:
        print(json.dumps(summary.as_json(), indent=2))
    else:
        print(summary.table())
    for p in summary.unreadable:
        print(f"charge-adapter: InputError: {p.reason}", file=sys.stderr)
    return 4 if summary.unreadable else 0


def formats_of(emit: str, settings: Settings) -> replay_mod.Formats:
    """``--emit``: the formats replay writes, from the config's first target of each kind."""
    asked = {e.strip() for e in emit.split(",") if e.strip()}
    unknown = asked - {"fhir", "hl7v2", "x12"}
    if unknown or not asked:
        raise ConfigError(f"--emit {emit!r}: formats are fhir, hl7v2 and x12 (comma-separated)")
    profile = profile_of(settings.target_of("hl7v2-mllp")) if "hl7v2" in asked else None
    x12 = None
    if "x12" in asked:
        t = settings.target_of("x12-837p")
        if t is None or t.billing_provider is None:
            raise ConfigError("--emit x12 needs an x12-837p target in the config ([[targets]] "
                              "kind = \"x12-837p\": ids, contact, billing provider)")  # fmt: skip
        x12 = replay_mod.X12Output(envelope=envelope_of(t), provider=provider_of(t),
                                   place_of_service=settings.place_of_service or "11",
                                   payer_ids=dict(t.payer_ids))  # fmt: skip
    return replay_mod.Formats(fhir="fhir" in asked, hl7v2=profile, x12=x12)


def profile_of(t: TargetSettings | None) -> SiteProfile:
    """A DFT receiver's site profile (defaults without a target)."""
    if t is None:
        return SiteProfile()
    return SiteProfile(sending_application=t.sending_application,
                       sending_facility=t.sending_facility,
                       receiving_application=t.receiving_application,
                       receiving_facility=t.receiving_facility,
                       transaction_code=t.transaction_code, diagnoses=t.diagnoses,
                       processing_id=t.processing_id)  # fmt: skip


def envelope_of(t: TargetSettings) -> Envelope:
    return Envelope(sender_id=str(t.sender_id), receiver_id=str(t.receiver_id),
                    submitter_name=t.submitter_name, receiver_name=t.receiver_name,
                    contact_name=t.contact_name, contact_phone=str(t.contact_phone),
                    usage=t.usage)  # fmt: skip


def provider_of(t: TargetSettings) -> BillingProvider:
    p = t.billing_provider
    assert p is not None
    return BillingProvider(name=p.name, npi=p.npi, tax_id=p.tax_id, address=p.address,
                           city=p.city, state=p.state, postal_code=p.postal_code,
                           taxonomy=p.taxonomy or "")  # fmt: skip


def explain(args: argparse.Namespace) -> int:
    rulebook, options = setup(args)
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


def check_mappings(directory: Path) -> int:
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
    money = rulebook.money
    rows = sum(len(v) for v in money.chargemaster.values())
    print(f"  chargemaster      {rows} prices for {len(money.chargemaster)} codes")
    for year, fs in sorted(money.fee_schedule.items()):
        print(f"  fee schedule      {year}: {len(fs.rvus)} codes, locality {fs.gpci.mac}-"
              f"{fs.gpci.locality} ({fs.gpci.name}), CF ${fs.conversion_factor}, "
              f"{fs.setting}")  # fmt: skip
    payers = sorted({p for p, _ in money.contracts})
    print(f"  contract rates    {', '.join(payers) or 'none'}")
    return 0
