"""The billing rules core: pure functions over the frozen types in ``adapter.domain``.

Imports only ``adapter.domain`` and the standard library: no I/O, clock, environment or logging
(``tests/test_architecture.py`` checks it).
"""

from adapter.rules.evaluate import evaluate
from adapter.rules.units import allocate_ama, allocate_cms, units_for_minutes

__all__ = ["allocate_ama", "allocate_cms", "evaluate", "units_for_minutes"]
