"""``payers.toml``: the codes bundled for every profile by default (``[[bundled]]``) and one
profile per payer (``[[payer]]``), with its substitutions, bundled and unbundled codes and KX
thresholds."""

from __future__ import annotations

from collections.abc import Container, Mapping
from types import MappingProxyType

from adapter.domain import KxThreshold, PayerProfile, RuleSource, Severity, Substitution
from adapter.errors import MappingError
from adapter.mappings.codes import require_code
from adapter.mappings.files import MappingsDir, entries, parse
from adapter.mappings.rows import BundledRow, PayerRow, PayersFile

NAME = "payers.toml"


def load_payers(mappings: MappingsDir, codes: Container[str]) -> Mapping[str, PayerProfile]:
    """Validate ``payers.toml``: the payers by id, in file order. The default bundled codes are
    validated first, then every payer before the codes any of them names are checked, payer by
    payer. A payer may unbundle only a code bundled by default."""
    file = mappings.file(NAME)
    doc = parse(PayersFile, mappings.docs[NAME], file, "(file)")
    defaults: dict[str, RuleSource] = {}
    for label, row in entries(doc.bundled, BundledRow, file, "bundled", lambda e: e.code):
        require_code(codes, row.code, file, label)
        defaults[row.code] = row.rule_source(f"bundled:{row.code}")
    payers: dict[str, PayerProfile] = {}
    for label, p in entries(doc.payer, PayerRow, file, "payer", lambda e: e.id):
        for s in p.substitution:
            require_code(codes, s.from_, file, label)
            require_code(codes, s.to, file, label)
        for b in p.bundled:
            require_code(codes, b.code, file, label)
        for u in p.unbundled:
            if u.code not in defaults:
                raise MappingError(
                    file,
                    label,
                    f"{u.code} is not bundled by default ([[bundled]]): nothing to unbundle",
                )
        payers[p.id] = _profile(p, defaults)
    return MappingProxyType(payers)


def _profile(p: PayerRow, default_bundled: Mapping[str, RuleSource]) -> PayerProfile:
    """The frozen profile of a validated ``[[payer]]``; every rule source of its own is
    ``payer:<id>...``. Its bundled codes are the defaults (``bundled:<code>``) with the payer's
    own entries in place of a default for the same code; its unbundled codes opt out of a
    default from their own dates."""
    return PayerProfile(
        id=p.id,
        name=p.name,
        method=p.unit_method,
        pooling=p.timed_pooling,
        discipline_modifiers=MappingProxyType(dict(p.discipline_modifiers)),
        assistant_modifiers=MappingProxyType(dict(p.assistant_modifiers)),
        assistant_special_rules=p.assistant_special_rules,
        distinct_modifier=p.distinct_modifier,
        region_modifier=p.region_modifier,
        kx=p.kx,
        kx_review_amount=p.kx_review_amount,
        kx_groups=MappingProxyType(dict(p.kx_groups)),
        kx_thresholds=tuple(
            KxThreshold(
                year=t.year,
                amount=t.amount,
                source=t.rule_source(f"payer:{p.id}:kx:{t.year}"),
            )
            for t in p.kx_threshold
        ),
        minutes_without_times=Severity(p.minutes_without_times),
        substitutions=tuple(
            Substitution(
                from_code=s.from_,
                to_code=s.to,
                source=s.rule_source(f"payer:{p.id}:substitution:{s.from_}"),
            )
            for s in p.substitution
        ),
        bundled=MappingProxyType(
            {
                **default_bundled,
                **{b.code: b.rule_source(f"payer:{p.id}:bundled:{b.code}") for b in p.bundled},
            }
        ),
        unbundled=MappingProxyType(
            {u.code: u.rule_source(f"payer:{p.id}:unbundled:{u.code}") for u in p.unbundled}
        ),
        source=p.rule_source(f"payer:{p.id}"),
        authorization=p.authorization,
        authorization_required=p.authorization_required,
        benefit_year_start=_month_day(p.benefit_year_start),
    )


def _month_day(text: str) -> tuple[int, int]:
    """``MM-DD`` (validated by the row) as (month, day)."""
    month, day = (int(part) for part in text.split("-"))
    return month, day
