"""JSON text of resources, one way for the whole adapter: orjson (several times the stdlib's
speed), the stdlib for what orjson refuses (an integer beyond 64 bits, which FHIR does not
allow; read back by orjson as a float)."""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON of ``value``."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
