"""The replay benchmark's limit, in a process that imports orjson alone (its start-up is the
interpreter's, not the adapter's or the benchmark's):

    python bench/baseline.py INPUTS OUTPUTS SCRATCH

prints ``{"parsed": ..., "dumped": ..., "seconds": ...}`` (see ``bench/README.md``)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import orjson


def baseline(inputs: Path, outputs: Path, scratch: Path) -> dict[str, int]:
    """The floor a replay cannot beat: parse every input line / bundle with orjson, and load and
    re-dump every entry of the replay's output bundles with orjson (written to ``scratch``)."""
    parsed = dumped = 0
    for path in sorted(p for p in inputs.rglob("*") if p.is_file()):
        if path.name.endswith((".ndjson", ".jsonl")):
            with path.open("rb") as fh:
                for line in fh:
                    if line.strip():
                        orjson.loads(line)
                        parsed += 1
        elif path.name.endswith(".json"):
            orjson.loads(path.read_bytes())
            parsed += 1
    scratch.mkdir(parents=True, exist_ok=True)
    for path in sorted(outputs.glob("*.transaction.json")):
        # the replay writes one entry per line: parse and re-dump each (flat memory at 1M)
        with path.open("rb") as fh, (scratch / path.name).open("wb") as sink:
            sink.write(b'{"resourceType":"Bundle","type":"transaction","entry":[')
            first = True
            for line in fh:
                body = line.strip().rstrip(b",")
                if body.startswith(b'{"'):
                    sink.write((b"" if first else b",") + orjson.dumps(orjson.loads(body)))
                    first = False
                    dumped += 1
            sink.write(b"]}")
    return {"parsed": parsed, "dumped": dumped}


def main(argv: list[str]) -> int:
    inputs, outputs, scratch = (Path(a) for a in argv)
    started = time.perf_counter()
    counts = baseline(inputs, outputs, scratch)
    sys.stdout.write(orjson.dumps({**counts, "seconds": time.perf_counter() - started}).decode())
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
