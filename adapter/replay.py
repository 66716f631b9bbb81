"""Offline replay: FHIR bundles / NDJSON in, one transaction Bundle per input file out.

1. every input file streams into the on-disk ``Spool`` (memory stays flat);
2. the spool yields patient-days in (file, patient, date) order; each goes through
   ``pipeline.process_day``;
3. each input file that held procedures gets ``<name>.transaction.json`` in the output folder,
   written entry by entry. Output is deterministic: the same input gives byte-identical files.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import tempfile
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, tzinfo
from itertools import islice
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import IO, Any

from adapter.domain import Decision, PatientDay, Rulebook
from adapter.errors import InputError
from adapter.fhir.build import transaction
from adapter.fhir.parse import Problem
from adapter.hl7v2.dft import (
    SiteProfile,
    change,
    control_id,
    dft_message,
    header_of,
    lines_of,
)
from adapter.intake.sources import Deleted, InputFile, Item, document_items, expand, read
from adapter.intake.spool import Spool, dumps
from adapter.ledger import KxLedger, TreatmentLedger, day_amounts, day_treatments, day_units
from adapter.pipeline import DayResult, Options, process_day
from adapter.x12.p837 import (
    BillingProvider,
    ClaimControl,
    Envelope,
    Unwritable,
    interchange,
)
from adapter.x12.p837 import transaction as claim_transaction

Progress = Callable[[str], None]


@dataclass(slots=True)
class FileReport:
    name: str
    resources: int = 0
    output: str | None = None
    patient_days: int = 0


@dataclass(frozen=True, slots=True)
class DayDigest:
    """What the summary counts of one day (small and picklable: a worker process sends it)."""

    not_therapy: int
    problems: tuple[Problem, ...]
    payer: str | None  # None: nothing on the day was therapy
    lines: int = 0
    units: int = 0
    findings: tuple[str, ...] = ()
    kinds: Mapping[str, int] = field(default_factory=dict)


def digest(result: DayResult) -> DayDigest:
    d = result.decision
    base = DayDigest(len(result.parsed.not_therapy), tuple(result.parsed.problems), None)
    if d is None:
        return base
    kinds = Counter(e["resource"]["resourceType"] for e in result.entries)
    return replace(base, payer=d.payer, lines=len(d.lines),
                   units=sum(ln.units for ln in d.lines),
                   findings=tuple(f.code.value for f in d.findings), kinds=dict(kinds))  # fmt: skip


@dataclass(slots=True)
class Summary:
    """What a replay did, for people (``table``) and machines (``as_json``)."""

    rulebook_version: str
    files: list[FileReport] = field(default_factory=list)
    unreadable: list[Problem] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0
    superseded: int = 0  # older copies of a resource replaced by a newer version
    deleted: int = 0  # resources a history Bundle's DELETE entry removed
    ignored: int = 0  # resources of types replay does not use
    procedures: Counter[str] = field(default_factory=Counter)  # by status
    not_therapy: int = 0
    patient_days: int = 0
    lines: int = 0
    units: int = 0
    charge_items: int = 0
    claims: int = 0
    communications: int = 0
    findings: Counter[str] = field(default_factory=Counter)
    payers: Counter[str] = field(default_factory=Counter)
    hl7_messages: int = 0
    x12_claims: int = 0
    workers: int = 1  # the processes that evaluated the days
    worker_peak_rss_mb: float | None = None  # the largest worker's (None: one process)
    x12_unwritable: Counter[str] = field(default_factory=Counter)  # days no 837P carries, why

    def add(self, result: DayResult) -> None:
        self.add_digest(digest(result))

    def add_digest(self, d: DayDigest) -> None:
        self.not_therapy += d.not_therapy
        for p in d.problems:
            self.note(p)
        if d.payer is None:
            return
        self.patient_days += 1
        self.payers[d.payer] += 1
        self.lines += d.lines
        self.units += d.units
        self.findings.update(d.findings)
        self.charge_items += d.kinds.get("ChargeItem", 0)
        self.claims += d.kinds.get("Claim", 0)
        self.communications += d.kinds.get("Communication", 0)

    def note(self, problem: Problem, keep: int = 200) -> None:
        self.problem_count += 1
        if len(self.problems) < keep:
            self.problems.append(problem)

    def as_json(self) -> dict[str, Any]:
        return {
            "rulebook_version": self.rulebook_version,
            "files": [
                {
                    "name": f.name,
                    "resources": f.resources,
                    "patient_days": f.patient_days,
                    "output": f.output,
                }
                for f in self.files
            ],
            "unreadable": [{"file": p.where, "reason": p.reason} for p in self.unreadable],
            "procedures": dict(sorted(self.procedures.items())),
            "not_therapy": self.not_therapy,
            "superseded_versions": self.superseded,
            "deleted": self.deleted,
            "ignored_resources": self.ignored,
            "patient_days": self.patient_days,
            "payers": dict(sorted(self.payers.items())),
            "lines": self.lines,
            "units": self.units,
            "charge_items": self.charge_items,
            "claims": self.claims,
            "communications": self.communications,
            "hl7_messages": self.hl7_messages,
            "x12_claims": self.x12_claims,
            "x12_unwritable": dict(sorted(self.x12_unwritable.items())),
            "findings": dict(sorted(self.findings.items())),
            "problem_count": self.problem_count,
            "workers": self.workers,
            "worker_peak_rss_mb": self.worker_peak_rss_mb,
            "problems": [{"where": p.where, "reason": p.reason} for p in self.problems],
        }

    def table(self) -> str:
        rows = [
            ("rulebook", self.rulebook_version),
            ("input files", f"{len(self.files)} read, {len(self.unreadable)} unreadable"),
            ("procedures", ", ".join(f"{k} {v}" for k, v in sorted(self.procedures.items()))
             or "none"),
            ("not therapy", str(self.not_therapy)),
            ("patient-days", f"{self.patient_days} ("
             + ", ".join(f"{k} {v}" for k, v in sorted(self.payers.items())) + ")"),
            ("lines / units", f"{self.lines} / {self.units}"),
            ("written", f"{self.charge_items} ChargeItem, {self.claims} Claim, "
             f"{self.communications} Communication"),
            ("input problems", str(self.problem_count)),
            *([("HL7 v2 / 837P", f"{self.hl7_messages} DFT^P03, {self.x12_claims} claims"
                + "".join(f"; not claimed ({why}): {n}"
                          for why, n in sorted(self.x12_unwritable.items())))]
              if self.hl7_messages or self.x12_claims or self.x12_unwritable else []),
        ]  # fmt: skip
        width = max(len(k) for k, _ in rows)
        out = [f"{k.ljust(width)}  {v}" for k, v in rows]
        if self.findings:
            out.append("")
            fw = max(len(k) for k in self.findings)
            out.append("findings".ljust(fw + 2) + "  count")
            out += [f"  {k.ljust(fw)}  {v:>5}" for k, v in sorted(self.findings.items())]
        if self.problems:
            out.append("")
            out.append(f"input problems (first {len(self.problems)} of {self.problem_count}):")
            out += [f"  {p.where}: {p.reason}" for p in self.problems[:20]]
        if self.unreadable:
            out.append("")
            out.append("unreadable inputs:")
            out += [f"  {p.where}: {p.reason}" for p in self.unreadable]
        outputs = [f for f in self.files if f.output]
        if len(outputs) > 10:
            root = os.path.commonpath([str(Path(f.output).parent) for f in outputs if f.output])
            out.append("")
            out.append(f"outputs: {len(outputs)} transaction bundles under {root}/")
        elif outputs:
            out.append("")
            out.append("outputs:")
            out += [f"  {f.output}  ({f.patient_days} patient-days)" for f in outputs]
        return "\n".join(out)


class _BundleWriter:
    """Writes one transaction Bundle entry by entry (constant memory, deterministic bytes)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fh: IO[str] = path.open("w", encoding="utf-8")
        self.fh.write('{\n "resourceType": "Bundle",\n "type": "transaction",\n "entry": [')
        self.count = 0

    def write(self, entry: dict[str, Any]) -> None:
        self.write_text(entry_text(entry))

    def write_text(self, text: str) -> None:
        """An entry already serialised by ``entry_text`` (a worker process's)."""
        self.fh.write(("," if self.count else "") + "\n  " + text)
        self.count += 1

    def close(self) -> None:
        self.fh.write(("\n " if self.count else "") + "]\n}\n")
        self.fh.close()


def entry_text(entry: dict[str, Any]) -> str:
    """An entry as the output Bundle holds it (the same bytes whichever process made it)."""
    return dumps(entry)


def _output_name(name: str) -> str:
    for suffix in (".ndjson.gz", ".jsonl.gz", ".ndjson", ".jsonl", ".json"):
        if name.endswith(suffix):
            return name[: -len(suffix)] + ".transaction.json"
    return name + ".transaction.json"


def _spool_items(
    items: Iterable[Item | Deleted | Problem],
    spool: Spool,
    summary: Summary,
    index: int,
    progress: Progress | None = None,
) -> None:
    """Spool one input's resources (as input ``index``); problems go to the summary."""
    report = summary.files[index]
    for n, item in enumerate(items, start=1):
        if isinstance(item, Problem):
            summary.note(item)
            continue
        if isinstance(item, Deleted):
            spool.delete(item.kind, item.id, item.version)
            continue
        spool.add(item.resource, file=index, where=item.where, full_url=item.full_url)
        report.resources += 1
        if progress and n % 50_000 == 0:
            progress(f"reading {report.name}: {n} resources")


def _finish(spool: Spool, summary: Summary) -> None:
    spool.finish()
    for p in spool.problems:
        summary.note(p)
    summary.problem_count += spool.problem_count - len(spool.problems)
    summary.procedures.update(spool.status_counts())
    summary.superseded += spool.stats.superseded
    summary.deleted += spool.deleted_count()
    summary.ignored += spool.stats.ignored


def ingest(
    files: Sequence[InputFile], spool: Spool, summary: Summary, progress: Progress | None
) -> None:
    for index, file in enumerate(files):
        summary.files.append(FileReport(name=file.name))
        try:
            _spool_items(read(file), spool, summary, index, progress)
        except InputError as err:
            summary.unreadable.append(Problem(file.name, str(err)))
    _finish(spool, summary)


@contextmanager
def _temporary_spool(zone: tzinfo | None) -> Iterator[Spool]:
    with tempfile.TemporaryDirectory(prefix="charge-adapter-spool-") as tmp:
        spool = Spool(Path(tmp) / "spool.sqlite", zone=zone)
        try:
            yield spool
        finally:
            spool.close()


def days(spool: Spool, rulebook: Rulebook, options: Options) -> Iterator[tuple[int, DayResult]]:
    """Evaluate every patient-day in the spool: (input file index, result). Each patient's days
    come in date order, each given the allowed amounts of the earlier days of its year (the
    KX running total, from a ledger of this replay's own lines)."""
    return _evaluate(spool, rulebook, options, spool.days())


def _evaluate(
    spool: Spool, rulebook: Rulebook, options: Options, listing: Iterable[tuple[int, str, str]]
) -> Iterator[tuple[int, DayResult]]:
    """The days of ``listing`` (whole patients, each in date order), with their ledgers."""
    ledger = KxLedger()
    treatments = TreatmentLedger()
    for file, patient, dos in listing:
        spool.clear_cache()
        procs = spool.procedures_of(patient, dos)
        on = date.fromisoformat(dos)
        day_options = replace(options, kx_prior=ledger.prior(patient, on),
                              history=treatments.history(patient, on))  # fmt: skip
        result = process_day(
            procs, spool, rulebook, day=PatientDay.of(patient, dos), options=day_options
        )
        if result.decision is not None:
            ledger.record(patient, on, day_amounts(result.decision, rulebook))
            treatments.record(patient, on, *day_treatments(result.decision, rulebook),
                              units=day_units(result.decision))  # fmt: skip
        yield file, result


#: fewer patient-days than this replay in one process (starting workers costs more)
PARALLEL_FROM = 400
#: about this many patient-days go to a worker at a time (whole patients)
TASK_DAYS = 64
#: tasks handed out per worker ahead of the one the parent writes (bounds the parent's memory)
IN_FLIGHT = 3
#: a worker process's spool, rulebook and options (set once by the pool's initializer)
_WORKER: dict[str, Any] = {}
#: one day's output from a worker: (input file, its entries' text, its digest)
DayOut = tuple[int, list[str], DayDigest]


def _init_worker(path: str, zone: tzinfo | None, rulebook: Rulebook, options: Options) -> None:
    _WORKER.update(spool=Spool(path, zone=zone, create=False), rulebook=rulebook,
                   options=options)  # fmt: skip


def _work(task: list[tuple[int, str, str]]) -> list[DayOut]:
    """A batch of whole patients' days, evaluated in a worker process."""
    spool, rulebook, options = _WORKER["spool"], _WORKER["rulebook"], _WORKER["options"]
    return [(file, [entry_text(e) for e in result.entries], digest(result))
            for file, result in _evaluate(spool, rulebook, options, task)]  # fmt: skip


def _tasks(path: str, zone: tzinfo | None) -> Iterator[list[tuple[int, str, str]]]:
    """The spool's days in batches of whole patients (read on a connection of its own)."""
    spool = Spool(path, zone=zone, create=False)
    try:
        batch: list[tuple[int, str, str]] = []
        for day in spool.days():
            if len(batch) >= TASK_DAYS and batch[-1][1] != day[1]:
                yield batch
                batch = []
            batch.append(day)
        if batch:
            yield batch
    finally:
        spool.close()


def _in_parallel(
    spool: Spool, rulebook: Rulebook, options: Options, workers: int
) -> Iterator[DayOut]:
    """Every day of the spool, evaluated by ``workers`` processes (forked: they share the
    rulebook), in the spool's order: the same output, byte for byte, as one process."""
    ctx = multiprocessing.get_context("fork")
    args = (spool.path, options.zone, rulebook, options)
    with ctx.Pool(workers, initializer=_init_worker, initargs=args) as pool:
        # at most IN_FLIGHT tasks per worker handed out, taken back in order: Pool.imap reads
        # every task at once and keeps every answer that comes before the one awaited, so the
        # parent grew with the input when it wrote slower than the workers evaluated (303 MB
        # at 1M procedures)
        tasks = _tasks(spool.path, options.zone)
        pending: deque[AsyncResult[list[DayOut]]] = deque(
            pool.apply_async(_work, (task,)) for task in islice(tasks, IN_FLIGHT * workers)
        )
        while pending:
            batch = pending.popleft().get()
            task = next(tasks, None)
            if task is not None:
                pending.append(pool.apply_async(_work, (task,)))
            yield from batch
        pool.close()
        pool.join()


def _parallel_workers(workers: int, spool: Spool, formats: Formats, plain: bool) -> int:
    """How many worker processes a replay uses (1: this one): several only for the FHIR
    output alone (the other formats keep state across days), with no per-day callback,
    where processes fork, and for enough days."""
    if workers <= 1 or not plain or formats.hl7v2 or formats.x12 is not None:
        return 1
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return workers if spool.day_count() >= PARALLEL_FROM else 1


def _stream(
    spool: Spool,
    rulebook: Rulebook,
    options: Options,
    formats: Formats,
    workers: int,
    *,
    plain: bool,
    summary: Summary,
) -> Iterator[tuple[int, list[str], DayDigest, DayResult | None]]:
    """Each day's (input file, entries' text, digest, result: None from a worker process)."""
    n = _parallel_workers(workers, spool, formats, plain=plain)
    if n > 1:
        for f, texts, d in _in_parallel(spool, rulebook, options, n):
            yield f, texts, d, None
        summary.workers = n
        # the largest worker's peak (they are this process's children, waited for)
        summary.worker_peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        return
    for f, r in days(spool, rulebook, options):
        yield f, [entry_text(e) for e in r.entries] if formats.fhir else [], digest(r), r


#: how an MLLP peer receives each message: a vertical tab before, FS CR after
MLLP_START, MLLP_END = "\x0b", "\x1c\r"


@dataclass(frozen=True, slots=True)
class X12Output:
    """How replay writes 837P files (the first ``x12-837p`` target's settings)."""

    envelope: Envelope
    provider: BillingProvider
    place_of_service: str = "11"
    payer_ids: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Formats:
    """What replay writes beside (or instead of) the FHIR transaction bundles."""

    fhir: bool = True
    hl7v2: SiteProfile | None = None  # <name>.hl7: DFT^P03 messages, MLLP-framed
    x12: X12Output | None = None  # <name>.837p.x12: one interchange, a claim per day


class _OtherFormats:
    """One input file's DFT messages and 837P claims, written when its days are done
    (deterministic: the times come from ``--as-of``, else from the input's own stamps)."""

    def __init__(self, formats: Formats, summary: Summary, evaluated_at: datetime | None):
        self.formats, self.summary, self.evaluated_at = formats, summary, evaluated_at
        self.messages: list[str] = []
        self.claims: list[list[str]] = []
        self.latest: datetime | None = None

    def day(self, result: DayResult, descriptions: Mapping[str, str]) -> None:
        d, parties, facts = result.decision, result.parties, result.parsed.facts
        if d is None or parties is None:
            return
        at = self.evaluated_at or _instant(facts.recorded)
        self.latest = max(self.latest or at, at)
        if self.formats.hl7v2 is not None and d.lines:
            delta = change((), lines_of(d, facts, parties, descriptions))
            message = dft_message(
                header=header_of(facts, parties), delta=delta, at=at,
                profile=self.formats.hl7v2, message_id=control_id("replay", facts.day.key, 1),
            )  # fmt: skip
            self.messages.append(MLLP_START + message + MLLP_END)
            self.summary.hl7_messages += 1
        x12 = self.formats.x12
        if x12 is not None:
            try:
                self.claims.append(claim_transaction(
                    d, facts, parties, envelope=x12.envelope, provider=x12.provider,
                    control=ClaimControl(control_number=1, at=at),
                    place_of_service=facts.place_of_service or x12.place_of_service,
                    payer_id=x12.payer_ids.get(d.payer, ""),
                ))  # fmt: skip
                self.summary.x12_claims += 1
            except Unwritable as why:
                self.summary.x12_unwritable[str(why)] += 1

    def write(self, out: Path, stem: str) -> None:
        if self.formats.hl7v2 is not None:
            (out / f"{stem}.hl7").write_bytes("".join(self.messages).encode())
        x12 = self.formats.x12
        if x12 is not None and self.claims:
            at = self.latest or datetime(2000, 1, 1, tzinfo=UTC)
            text = interchange(self.claims, envelope=x12.envelope, control_number=1, at=at)
            (out / f"{stem}.837p.x12").write_bytes(text.encode())
        self.messages, self.claims, self.latest = [], [], None


def _instant(text: str) -> datetime:
    """A FHIR instant as an aware datetime (the input's ``recorded``)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime(2000, 1, 1, tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class _NoBundle(_BundleWriter):
    """The FHIR bundles, when not asked for: nothing written."""

    def __init__(self) -> None:
        self.count = 0

    def write(self, entry: dict[str, Any]) -> None:
        self.count += 1

    def close(self) -> None:
        return None


@dataclass
class _Outputs:
    """The output files of one replay, per input file."""

    files: Sequence[InputFile]
    out: Path
    summary: Summary
    formats: Formats
    evaluated_at: datetime | None
    others: _OtherFormats = field(init=False)

    def __post_init__(self) -> None:
        self.others = _OtherFormats(self.formats, self.summary, self.evaluated_at)

    def open(self, index: int) -> _BundleWriter:
        name = _output_name(self.files[index].name)
        self.out.mkdir(parents=True, exist_ok=True)
        if not self.formats.fhir:
            return _NoBundle()
        self.summary.files[index].output = str(self.out / name)
        return _BundleWriter(self.out / name)

    def close(self, index: int, writer: _BundleWriter) -> None:
        writer.close()
        stem = _output_name(self.files[index].name).removesuffix(".transaction.json")
        self.others.write(self.out, stem)


def replay(
    paths: Sequence[Path],
    out: Path,
    rulebook: Rulebook,
    options: Options,
    *,
    progress: Progress | None = None,
    on_day: Callable[[DayResult], None] | None = None,
    formats: Formats | None = None,
    workers: int = 1,
) -> Summary:
    """Replay ``paths`` into transaction bundles under ``out`` (and, with ``formats``, DFT
    messages and 837P files beside them); return the summary. ``workers`` > 1: the days are
    evaluated by that many processes (the FHIR output alone, enough days), with the same
    output byte for byte."""
    files = expand(paths)
    summary = Summary(rulebook_version=rulebook.version)
    outputs = _Outputs(files, out, summary, formats or Formats(), options.evaluated_at)
    descriptions = {c: e[0].descriptor for c, e in rulebook.codes.items() if e}
    open_output, close_output, others = outputs.open, outputs.close, outputs.others

    with _temporary_spool(options.zone) as spool:
        ingest(files, spool, summary, progress)
        current: tuple[int, _BundleWriter] | None = None
        stream = _stream(spool, rulebook, options, formats or Formats(), workers,
                         plain=on_day is None, summary=summary)  # fmt: skip
        for index, texts, d, result in stream:
            if current is None or current[0] != index:
                if current is not None:
                    close_output(*current)
                current = (index, open_output(index))
            for text in texts:
                current[1].write_text(text)
            if result is not None:
                others.day(result, descriptions)
            summary.add_digest(d)
            if d.payer is not None:
                summary.files[index].patient_days += 1
            if on_day is not None and result is not None:
                on_day(result)
            if progress and d.payer is not None and summary.patient_days % 5_000 == 0:
                progress(f"{summary.patient_days} patient-days")
        if current is not None:
            close_output(*current)
        for index in spool.procedure_files():
            if summary.files[index].output is None and outputs.formats.fhir:  # none billable
                open_output(index).close()
    return summary


def decisions(
    paths: Sequence[Path], rulebook: Rulebook, options: Options
) -> Iterator[tuple[DayResult, Decision]]:
    """Evaluate without writing anything (for ``explain``)."""
    files = expand(paths)
    summary = Summary(rulebook_version=rulebook.version)
    with _temporary_spool(options.zone) as spool:
        ingest(files, spool, summary, None)
        if summary.unreadable:
            raise InputError("; ".join(f"{p.where}: {p.reason}" for p in summary.unreadable))
        for _, result in days(spool, rulebook, options):
            if result.decision is not None:
                yield result, result.decision


def evaluate_bundle(
    bundle: dict[str, Any], rulebook: Rulebook, options: Options | None = None
) -> tuple[dict[str, Any], list[Decision], Summary]:
    """Evaluate one FHIR Bundle in memory: (output transaction Bundle, decisions, summary).

    Raises ``InputError`` when the bundle itself cannot be read; malformed entries are skipped
    and listed in the summary's problems.
    """
    options = options or Options()
    summary = Summary(rulebook_version=rulebook.version)
    summary.files.append(FileReport(name="bundle"))
    spool = Spool(":memory:", zone=options.zone)
    try:
        _spool_items(document_items(bundle, "bundle"), spool, summary, 0)
        _finish(spool, summary)
        entries: list[dict[str, Any]] = []
        found: list[Decision] = []
        for _, result in days(spool, rulebook, options):
            summary.add(result)
            entries += result.entries
            if result.decision is not None:
                found.append(result.decision)
        summary.files[0].patient_days = len(found)
        return transaction(entries), found, summary
    finally:
        spool.close()
