"""The PostgreSQL backend of :class:`~mt_core.storage.base.Storage`: psycopg 3 with a connection
pool (``psycopg_pool``), for many processes on many machines sharing one database.

- Migrations run on open under a transaction-level advisory lock, so exactly one process applies
  them however many start together; the others wait and find them applied.
- A write that checks a tenant's limits first locks the tenant's row (``SELECT ... FOR NO KEY
  UPDATE``, after creating it if new), so the count and the insert it guards are serialized per
  tenant across processes and machines, at READ COMMITTED (each statement sees what committed
  before the lock was granted). Other tenants' writes do not wait.
- A write that fails with a serialization failure or a deadlock is retried from the start, a
  bounded number of times, before its error reaches the caller.

Imported only when a ``postgresql://`` URL is used; psycopg is the ``postgres`` extra.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from ..errors import DatabaseError
from .base import utcnow
from .migrations import migrations, split_sql
from .sql import SQLStorage, Tx

try:
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise DatabaseError(
        f"a postgresql:// database needs psycopg 3 and psycopg_pool ({exc}); install them with"
        ' pip install "mt-core[postgres]"'
    ) from None

logger = logging.getLogger(__name__)
T = TypeVar("T")

POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 10
CONNECT_TIMEOUT_SECONDS = 10
RETRIES = 5  # attempts of a write that hit a serialization failure or a deadlock
# The advisory lock key that serializes migrations (per database): the first 8 bytes of a hash.
MIGRATION_LOCK = int.from_bytes(hashlib.sha256(b"mt-core schema migrations").digest()[:8], "big", signed=True)
_RETRYABLE = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected)


@functools.lru_cache(maxsize=512)
def _placeholders(sql: str) -> str:
    """The shared statements' ``?`` placeholders as psycopg's ``%s`` (no statement holds a ``%``)."""
    return sql.replace("?", "%s")


def mask_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    return re.sub(r"(password=)[^&]*", r"\1***", re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url))


class _Connection:
    """A :class:`~mt_core.storage.sql.Tx` over a psycopg connection."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self.conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute(_placeholders(sql), params)
            return cursor.fetchall() if cursor.description else []

    def run(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        with self.conn.cursor() as cursor:
            cursor.execute(_placeholders(sql), params)
            return cursor.rowcount

    def run_many(self, sql: str, params: list[tuple[Any, ...]]) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(_placeholders(sql), params)


class PostgresStorage(SQLStorage):
    """A PostgreSQL database, reached through a pool opened (and migrated) on first use.

    Args:
        url: a libpq connection URL, ``postgresql://user:password@host:port/dbname`` (a Unix socket:
            ``postgresql:///dbname?host=/run/postgresql``).
        min_size: connections the pool keeps open.
        max_size: connections the pool opens at most (per process).
    """

    dialect = "postgresql"

    def __init__(self, url: str, *, min_size: int = POOL_MIN_SIZE, max_size: int = POOL_MAX_SIZE) -> None:
        self.url = url
        self.min_size, self.max_size = min_size, max_size
        self.applied_migrations: list[int] = []  # what this object applied (nothing if another process did)
        self._pool: ConnectionPool | None = None
        self._pid = 0
        self._migrated = False  # survives a fork: a child does not migrate what its parent did
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresStorage({mask_url(self.url)!r})"

    # -- connections and transactions ---------------------------------------------------------

    def _connections(self) -> ConnectionPool:
        pool = self._pool
        if pool is not None and self._pid == os.getpid():
            return pool
        with self._lock:
            if self._pool is None or self._pid != os.getpid():  # new, or inherited across a fork: our own
                if not self._migrated:
                    self._migrate()
                    self._migrated = True
                pool = ConnectionPool(
                    self.url, min_size=self.min_size, max_size=self.max_size, open=False, name="mt-core",
                    kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_SECONDS},
                )
                pool.open(wait=False)
                self._pool, self._pid = pool, os.getpid()
            return self._pool

    @contextmanager
    def _read(self) -> Iterator[Tx]:
        with self._connections().connection() as conn:
            yield _Connection(conn)

    def _write(self, body: Callable[[Tx], T], tenant: str | None = None, *, retry: bool = True) -> T:
        """``body`` in one transaction; with ``tenant``, after locking the tenant's row (created if
        new). Serialization failures and deadlocks start it again (``retry``), a bounded number of times."""
        attempts = RETRIES if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                with self._connections().connection() as conn, conn.transaction():
                    tx = _Connection(conn)
                    if tenant is not None:
                        self._lock_tenant(tx, tenant)
                    return body(tx)
            except _RETRYABLE as exc:
                if attempt == attempts:
                    raise
                logger.debug("retrying a write after %s (attempt %d)", type(exc).__name__, attempt)
                time.sleep(random.uniform(0, 0.01 * 2 ** attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _lock_tenant(tx: Tx, tenant: str) -> None:
        """Lock the tenant's row for this transaction, creating it first if it is new. ``NO KEY
        UPDATE`` does not block foreign key checks of other transactions, only this same lock."""
        lock = "SELECT id FROM tenants WHERE id = ? FOR NO KEY UPDATE"
        if not tx.rows(lock, (tenant,)):
            tx.run("INSERT INTO tenants (id, created_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING", (tenant, utcnow()))
            tx.rows(lock, (tenant,))

    @contextmanager
    def _snapshot(self) -> Iterator[Tx]:
        with self._connections().connection() as conn:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                yield _Connection(conn)

    def _columns(self, tx: Tx, table: str) -> list[str]:
        rows = tx.rows("SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                       " AND table_name = ? ORDER BY ordinal_position", (table,))
        return [row["column_name"] for row in rows]

    def _name_conflict(self, exc: BaseException) -> bool:
        return isinstance(exc, pg_errors.UniqueViolation) and str(exc.diag.constraint_name or "").endswith("_name_key")

    def close(self) -> None:
        """Close the pool (of this process) and every connection in it."""
        with self._lock:
            pool, self._pool = self._pool, None
            if pool is not None and self._pid == os.getpid():
                pool.close()

    # -- schema -------------------------------------------------------------------------------

    def _migrate(self) -> None:
        """Apply the pending migrations in one transaction, holding the migration advisory lock."""
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS)
        except psycopg.OperationalError as exc:
            raise DatabaseError(f"cannot connect to the PostgreSQL database {mask_url(self.url)}: "
                                f"{str(exc).strip()}") from None
        try:
            with conn.transaction():
                tx = _Connection(conn)
                tx.rows("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
                tx.run("CREATE TABLE IF NOT EXISTS schema_migrations ("
                       "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
                applied = {row["version"] for row in tx.rows("SELECT version FROM schema_migrations")}
                for version, name, sql in migrations(self.dialect):
                    if version not in applied:
                        for statement in split_sql(sql):
                            conn.execute(statement)  # type: ignore[arg-type]
                        tx.run("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                               (version, name, utcnow()))
                        self.applied_migrations.append(version)
        finally:
            conn.close()
