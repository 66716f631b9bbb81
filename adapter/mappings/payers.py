"""``payers.toml``: one profile per payer (``[[payer]]``), with its substitutions, bundled codes
and KX thresholds."""

from __future__ import annotations

from collections.abc import Container, Mapping
from types import MappingProxyType

from adapter.domain import KxThreshold, PayerProfile, Severity, Substitution
from adapter.mappings.codes import require_code
from adapter.mappings.files import MappingsDir, entries, parse
from adapter.mappings.rows import PayerRow, PayersFile

NAME = "payers.toml"


def load_payers(mappings: MappingsDir, codes: Container[str]) -> Mapping[str, PayerProfile]:
    """Validate ``payers.toml``: the payers by id, in file order. Every payer is validated before
    the codes any of them names are checked, payer by payer."""
    file = mappings.file(NAME)
    doc = parse(PayersFile, mappings.docs[NAME], file, "(file)")
    payers: dict[str, PayerProfile] = {}
    for label, p in entries(doc.payer, PayerRow, file, "payer", lambda e: e.id):
        for s in p.substitution:
            require_code(codes, s.from_, file, label)
            require_code(codes, s.to, file, label)
        for b in p.bundled:
            require_code(codes, b.code, file, label)
        payers[p.id] = _profile(p)
    return MappingProxyType(payers)


def _profile(p: PayerRow) -> PayerProfile:
    """The frozen profile of a validated ``[[payer]]``; every rule source is ``payer:<id>...``."""
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
            {b.code: b.rule_source(f"payer:{p.id}:bundled:{b.code}") for b in p.bundled}
        ),
        source=p.rule_source(f"payer:{p.id}"),
    )
