"""The code an intervention bills under: catalog lookup, payer substitution, payer bundling.

Also what a code is: an evaluation (for the evaluation limits), a group session (one-on-one codes
cannot bill it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from adapter.domain import (
    CodeEntry,
    CodeKind,
    CodeSource,
    Finding,
    FindingCode,
    Intervention,
    NoteRules,
    PayerProfile,
    Rulebook,
)
from adapter.rules.documentation import mentions
from adapter.rules.findings import ERR, INFO, WARN, finding


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeStep:
    """The code (after substitution) and its entry; ``entry`` None: the code bills nothing."""

    code: str
    entry: CodeEntry | None  # None: not a therapy code in effect, or bundled for the payer
    findings: tuple[Finding, ...]
    rule_refs: tuple[str, ...]


def resolve_code(iv: Intervention, on: date, payer: PayerProfile, rulebook: Rulebook) -> CodeStep:
    """Look the code up in the catalog, apply the payer's substitution, then its bundling."""
    ids = (iv.id,)
    if iv.code_source is CodeSource.UNMAPPED:
        unmapped = finding(
            FindingCode.CODE_UNMAPPED,
            ERR,
            f"therapy documented as {iv.code}, which no mapping translates to CPT/HCPCS: add a "
            "CPT coding or map the code in a ConceptMap; not billed",
            ids,
        )
        return CodeStep(code=iv.code, entry=None, findings=(unmapped,), rule_refs=())
    entry = rulebook.code(iv.code, on)
    if entry is None:
        unknown = finding(
            FindingCode.UNKNOWN_CODE,
            ERR,
            f"code {iv.code} is not a therapy code in effect on {on}",
            ids,
        )
        return CodeStep(code=iv.code, entry=None, findings=(unknown,), rule_refs=())
    out = from_text(iv)
    # the catalog entry, and the mapping entry that translated the documented code to it
    refs = [entry.source.ref, *([iv.code_ref] if iv.code_ref else [])]
    code, entry, sub_findings, sub_refs = substitute(iv.code, entry, on, payer, rulebook, ids=ids)
    out += sub_findings
    refs += sub_refs
    refs += unbundled_refs(code, on, payer)
    bundled = bundling(code, on, payer, ids)
    if bundled is not None:
        return CodeStep(code=code, entry=None, findings=(*out, bundled), rule_refs=tuple(refs))
    return CodeStep(code=code, entry=entry, findings=tuple(out), rule_refs=tuple(refs))


def from_text(iv: Intervention) -> list[Finding]:
    """A code suggested from the procedure's text, or by a looser ConceptMap target (a SNOMED CT
    procedure, say), must be confirmed by a person."""
    if iv.code_source is CodeSource.TEXT:
        why = "from the procedure's text"
    elif iv.code_source is CodeSource.SUGGESTED:
        why = f"by a mapping that is not one-to-one ({iv.code_ref or 'a ConceptMap'})"
    else:
        return []
    return [
        finding(
            FindingCode.CODE_FROM_TEXT,
            WARN,
            f"code {iv.code} was suggested {why}; a person must confirm it",
            (iv.id,),
        )
    ]


def substitute(
    code: str,
    entry: CodeEntry,
    on: date,
    payer: PayerProfile,
    rulebook: Rulebook,
    *,
    ids: tuple[str, ...],
) -> tuple[str, CodeEntry, list[Finding], list[str]]:
    """The payer's first substitution in effect for the code, if its target is in the catalog.

    E.g. Medicare does not accept 97014 and takes G0283 (MCPM Pub. 100-04 Ch. 5 §20.2).
    """
    sub = next(
        (s for s in payer.substitutions if s.from_code == code and s.source.in_effect(on)), None
    )
    if sub is None:
        return code, entry, [], []
    new_entry = rulebook.code(sub.to_code, on)
    if new_entry is None:
        return code, entry, [], []
    note = finding(
        FindingCode.CODE_SUBSTITUTED,
        INFO,
        f"{payer.name} does not accept {code}: reported as {sub.to_code}",
        ids,
        sub.to_code,
    )
    return sub.to_code, new_entry, [note], [sub.source.ref, new_entry.source.ref]


def bundling(code: str, on: date, payer: PayerProfile, ids: tuple[str, ...]) -> Finding | None:
    """A code the payer bundles is never paid separately: documented only. 97010 is bundled for
    every payer profile by default (domain.md §1, MED; for Medicare MCPM Pub. 100-04 Ch. 5 §20.2,
    HIGH) unless the profile unbundles it on that date."""
    bundled = payer.bundled.get(code)
    if bundled is None or not bundled.in_effect(on) or unbundled_refs(code, on, payer):
        return None
    return finding(
        FindingCode.CODE_BUNDLED,
        INFO,
        f"{code} is bundled for {payer.name} and never paid separately: documented only",
        ids,
        code,
    )


def unbundled_refs(code: str, on: date, payer: PayerProfile) -> list[str]:
    """The payer's opt-out from a default bundling in effect for the code, if any: the line
    names it, so the explanation says why a code bundled by default bills."""
    unbundled = payer.unbundled.get(code)
    return [unbundled.ref] if unbundled is not None and unbundled.in_effect(on) else []


def is_evaluation(entry: CodeEntry) -> bool:
    """An evaluation or re-evaluation code (subject to the daily evaluation limits)."""
    return entry.kind in (CodeKind.EVALUATION, CodeKind.REEVALUATION)


def is_group(iv: Intervention, notes: NoteRules) -> bool:
    """Delivered in a group: flagged so, or the note says so (the rulebook's group terms)."""
    return iv.group or mentions(iv.note, notes.group_terms)
