"""PostgreSQL store: for several replicas behind a load balancer.

Workers claim inbox rows with ``FOR UPDATE SKIP LOCKED``, so N replicas share the load without
processing a row twice; a patient-day is processed under a PostgreSQL advisory lock, so two
replicas never compute the same day at the same time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from adapter.errors import ConfigError
from adapter.store.base import SqlStore, StoreBusyError


class PostgresStore(SqlStore):
    placeholder = "%s"
    id_type = "BIGSERIAL PRIMARY KEY"

    def __init__(self, dsn: str, *, lock_wait: float = 300.0, **kw: Any) -> None:
        super().__init__(**kw)
        self.lock_wait = lock_wait
        try:
            self.db = psycopg.connect(dsn, autocommit=True)
            self.locks_db = psycopg.connect(dsn, autocommit=True)
        except psycopg.OperationalError as err:
            raise ConfigError(
                f"PostgreSQL store unreachable: {str(err).strip().splitlines()[0]}"
            ) from None
        self.lock = threading.RLock()
        self.locks_lock = threading.Lock()
        self._day_locks: dict[str, threading.Lock] = {}
        with self.lock, self.db.transaction():
            self.db.execute("SELECT pg_advisory_xact_lock(727272)")  # one schema creator at a time
            for statement in self.schema():
                self.db.execute(statement)

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            cur = self.db.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []

    def _atomic(self, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
        with self.lock, self.db.transaction():
            for sql, params in statements:
                self.db.execute(self._sql(sql), params)

    def _claim_sql(
        self, worker: str, limit: int, lease: float, now: float
    ) -> list[tuple[Any, ...]]:
        with self.lock:
            cur = self.db.execute(
                "UPDATE inbox SET status = 'processing', claimed_by = %s, lease_until = %s, "
                "attempts = attempts + 1 WHERE id IN (SELECT id FROM inbox WHERE "
                "(status = 'pending' AND next_at <= %s) OR (status = 'processing' AND "
                "lease_until < %s) ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) "
                "RETURNING id, source, payload, status, attempts, last_error, received_at",
                (worker, now + lease, now, now, limit),
            )
            return sorted(cur.fetchall())

    @contextmanager
    def day_lock(self, day: str) -> Iterator[None]:
        """This process's threads queue on a local lock; other replicas on an advisory lock
        (tried in a loop, so the shared lock connection is never blocked)."""
        with self.lock:
            local = self._day_locks.setdefault(day, threading.Lock())
        deadline = time.monotonic() + self.lock_wait
        if not local.acquire(timeout=self.lock_wait):
            raise StoreBusyError(f"patient-day {day} is busy in this process")
        try:
            while True:
                with self.locks_lock:
                    got = self.locks_db.execute(
                        "SELECT pg_try_advisory_lock(hashtext(%s))", (day,)
                    ).fetchone()
                if got and got[0]:
                    break
                if time.monotonic() > deadline:
                    raise StoreBusyError(f"patient-day {day} is held by another replica")
                time.sleep(0.02)
            try:
                yield
            finally:
                with self.locks_lock:
                    self.locks_db.execute("SELECT pg_advisory_unlock(hashtext(%s))", (day,))
        finally:
            local.release()

    def close(self) -> None:
        with self.lock:
            self.db.close()
            self.locks_db.close()
