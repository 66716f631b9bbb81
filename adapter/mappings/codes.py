"""``codes.toml``: the billing codes (``[[code]]``) and the phrases that name them
(``[[text_match]]``). Every other file's codes must be listed here (``require_code``)."""

from __future__ import annotations

from collections.abc import Container, Mapping
from datetime import date
from types import MappingProxyType
from typing import NamedTuple

from adapter.domain import CodeEntry, RuleSource, TextMatch
from adapter.errors import MappingError
from adapter.mappings.files import MappingsDir, entries, parse
from adapter.mappings.rows import CodeRow, CodesFile, TextMatchRow

NAME = "codes.toml"


class CodeTables(NamedTuple):
    """What ``codes.toml`` contributes to the rulebook."""

    codes: Mapping[str, tuple[CodeEntry, ...]]  # a code's entries, one per effective period
    order: Mapping[str, int]  # each code's position in the file (first entry)
    text_matches: tuple[TextMatch, ...]


def load_codes(mappings: MappingsDir) -> CodeTables:
    """Validate ``codes.toml``: the codes first, then the text matches (whose codes must be
    among them)."""
    file = mappings.file(NAME)
    doc = parse(CodesFile, mappings.docs[NAME], file, "(file)")
    codes, order = _code_entries(doc, file)
    return CodeTables(
        codes=MappingProxyType({k: tuple(v) for k, v in codes.items()}),
        order=MappingProxyType(order),
        text_matches=_text_matches(doc, file, codes),
    )


def require_code(codes: Container[str], code: str, file: str, label: str) -> None:
    """Fail on entry ``label`` of ``file`` unless ``code`` is in ``codes.toml``."""
    if code not in codes:
        raise MappingError(file, label, f"code {code} is not in codes.toml")


def _code_entries(doc: CodesFile, file: str) -> tuple[dict[str, list[CodeEntry]], dict[str, int]]:
    """The ``[[code]]`` entries by code, and each code's first position. Entries of one code are
    duplicates if they start on the same day, and must not overlap in their dates."""

    def overlap_key(e: CodeRow) -> str:
        """Two entries of one code starting on the same day are duplicates."""
        return f"{e.code}@{e.effective_from}"

    codes: dict[str, list[CodeEntry]] = {}
    order: dict[str, int] = {}
    for label, c in entries(doc.code, CodeRow, file, "code", overlap_key):
        for other in codes.get(c.code, []):
            if _overlaps(other.source, c.effective_from, c.effective_to):
                raise MappingError(file, label, "effective dates overlap another entry")
        codes.setdefault(c.code, []).append(
            CodeEntry(
                code=c.code,
                descriptor=c.descriptor,
                timed=c.timed,
                kind=c.kind,
                disciplines=frozenset(c.disciplines),
                assistant_may_furnish=c.assistant_may_furnish,
                one_on_one=c.one_on_one,
                source=c.rule_source(f"codes:{c.code}"),
            )
        )
        order.setdefault(c.code, len(order))
    return codes, order


def _text_matches(doc: CodesFile, file: str, codes: Container[str]) -> tuple[TextMatch, ...]:
    """The ``[[text_match]]`` entries (one per phrase), each naming a known code."""
    text_matches = []
    for label, t in entries(doc.text_match, TextMatchRow, file, "text_match", lambda e: e.phrase):
        require_code(codes, t.code, file, label)
        text_matches.append(
            TextMatch(phrase=t.phrase, code=t.code, source=t.rule_source(f"text:{t.phrase}"))
        )
    return tuple(text_matches)


def _overlaps(p: RuleSource, start: date, end: date | None) -> bool:
    """Whether ``p``'s dates overlap ``start``..``end`` (``None``: open-ended)."""
    return (p.effective_to is None or start <= p.effective_to) and (
        end is None or p.effective_from <= end
    )
