"""The SQLite backend of :class:`~mt_core.storage.base.Storage`: one file, WAL mode, foreign keys
on, a connection per thread (and process). Every write takes the database's write lock up front
(``BEGIN IMMEDIATE``), so limit checks and the writes they guard are serialized across threads
and processes."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from ..errors import DatabaseError
from .base import utcnow
from .migrations import migrations, split_sql
from .sql import SQLStorage, Tx

T = TypeVar("T")
BUSY_TIMEOUT_SECONDS = 30.0


class _Connection:
    """A :class:`~mt_core.storage.sql.Tx` over a sqlite3 connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        cursor = self.conn.execute(sql, params)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def run(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        return self.conn.execute(sql, params).rowcount

    def run_many(self, sql: str, params: list[tuple[Any, ...]]) -> None:
        self.conn.executemany(sql, params)


class SQLiteStorage(SQLStorage):
    """One SQLite database file, created with its parent folder (mode 0700) on first use.

    Args:
        path: the database file.
    """

    dialect = "sqlite"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._ready = False

    def __repr__(self) -> str:
        return f"SQLiteStorage({str(self.path)!r})"

    # -- connections and transactions ---------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._lock:
            self._connections.append(conn)
        if not self._ready:
            self._migrate(conn)
        return conn

    @contextmanager
    def _read(self) -> Iterator[Tx]:
        yield _Connection(self._connection())

    def _write(self, body: Callable[[Tx], T], tenant: str | None = None, *, retry: bool = True) -> T:
        """``body`` in a transaction that takes the write lock up front (no lock upgrade, no BUSY).
        With ``tenant``, the tenant's row is created first if it is new."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            tx = _Connection(conn)
            if tenant is not None:
                tx.run("INSERT INTO tenants (id, created_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
                       (tenant, utcnow()))
            result = body(tx)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    @contextmanager
    def _snapshot(self) -> Iterator[Tx]:
        # A deferred transaction reads one snapshot of a WAL database until it ends.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        try:
            self._connection()  # migrated before anything is read
            conn.execute("BEGIN")
            yield _Connection(conn)
            conn.execute("COMMIT")
        finally:
            conn.close()

    def _columns(self, tx: Tx, table: str) -> list[str]:
        return [row["name"] for row in tx.rows(f"PRAGMA table_info({table})")]

    def _name_conflict(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc) and ".name" in str(exc)

    def close(self) -> None:
        """Close every connection this object opened (in this process)."""
        with self._lock:
            for conn in self._connections:
                try:
                    conn.close()
                except sqlite3.ProgrammingError:
                    pass
            self._connections.clear()
        self._local = threading.local()

    # -- schema -------------------------------------------------------------------------------

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Apply the baseline schema and pending migrations, once, under an exclusive lock.

        Foreign keys are off while they run (a migration that rebuilds a table drops the old one,
        which other tables reference: SQLite's own procedure for changing a table), and every
        foreign key is checked before the migrations commit."""
        with self._lock:
            if self._ready:
                return
            conn.execute("PRAGMA foreign_keys = OFF")  # a no-op inside a transaction: before BEGIN
            conn.execute("BEGIN EXCLUSIVE")
            try:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
                )
                applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
                pending = [step for step in migrations(self.dialect) if step[0] not in applied]
                for version, name, sql in pending:
                    for statement in split_sql(sql):
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                        (version, name, utcnow()),
                    )
                broken = conn.execute("PRAGMA foreign_key_check").fetchall() if pending else []
                if broken:
                    raise DatabaseError(f"the migrations of {self.path} would break foreign keys: {broken[:5]}")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
            finally:
                conn.execute("PRAGMA foreign_keys = ON")
            self._ready = True
