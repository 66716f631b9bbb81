"""The adapter's own failures: one exception tree, one exit code each.

Problems in *clinical data* are not exceptions: they are ``Finding`` values collected by the rules
core (see ``adapter.domain``). The exceptions below are for the program's own failures, and the CLI
turns each into a one-line message and a named exit code::

    AdapterError                      exit 1   anything not more specific
    ├── ConfigError                   exit 2   settings missing or invalid
    ├── MappingError                  exit 3   a file in mappings/ is missing, unreadable or invalid
    ├── InputError                    exit 4   an input (bundle, NDJSON, file) cannot be read at all
    └── FhirServerError               exit 5   the FHIR server answered with an error
        ├── TemporaryServerError               408/429/5xx or connection trouble: retry later
        └── FatalServerError                   anything else: retrying will not help
"""

from __future__ import annotations

from typing import Any


class AdapterError(Exception):
    """Base of every error the adapter raises on purpose."""

    exit_code = 1


class ConfigError(AdapterError):
    """The configuration is missing a value or holds an invalid one."""

    exit_code = 2


class MappingError(AdapterError):
    """A mapping file failed validation. Names the file, the entry and the reason."""

    exit_code = 3

    def __init__(self, file: str, entry: str, reason: str) -> None:
        self.file = file
        self.entry = entry
        self.reason = reason
        super().__init__(f"{file}: {entry}: {reason}")


class InputError(AdapterError):
    """An input cannot be read at all (a malformed resource inside a good input is a finding)."""

    exit_code = 4


class FhirServerError(AdapterError):
    """The FHIR server answered with an error; carries the status and OperationOutcome if any."""

    exit_code = 5

    def __init__(
        self, message: str, *, status: int | None = None, outcome: dict[str, Any] | None = None
    ) -> None:
        self.status = status
        self.outcome = outcome
        super().__init__(message)


class TemporaryServerError(FhirServerError):
    """A failure worth retrying: 408, 429, 5xx, timeouts, refused connections."""


class FatalServerError(FhirServerError):
    """A failure retrying will not fix: 4xx other than 408/429, invalid responses."""
