"""SQLite store: the embedded default (one file, WAL mode, no set-up), for one process."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from adapter.store.base import SqlStore


class SqliteStore(SqlStore):
    def __init__(self, path: Path | str, **kw: Any) -> None:
        super().__init__(**kw)
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self.db = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=30
        )
        self.lock = threading.RLock()
        self._day_locks: dict[str, threading.Lock] = {}
        with self.lock:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            for statement in self.schema():
                self.db.execute(statement.replace("DOUBLE PRECISION", "REAL"))
            for table, column, definition in self.added_columns:
                have = {str(r[1]) for r in self.db.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            return list(self.db.execute(sql, params).fetchall())

    def _atomic(self, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    self.db.execute(self._sql(sql), params)
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def _claim_sql(
        self, worker: str, limit: int, lease: float, now: float
    ) -> list[tuple[Any, ...]]:
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                rows = self.db.execute(
                    "UPDATE inbox SET status = 'processing', claimed_by = ?, lease_until = ?, "
                    "attempts = attempts + 1 WHERE id IN (SELECT id FROM inbox WHERE "
                    "(status = 'pending' AND next_at <= ?) OR (status = 'processing' AND "
                    "lease_until < ?) ORDER BY id LIMIT ?) "
                    "RETURNING id, source, payload, status, attempts, last_error, received_at",
                    (worker, now + lease, now, now, limit),
                ).fetchall()
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return sorted(rows)

    @contextmanager
    def day_lock(self, day: str) -> Iterator[None]:
        with self.lock:
            lock = self._day_locks.setdefault(day, threading.Lock())
        with lock:
            yield

    def close(self) -> None:
        with self.lock:
            self.db.close()
