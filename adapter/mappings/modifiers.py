"""``modifiers.toml``: the order modifiers go on a line, the distinct-service modifiers and how
many one line holds (``[line]``)."""

from __future__ import annotations

from collections.abc import Mapping

from adapter.domain import ModifierRules, PayerProfile
from adapter.errors import MappingError
from adapter.mappings.files import MappingsDir, parse
from adapter.mappings.rows import ModifierLineRow, ModifiersFile

NAME = "modifiers.toml"


def load_modifiers(mappings: MappingsDir, payers: Mapping[str, PayerProfile]) -> ModifierRules:
    """Validate ``modifiers.toml``; every modifier a payer profile can write must have its place
    in ``order`` (so the order of a line never depends on anything but the data)."""
    file = mappings.file(NAME)
    doc = parse(ModifiersFile, mappings.docs[NAME], file, "(file)")
    row = parse(ModifierLineRow, doc.line, file, "[line]")
    for payer in payers.values():
        missing = sorted(set(payer_modifiers(payer)) - set(row.order))
        if missing:
            raise MappingError(
                file, "[line]", f"order lacks {', '.join(missing)} (payer profile {payer.id})"
            )
    return ModifierRules(
        order=tuple(row.order),
        distinct_service=frozenset(row.distinct_service),
        max_per_line=row.max_per_line,
        source=row.rule_source("modifiers:line"),
    )


def payer_modifiers(payer: PayerProfile) -> list[str]:
    """Every modifier a payer profile can put on a line."""
    return [
        *payer.discipline_modifiers.values(),
        *payer.assistant_modifiers.values(),
        payer.distinct_modifier,
        payer.region_modifier,
        *(["KX"] if payer.kx else []),
    ]
