from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import fhir_server


@pytest.fixture(scope="session")
def fhir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fhir_server.FhirServer]:
    """A real FHIR R4 server (sekmet-fhir) on 127.0.0.1, shared by the session."""
    server = fhir_server.start(tmp_path_factory.mktemp("fhir-server"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_fhir(tmp_path: Path) -> Iterator[fhir_server.FhirServer]:
    """A FHIR server of the test's own (empty database)."""
    server = fhir_server.start(tmp_path)
    try:
        yield server
    finally:
        server.stop()
