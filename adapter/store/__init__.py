"""Durable inbox, dead letters and ledger: SQLite (default) or PostgreSQL (several replicas)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adapter.errors import ConfigError
from adapter.store.base import InboxItem, LedgerEntry, OutboxRow, SqlStore
from adapter.store.postgres import PostgresStore
from adapter.store.sqlite import SqliteStore

__all__ = ["InboxItem", "LedgerEntry", "OutboxRow", "SqlStore", "open_store"]


def open_store(url: str | Path, *, pool_size: int = 8, **kw: Any) -> SqlStore:
    """``sqlite:///path/to/file.db`` (or a plain path) or ``postgresql://user@host/db`` (with
    a pool of ``pool_size`` connections)."""
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresStore(text, pool_size=pool_size, **kw)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///") :]
    elif "://" in text:
        raise ConfigError(f"store URL {text!r}: use sqlite:///PATH or postgresql://…")
    return SqliteStore(text, **kw)
