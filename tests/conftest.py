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


PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    """A throw-away PostgreSQL database on the local server (dropped afterwards)."""
    import uuid

    import psycopg

    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as err:
        pytest.skip(f"no PostgreSQL server reachable at 127.0.0.1:5432 ({err})")
    name = f"adapter_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


#: fixtures that start a real server (the FHIR server, a PostgreSQL database)
SERVER_FIXTURES = frozenset({"fhir", "fresh_fhir", "pg_dsn"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that needs a real server is ``slow``: ``pytest -m "not slow"`` is the fast
    inner loop (the pure rules, parsing, building, replay, mappings)."""
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
