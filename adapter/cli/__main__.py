"""``python -m adapter.cli``: the same as ``charge-adapter``."""

from adapter.cli import run

run()
