"""PostgreSQL store: for several replicas behind a load balancer.

Workers claim inbox rows with ``FOR UPDATE SKIP LOCKED``, so N replicas share the load without
processing a row twice; a patient-day is processed under a PostgreSQL advisory lock, so two
replicas never compute the same day at the same time.

Connections come from a pool (``psycopg_pool``) that checks each one before lending it and
replaces broken ones, so a restarted database, a terminated backend or a failover costs the
statements in flight (raised as ``StoreUnavailable``, retried by the caller) and nothing more:
the next statement gets a fresh connection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from adapter.errors import ConfigError
from adapter.store.base import SqlStore, StoreBusyError, StoreUnavailable


class PostgresStore(SqlStore):
    placeholder = "%s"
    id_type = "BIGSERIAL PRIMARY KEY"

    def __init__(
        self, dsn: str, *, lock_wait: float = 300.0, pool_size: int = 8, **kw: Any
    ) -> None:
        super().__init__(**kw)
        self.lock_wait = lock_wait
        self.pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            check=ConnectionPool.check_connection,
            timeout=10.0,
            open=False,
            name="charge-adapter",
        )
        try:
            self.pool.open(wait=True, timeout=10.0)
        except PoolTimeout:
            self.pool.close()
            raise ConfigError(f"PostgreSQL store unreachable: {_reason(dsn)}") from None
        self._day_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        with self._connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(727272)")  # one schema creator at a time
            for statement in self.schema():
                conn.execute(statement)
            for table, column, definition in self.added_columns:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {definition}")

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; a database that is away is ``StoreUnavailable`` (temporary)."""
        try:
            with self.pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as err:
            raise StoreUnavailable(f"PostgreSQL store: {type(err).__name__}") from None

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._connection() as conn:
            cur = conn.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []

    def _atomic(self, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
        with self._connection() as conn, conn.transaction():
            for sql, params in statements:
                conn.execute(self._sql(sql), params)

    def _claim_sql(
        self, worker: str, limit: int, lease: float, now: float
    ) -> list[tuple[Any, ...]]:
        with self._connection() as conn:
            cur = conn.execute(
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
        """This process's threads queue on a local lock; other replicas on a session advisory
        lock, held on one pooled connection for as long as the day is worked on (a connection
        lost meanwhile releases it server-side, never leaves it held)."""
        with self._locks_lock:
            local = self._day_locks.setdefault(day, threading.Lock())
        if not local.acquire(timeout=self.lock_wait):
            raise StoreBusyError(f"patient-day {day} is busy in this process")
        try:
            with self._connection() as conn:
                self._advisory_lock(conn, day)
                try:
                    yield
                finally:
                    with suppress(psycopg.OperationalError):  # a session gone took its lock
                        conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (day,))
        finally:
            local.release()

    def _advisory_lock(self, conn: psycopg.Connection[Any], day: str) -> None:
        deadline = time.monotonic() + self.lock_wait
        while True:
            got = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (day,)).fetchone()
            if got and got[0]:
                return
            if time.monotonic() > deadline:
                raise StoreBusyError(f"patient-day {day} is held by another replica")
            time.sleep(0.02)

    def close(self) -> None:
        self.pool.close()


def _reason(dsn: str) -> str:
    """Why a connection fails, in one line (without the password)."""
    try:
        psycopg.connect(dsn, connect_timeout=5).close()
    except psycopg.OperationalError as err:
        return str(err).strip().splitlines()[0]
    return "the pool did not open in time"
