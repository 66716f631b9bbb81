import pytest

from adapter.domain import Rulebook
from adapter.mappings import load_rulebook


@pytest.fixture(scope="session")
def rulebook() -> Rulebook:
    return load_rulebook()
