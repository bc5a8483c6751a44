"""SQLite storage. Every read and write of a tenant's rows takes the tenant; there is no other way in."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ConflictError, NotFoundError

BUSY_TIMEOUT_SECONDS = 30.0
BASELINE_VERSION = 1

# table -> (kind shown in errors, JSON columns). Table names come only from here, never from input.
_TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "tools": ("tool", ("inputs", "dependencies")),
    "llms": ("llm", ("options",)),
    "runs": ("run", ("tool_ids",)),
}


def utcnow() -> str:
    """The current UTC time as ISO 8601 with microseconds (sorts as text)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _migrations() -> list[tuple[int, str, str]]:
    """Numbered migrations shipped in ``mt_core/database/migrations``: (version, name, sql)."""
    folder = resources.files("mt_core.database").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        stem, _, suffix = entry.name.partition(".")
        number, _, name = stem.partition("_")
        if suffix == "sql" and number.isdigit():
            found.append((int(number), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


class Storage:
    """One SQLite database file: WAL mode, foreign keys on, one connection per thread (and process).

    Args:
        path: the database file; created with its parent folder when missing.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._ready = False

    def __repr__(self) -> str:
        return f"Storage({str(self.path)!r})"

    # -- connections and transactions ---------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
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
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock up front (no lock upgrade, no BUSY)."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _read(self, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
        return self._connection().execute(sql, params).fetchall()

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

    # -- schema -----------------------------------------------------------------------------

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Apply the baseline schema and pending migrations, once, under an exclusive lock."""
        with self._lock:
            if self._ready:
                return
            conn.execute("BEGIN EXCLUSIVE")
            try:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
                )
                applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
                steps = [(BASELINE_VERSION, "schema", _baseline_sql())] + _migrations()
                for version, name, sql in steps:
                    if version not in applied:
                        for statement in _split_sql(sql):
                            conn.execute(statement)
                        conn.execute(
                            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                            (version, name, utcnow()),
                        )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            self._ready = True

    def schema_versions(self) -> list[tuple[int, str]]:
        """The migrations recorded in this database, oldest first."""
        rows = self._read("SELECT version, name FROM schema_migrations ORDER BY version", ())
        return [(row[0], row[1]) for row in rows]

    # -- tenants ----------------------------------------------------------------------------

    def ensure_tenant(self, tenant: str) -> None:
        """Create the tenant row if it does not exist yet."""
        with self._write() as conn:
            conn.execute("INSERT OR IGNORE INTO tenants (id, created_at) VALUES (?, ?)", (tenant, utcnow()))

    def list_tenants(self) -> list[str]:
        """Every tenant id, sorted (for operators; never exposed to a tenant)."""
        return [row[0] for row in self._read("SELECT id FROM tenants ORDER BY id", ())]

    # -- tenant-owned rows ------------------------------------------------------------------

    def insert(
        self,
        table: str,
        tenant: str,
        row: dict[str, Any],
        *,
        check: Callable[[sqlite3.Connection], None] | None = None,
    ) -> dict[str, Any]:
        """Insert a row owned by ``tenant``; a UNIQUE clash raises :class:`ConflictError`.

        ``check(conn)`` runs inside the same write transaction first (quotas: it sees every
        committed row and no other writer can slip in), and may raise to write nothing.
        """
        kind, json_columns = _TABLES[table]
        values = {k: (json.dumps(v) if k in json_columns else v) for k, v in row.items()}
        values["tenant_id"] = tenant
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        try:
            with self._write() as conn:
                if check is not None:
                    check(conn)
                conn.execute("INSERT OR IGNORE INTO tenants (id, created_at) VALUES (?, ?)", (tenant, utcnow()))
                conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(values.values()))
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc) and ".name" in str(exc):
                noun = "an LLM configuration" if table == "llms" else f"a {kind}"
                raise ConflictError(f"this tenant already has {noun} named {row.get('name')!r}") from None
            raise
        return self.get(table, tenant, row["id"])

    def get(self, table: str, tenant: str, object_id: str) -> dict[str, Any]:
        """One row of ``tenant``; :class:`NotFoundError` when absent or owned by another tenant."""
        kind, _ = _TABLES[table]
        rows = self._read(f"SELECT * FROM {table} WHERE tenant_id = ? AND id = ?", (tenant, object_id))
        if not rows:
            raise NotFoundError(kind, object_id)
        return self._decode(table, rows[0])

    def get_many(self, table: str, tenant: str, object_ids: list[str]) -> list[dict[str, Any]]:
        """Rows of ``tenant`` in the order asked; the first missing id raises :class:`NotFoundError`."""
        return [self.get(table, tenant, object_id) for object_id in object_ids]

    def list(self, table: str, tenant: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Rows of ``tenant``, oldest first (newest first for runs)."""
        order = "started_at DESC" if table == "runs" else "created_at, id"
        sql = f"SELECT * FROM {table} WHERE tenant_id = ? ORDER BY {order}"
        params: tuple[Any, ...] = (tenant,)
        if limit is not None:
            sql += " LIMIT ?"
            params = (tenant, int(limit))
        return [self._decode(table, row) for row in self._read(sql, params)]

    def count(self, table: str, tenant: str) -> int:
        """How many rows of ``table`` the tenant has."""
        return self._read(f"SELECT COUNT(*) FROM {table} WHERE tenant_id = ?", (tenant,))[0][0]

    def update(self, table: str, tenant: str, object_id: str, fields: dict[str, Any]) -> None:
        """Change columns of one row of ``tenant``; :class:`NotFoundError` when it is not theirs."""
        kind, json_columns = _TABLES[table]
        values = {k: (json.dumps(v) if k in json_columns else v) for k, v in fields.items()}
        assignments = ", ".join(f"{column} = ?" for column in values)
        with self._write() as conn:
            cursor = conn.execute(
                f"UPDATE {table} SET {assignments} WHERE tenant_id = ? AND id = ?",
                (*values.values(), tenant, object_id),
            )
            if cursor.rowcount == 0:
                raise NotFoundError(kind, object_id)

    def delete(self, table: str, tenant: str, object_id: str) -> None:
        """Delete one row of ``tenant``; :class:`NotFoundError` when it is not theirs."""
        kind, _ = _TABLES[table]
        with self._write() as conn:
            cursor = conn.execute(f"DELETE FROM {table} WHERE tenant_id = ? AND id = ?", (tenant, object_id))
            if cursor.rowcount == 0:
                raise NotFoundError(kind, object_id)

    # -- limits -----------------------------------------------------------------------------

    def limits_row(self, tenant: str) -> dict[str, Any] | None:
        """The tenant's stored limit overrides, or ``None``."""
        rows = self._read("SELECT * FROM tenant_limits WHERE tenant_id = ?", (tenant,))
        return dict(rows[0]) if rows else None

    def set_limits_row(self, tenant: str, values: dict[str, int | None]) -> None:
        """Store limit overrides for ``tenant`` (``None`` restores a default)."""
        with self._write() as conn:
            conn.execute("INSERT OR IGNORE INTO tenants (id, created_at) VALUES (?, ?)", (tenant, utcnow()))
            conn.execute(
                "INSERT OR IGNORE INTO tenant_limits (tenant_id, updated_at) VALUES (?, ?)", (tenant, utcnow())
            )
            for column, value in values.items():  # column names were checked against Limits
                conn.execute(
                    f"UPDATE tenant_limits SET {column} = ?, updated_at = ? WHERE tenant_id = ?",
                    (value, utcnow(), tenant),
                )

    def executor_options(self, tenant: str) -> dict[str, Any]:
        """The tenant's executor options (``{}`` when none are set)."""
        rows = self._read("SELECT options FROM tenant_executor_options WHERE tenant_id = ?", (tenant,))
        return json.loads(rows[0][0]) if rows else {}

    def set_executor_options(self, tenant: str, options: dict[str, Any]) -> None:
        """Replace the tenant's executor options."""
        with self._write() as conn:
            conn.execute("INSERT OR IGNORE INTO tenants (id, created_at) VALUES (?, ?)", (tenant, utcnow()))
            conn.execute(
                "INSERT INTO tenant_executor_options (tenant_id, options, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT(tenant_id) DO UPDATE SET options = excluded.options, updated_at = excluded.updated_at",
                (tenant, json.dumps(options), utcnow()),
            )

    # -- secrets, across tenants (operators only: key rotation) ---------------------------------

    def secrets_to_rotate(self, key_id: str) -> list[tuple[str, str, str]]:
        """(tenant, llm id, ciphertext) of every API key not under master key ``key_id``."""
        rows = self._read(
            "SELECT tenant_id, id, api_key_ciphertext FROM llms"
            " WHERE api_key_ciphertext IS NOT NULL AND api_key_ciphertext NOT LIKE ?",
            (f"v1:{key_id}:%",),
        )
        return [(row[0], row[1], row[2]) for row in rows]

    def replace_secret(self, tenant: str, llm_id: str, old: str, new: str) -> bool:
        """Swap one ciphertext for another if it is still ``old`` (no lost concurrent update)."""
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE llms SET api_key_ciphertext = ? WHERE tenant_id = ? AND id = ? AND api_key_ciphertext = ?",
                (new, tenant, llm_id, old),
            )
            return cursor.rowcount == 1

    # -- package tool catalog (global) and per-tenant enablement --------------------------------

    def catalog(self) -> dict[str, dict[str, Any]]:
        """Every package tool ever recorded, by name (available or not)."""
        rows = self._read("SELECT * FROM package_tools ORDER BY name", ())
        return {row["name"]: {**dict(row), "inputs": json.loads(row["inputs"])} for row in rows}

    def upsert_catalog(self, entries: list[dict[str, Any]], unavailable: list[str]) -> None:
        """Record changed package tools and mark vanished ones unavailable, in one transaction."""
        with self._write() as conn:
            for entry in entries:
                conn.execute(
                    "INSERT INTO package_tools (name, plugin, distribution, version, description, inputs,"
                    " output_type, content_sha256, available, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?)"
                    " ON CONFLICT(name) DO UPDATE SET plugin = excluded.plugin, distribution = excluded.distribution,"
                    " version = excluded.version, description = excluded.description, inputs = excluded.inputs,"
                    " output_type = excluded.output_type, content_sha256 = excluded.content_sha256,"
                    " available = 1, updated_at = excluded.updated_at",
                    (
                        entry["name"], entry["plugin"], entry["distribution"], entry["version"], entry["description"],
                        json.dumps(entry["inputs"]), entry["output_type"], entry["content_sha256"], utcnow(),
                    ),
                )
            for name in unavailable:
                conn.execute("UPDATE package_tools SET available = 0, updated_at = ? WHERE name = ?", (utcnow(), name))

    def enabled_package_tools(self, tenant: str, *, include_unavailable: bool = False) -> list[dict[str, Any]]:
        """The available (or all) package tools ``tenant`` has enabled, by name."""
        rows = self._read(
            "SELECT p.*, e.enabled_at FROM tenant_package_tools e JOIN package_tools p ON p.name = e.tool_name"
            f" WHERE e.tenant_id = ? {'' if include_unavailable else 'AND p.available = 1 '}ORDER BY p.name",
            (tenant,),
        )
        return [{**dict(row), "inputs": json.loads(row["inputs"])} for row in rows]

    def set_package_tool_enabled(self, tenant: str, name: str, enabled: bool) -> bool:
        """Enable or disable a package tool for ``tenant``; False when there was nothing to change."""
        with self._write() as conn:
            if enabled:
                conn.execute("INSERT OR IGNORE INTO tenants (id, created_at) VALUES (?, ?)", (tenant, utcnow()))
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO tenant_package_tools (tenant_id, tool_name, enabled_at) VALUES (?, ?, ?)",
                    (tenant, name, utcnow()),
                )
            else:
                cursor = conn.execute(
                    "DELETE FROM tenant_package_tools WHERE tenant_id = ? AND tool_name = ?", (tenant, name)
                )
            return cursor.rowcount > 0

    @staticmethod
    def _decode(table: str, row: sqlite3.Row) -> dict[str, Any]:
        _, json_columns = _TABLES[table]
        return {key: (json.loads(row[key]) if key in json_columns else row[key]) for key in row.keys()}


def _baseline_sql() -> str:
    return resources.files("mt_core.database").joinpath("schema.sql").read_text(encoding="utf-8")


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements (our scripts hold no triggers or string semicolons)."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [statement.strip() for statement in "\n".join(lines).split(";") if statement.strip()]
