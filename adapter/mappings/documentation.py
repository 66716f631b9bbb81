"""``documentation.toml``: the heuristics a treatment note is checked with (``[notes]``)."""

from __future__ import annotations

from adapter.domain import NoteRules
from adapter.mappings.files import MappingsDir, parse
from adapter.mappings.rows import DocumentationFile, NotesRow

NAME = "documentation.toml"


def load_documentation(mappings: MappingsDir) -> NoteRules:
    """Validate ``documentation.toml``; the term lists are matched in lower case."""
    file = mappings.file(NAME)
    doc = parse(DocumentationFile, mappings.docs[NAME], file, "(file)")
    nr = parse(NotesRow, doc.notes, file, "[notes]")
    return NoteRules(
        min_words=nr.min_words,
        technique_terms=tuple(t.lower() for t in nr.technique_terms),
        response_terms=tuple(t.lower() for t in nr.response_terms),
        justification_terms=tuple(t.lower() for t in nr.justification_terms),
        group_terms=tuple(t.lower() for t in nr.group_terms),
        source=nr.rule_source("documentation:notes"),
    )
