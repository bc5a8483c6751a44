"""The SQLite implementation of :class:`~mt_core.storage.base.Storage`: one file, WAL mode,
foreign keys on, a connection per thread (and process)."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConflictError, NotFoundError
from ..fallbacks import check_no_cycle
from ..limits import exceeded
from .base import (
    BreakerRow, CacheRow, CatalogRow, LLMAttemptRow, LLMRow, RunQuota, RunRow, SecretRow, StoredSecret, ToolRow,
    ToolVersionRow, utcnow,
)

BUSY_TIMEOUT_SECONDS = 30.0
BASELINE_VERSION = 1
STALE_RUN_AFTER = timedelta(hours=1)  # a run 'running' longer than this no longer counts as in progress

# The JSON columns of each table (encoded on write, decoded on read).
_JSON = {
    "tool_versions": ("inputs", "output_schema", "dependencies", "settings"),
    "llms": ("options",),
    "runs": ("tool_ids", "tool_versions"),
    "package_tools": ("inputs", "settings"),
}
_LLM_UPDATABLE = frozenset({"name", "provider", "model_name", "base_url", "options", "api_key_ciphertext",
                            "api_key_masked"})
_TOOL_SELECT = (
    "SELECT t.id, t.name, t.version AS latest_version, t.created_at, v.version, v.description, v.kind, v.entry,"
    " v.source, v.source_sha256, v.inputs, v.output_type, v.output_schema, v.dependencies, v.settings,"
    " v.created_at AS version_created_at FROM tools t JOIN tool_versions v"
    " ON v.tenant_id = t.tenant_id AND v.tool_id = t.id"
)


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


class SQLiteStorage:
    """One SQLite database file, created with its parent folder (mode 0700) on first use.

    Args:
        path: the database file.
    """

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
    def _write(self, tenant: str | None = None) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock up front (no lock upgrade, no BUSY).
        With ``tenant``, the tenant's row is created first if it is new."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if tenant is not None:
                conn.execute("INSERT OR IGNORE INTO tenants (id, created_at) VALUES (?, ?)", (tenant, utcnow()))
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _rows(self, table: str, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        columns = _JSON.get(table, ())
        return [
            {key: (json.loads(row[key]) if key in columns and row[key] is not None else row[key]) for key in row.keys()}
            for row in self._connection().execute(sql, params).fetchall()
        ]

    def _one(self, table: str, kind: str, tenant: str, object_id: str) -> dict[str, Any]:
        rows = self._rows(table, f"SELECT * FROM {table} WHERE tenant_id = ? AND id = ?", (tenant, object_id))
        if not rows:
            raise NotFoundError(kind, object_id)
        return rows[0]

    def _insert(self, conn: sqlite3.Connection, table: str, tenant: str, row: dict[str, Any], kind: str) -> None:
        columns = _JSON.get(table, ())
        values = {k: (json.dumps(v) if k in columns else v) for k, v in row.items()}
        values["tenant_id"] = tenant
        try:
            conn.execute(
                f"INSERT INTO {table} ({', '.join(values)}) VALUES ({', '.join('?' for _ in values)})",
                tuple(values.values()),
            )
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc) and ".name" in str(exc):
                raise ConflictError(f"this tenant already has {kind} named {row.get('name')!r}") from None
            raise

    def _delete(self, table: str, kind: str, tenant: str, object_id: str) -> None:
        with self._write() as conn:
            cursor = conn.execute(f"DELETE FROM {table} WHERE tenant_id = ? AND id = ?", (tenant, object_id))
            if cursor.rowcount == 0:
                raise NotFoundError(kind, object_id)

    @staticmethod
    def _check_count(conn: sqlite3.Connection, table: str, tenant: str, limit: str, allowed: int, what: str) -> None:
        count = conn.execute(f"SELECT COUNT(*) FROM {table} WHERE tenant_id = ?", (tenant,)).fetchone()[0]
        if count + 1 > allowed:
            raise exceeded(limit, count + 1, allowed, what)

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
        rows = self._connection().execute("SELECT version, name FROM schema_migrations ORDER BY version")
        return [(row[0], row[1]) for row in rows]

    # -- tools --------------------------------------------------------------------------------

    def add_tool(self, tenant: str, tool_id: str, name: str, version: ToolVersionRow, secrets: list[SecretRow], *,
                 max_tools: int) -> None:
        """Store a new tool as version 1, within ``max_tools``."""
        with self._write(tenant) as conn:
            self._check_count(conn, "tools", tenant, "max_tools", max_tools, "the number of tools")
            self._insert(conn, "tools", tenant, {"id": tool_id, "name": name, "version": 1,
                                                 "created_at": version["created_at"]}, "a tool")
            self._insert(conn, "tool_versions", tenant, {**version, "tool_id": tool_id, "version": 1}, "a tool version")
            self._put_secrets(conn, tenant, tool_id, secrets)

    def add_tool_version(self, tenant: str, tool_id: str, version: ToolVersionRow,
                         secrets: list[SecretRow] | None) -> int:
        """Store the next version of a tool; its number."""
        with self._write() as conn:
            row = conn.execute("SELECT version FROM tools WHERE tenant_id = ? AND id = ?", (tenant, tool_id)).fetchone()
            if row is None:
                raise NotFoundError("tool", tool_id)
            number = int(row[0]) + 1
            self._insert(conn, "tool_versions", tenant, {**version, "tool_id": tool_id, "version": number},
                         "a tool version")
            conn.execute("UPDATE tools SET version = ? WHERE tenant_id = ? AND id = ?", (number, tenant, tool_id))
            if secrets is not None:
                conn.execute("DELETE FROM tool_secrets WHERE tenant_id = ? AND tool_id = ?", (tenant, tool_id))
                self._put_secrets(conn, tenant, tool_id, secrets)
        return number

    @staticmethod
    def _put_secrets(conn: sqlite3.Connection, tenant: str, tool_id: str, secrets: list[SecretRow]) -> None:
        now = utcnow()
        for secret in secrets:
            conn.execute(
                "INSERT INTO tool_secrets (tenant_id, tool_id, name, ciphertext, masked, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (tenant, tool_id, secret["name"], secret["ciphertext"], secret["masked"], now),
            )

    def get_tool(self, tenant: str, tool_id: str, version: int | None = None) -> ToolRow:
        """A tool of the tenant at ``version`` (default: the latest)."""
        condition = "v.version = ?" if version is not None else "v.version = t.version"
        params: tuple[Any, ...] = (tenant, tool_id, version) if version is not None else (tenant, tool_id)
        rows = self._rows("tool_versions", f"{_TOOL_SELECT} WHERE t.tenant_id = ? AND t.id = ? AND {condition}", params)
        if not rows:
            if version is not None and self._tool_exists(tenant, tool_id):
                raise NotFoundError("tool version", f"{tool_id}@{version}")
            raise NotFoundError("tool", tool_id)
        return rows[0]  # type: ignore[return-value]

    def _tool_exists(self, tenant: str, tool_id: str) -> bool:
        sql = "SELECT 1 FROM tools WHERE tenant_id = ? AND id = ?"
        return self._connection().execute(sql, (tenant, tool_id)).fetchone() is not None

    def list_tools(self, tenant: str) -> list[ToolRow]:
        """The tenant's tools at their latest versions, oldest first."""
        sql = f"{_TOOL_SELECT} WHERE t.tenant_id = ? AND v.version = t.version ORDER BY t.created_at, t.id"
        return self._rows("tool_versions", sql, (tenant,))  # type: ignore[return-value]

    def list_tool_versions(self, tenant: str, tool_id: str) -> list[dict[str, Any]]:
        """Every version of a tool of the tenant, oldest first."""
        rows = self._rows(
            "tool_versions",
            "SELECT version, created_at, source_sha256 FROM tool_versions WHERE tenant_id = ? AND tool_id = ?"
            " ORDER BY version",
            (tenant, tool_id),
        )
        if not rows:
            raise NotFoundError("tool", tool_id)
        return rows

    def tool_name_taken(self, tenant: str, name: str) -> bool:
        """Whether the tenant has a tool named ``name``."""
        sql = "SELECT 1 FROM tools WHERE tenant_id = ? AND name = ?"
        return self._connection().execute(sql, (tenant, name)).fetchone() is not None

    def delete_tool(self, tenant: str, tool_id: str) -> None:
        """Delete one tool of the tenant with its versions and secrets."""
        with self._write() as conn:
            cursor = conn.execute("DELETE FROM tools WHERE tenant_id = ? AND id = ?", (tenant, tool_id))
            if cursor.rowcount == 0:
                raise NotFoundError("tool", tool_id)
            conn.execute("DELETE FROM tool_secrets WHERE tenant_id = ? AND tool_id = ?", (tenant, tool_id))

    def tool_secrets(self, tenant: str, tool_id: str) -> list[SecretRow]:
        """The secrets the tenant gave a tool."""
        rows = self._connection().execute(
            "SELECT name, ciphertext, masked FROM tool_secrets WHERE tenant_id = ? AND tool_id = ? ORDER BY name",
            (tenant, tool_id),
        ).fetchall()
        return [{"name": row[0], "ciphertext": row[1], "masked": row[2]} for row in rows]

    # -- LLM configurations -------------------------------------------------------------------

    def add_llm(self, tenant: str, row: LLMRow, *, max_llms: int, fallbacks: Sequence[str] = ()) -> None:
        """Store an LLM configuration with its fallbacks, within ``max_llms``."""
        with self._write(tenant) as conn:
            self._check_count(conn, "llms", tenant, "max_llms", max_llms, "the number of LLM configurations")
            self._insert(conn, "llms", tenant, {k: v for k, v in row.items() if k != "fallbacks"},
                         "an LLM configuration")
            self._put_fallbacks(conn, tenant, row["id"], fallbacks)

    def update_llm(self, tenant: str, llm_id: str, fields: dict[str, Any], fallbacks: Sequence[str] | None = None) -> None:
        """Change an LLM configuration (and its fallbacks when given); reset its breaker."""
        values = {k: (json.dumps(v) if k in _JSON["llms"] else v) for k, v in fields.items()}
        unknown = set(values) - _LLM_UPDATABLE
        if unknown:
            raise ValueError(f"not updatable columns of llms: {sorted(unknown)}")
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM llms WHERE tenant_id = ? AND id = ?", (tenant, llm_id)).fetchone() is None:
                raise NotFoundError("llm", llm_id)
            if values:
                try:
                    conn.execute(
                        f"UPDATE llms SET {', '.join(f'{column} = ?' for column in values)} WHERE tenant_id = ? AND id = ?",
                        (*values.values(), tenant, llm_id),
                    )
                except sqlite3.IntegrityError as exc:
                    if "UNIQUE" in str(exc):
                        raise ConflictError(
                            f"this tenant already has an LLM configuration named {fields.get('name')!r}") from None
                    raise
            if fallbacks is not None:
                conn.execute("DELETE FROM llm_fallbacks WHERE tenant_id = ? AND llm_id = ?", (tenant, llm_id))
                self._put_fallbacks(conn, tenant, llm_id, fallbacks)
                check_no_cycle(self._fallback_graph(conn, tenant), llm_id)
            conn.execute("DELETE FROM llm_breakers WHERE tenant_id = ? AND llm_id = ?", (tenant, llm_id))

    @staticmethod
    def _put_fallbacks(conn: sqlite3.Connection, tenant: str, llm_id: str, fallbacks: Sequence[str]) -> None:
        for position, fallback_id in enumerate(fallbacks):
            found = conn.execute("SELECT 1 FROM llms WHERE tenant_id = ? AND id = ?", (tenant, fallback_id)).fetchone()
            if found is None:
                raise NotFoundError("llm", fallback_id)
            conn.execute(
                "INSERT INTO llm_fallbacks (tenant_id, llm_id, position, fallback_id) VALUES (?, ?, ?, ?)",
                (tenant, llm_id, position, fallback_id),
            )

    @staticmethod
    def _fallback_graph(conn: sqlite3.Connection, tenant: str, llm_id: str | None = None) -> dict[str, list[str]]:
        sql = "SELECT llm_id, fallback_id FROM llm_fallbacks WHERE tenant_id = ?"
        params: tuple[Any, ...] = (tenant,)
        if llm_id is not None:
            sql, params = sql + " AND llm_id = ?", (tenant, llm_id)
        graph: dict[str, list[str]] = {}
        for row in conn.execute(sql + " ORDER BY llm_id, position", params):
            graph.setdefault(row[0], []).append(row[1])
        return graph

    def llm_fallback_graph(self, tenant: str) -> dict[str, list[str]]:
        """Every configuration of the tenant that has fallbacks -> their ids, in order."""
        return self._fallback_graph(self._connection(), tenant)

    def get_llm(self, tenant: str, llm_id: str) -> LLMRow:
        """One LLM configuration of the tenant, with its fallbacks."""
        row = self._one("llms", "llm", tenant, llm_id)
        row.pop("tenant_id", None)
        row["fallbacks"] = self._fallback_graph(self._connection(), tenant, llm_id).get(llm_id, [])
        return row  # type: ignore[return-value]

    def list_llms(self, tenant: str) -> list[LLMRow]:
        """The tenant's LLM configurations with their fallbacks, oldest first."""
        rows = self._rows("llms", "SELECT * FROM llms WHERE tenant_id = ? ORDER BY created_at, id", (tenant,))
        graph = self._fallback_graph(self._connection(), tenant)
        for row in rows:
            row.pop("tenant_id", None)
            row["fallbacks"] = graph.get(row["id"], [])
        return rows  # type: ignore[return-value]

    def delete_llm(self, tenant: str, llm_id: str) -> None:
        """Delete one LLM configuration of the tenant (its breaker and cache rows go with it)."""
        with self._write() as conn:
            users = [row[0] for row in conn.execute(
                "SELECT llm_id FROM llm_fallbacks WHERE tenant_id = ? AND fallback_id = ? ORDER BY llm_id",
                (tenant, llm_id),
            )]
            if users and conn.execute("SELECT 1 FROM llms WHERE tenant_id = ? AND id = ?", (tenant, llm_id)).fetchone():
                raise ConflictError(
                    f"LLM configuration {llm_id!r} is a fallback of {', '.join(users)}; remove it from their"
                    " fallbacks first (update_llm(..., fallbacks=[...]))"
                )
            cursor = conn.execute("DELETE FROM llms WHERE tenant_id = ? AND id = ?", (tenant, llm_id))
            if cursor.rowcount == 0:
                raise NotFoundError("llm", llm_id)

    # -- LLM calls: attempts, circuit breakers, response cache ---------------------------------

    def add_llm_attempt(self, tenant: str, row: LLMAttemptRow) -> None:
        """Record one attempt of an LLM call of a run."""
        with self._write() as conn:
            self._insert(conn, "llm_attempts", tenant, dict(row), "an LLM attempt")

    def list_llm_attempts(self, tenant: str, run_id: str) -> list[LLMAttemptRow]:
        """The attempts of one of the tenant's runs, in order."""
        rows = self._rows("llm_attempts", "SELECT * FROM llm_attempts WHERE tenant_id = ? AND run_id = ? ORDER BY seq",
                          (tenant, run_id))
        for row in rows:
            row.pop("tenant_id", None)
        return rows  # type: ignore[return-value]

    def get_breakers(self, tenant: str, llm_ids: Sequence[str]) -> dict[str, BreakerRow]:
        """The stored breakers of these configurations, by id."""
        if not llm_ids:
            return {}
        marks = ", ".join("?" for _ in llm_ids)
        rows = self._rows("llm_breakers", f"SELECT * FROM llm_breakers WHERE tenant_id = ? AND llm_id IN ({marks})",
                          (tenant, *llm_ids))
        return {row["llm_id"]: _breaker(row) for row in rows}

    def update_breaker(self, tenant: str, llm_id: str,
                       change: Callable[[BreakerRow | None], BreakerRow | None]) -> BreakerRow | None:
        """Read, change and store a breaker in one transaction (BEGIN IMMEDIATE holds the write lock)."""
        with self._write() as conn:
            found = conn.execute("SELECT * FROM llm_breakers WHERE tenant_id = ? AND llm_id = ?",
                                 (tenant, llm_id)).fetchone()
            current = _breaker(dict(found)) if found is not None else None
            new = change(current)
            if new is None:
                return current
            conn.execute(
                "INSERT INTO llm_breakers (tenant_id, llm_id, state, failures, window_start, open_until, trial_until,"
                " last_error, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (tenant_id, llm_id) DO UPDATE SET state = excluded.state, failures = excluded.failures,"
                " window_start = excluded.window_start, open_until = excluded.open_until,"
                " trial_until = excluded.trial_until, last_error = excluded.last_error, updated_at = excluded.updated_at",
                (tenant, llm_id, new["state"], new.get("failures", 0), new.get("window_start"), new.get("open_until"),
                 new.get("trial_until"), new.get("last_error"), new["updated_at"]),
            )
            return {**new, "llm_id": llm_id}

    def get_cached_response(self, tenant: str, cache_key: str, now: float) -> CacheRow | None:
        """The tenant's unexpired cached response under ``cache_key``."""
        found = self._connection().execute(
            "SELECT cache_key, llm_id, response, created_at, expires_at FROM llm_cache"
            " WHERE tenant_id = ? AND cache_key = ? AND expires_at > ?", (tenant, cache_key, now),
        ).fetchone()
        if found is None:
            return None
        return {"cache_key": found[0], "llm_id": found[1], "response": json.loads(found[2]),
                "created_at": found[3], "expires_at": found[4]}

    def put_cached_response(self, tenant: str, row: CacheRow, *, max_entries: int) -> None:
        """Store a response, drop expired entries, evict the oldest beyond ``max_entries``."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO llm_cache (tenant_id, cache_key, llm_id, response, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, cache_key) DO UPDATE SET llm_id = excluded.llm_id,"
                " response = excluded.response, created_at = excluded.created_at, expires_at = excluded.expires_at",
                (tenant, row["cache_key"], row["llm_id"], json.dumps(row["response"]), row["created_at"],
                 row["expires_at"]),
            )
            conn.execute("DELETE FROM llm_cache WHERE tenant_id = ? AND expires_at <= ?", (tenant, row["created_at"]))
            conn.execute(  # keep the newest max_entries (ties at the boundary are kept too)
                "DELETE FROM llm_cache WHERE tenant_id = ? AND created_at < (SELECT created_at FROM llm_cache"
                " WHERE tenant_id = ? ORDER BY created_at DESC LIMIT 1 OFFSET ?)",
                (tenant, tenant, max(int(max_entries) - 1, 0)),
            )

    # -- secrets of every tenant (operators only) ---------------------------------------------

    def secrets_not_under(self, key_id: str) -> list[StoredSecret]:
        """Every ciphertext not under master key ``key_id``."""
        pattern = f"v1:{key_id}:%"
        conn = self._connection()
        found = [
            StoredSecret("llm", row[0], row[1], "api_key", row[2])
            for row in conn.execute(
                "SELECT tenant_id, id, api_key_ciphertext FROM llms"
                " WHERE api_key_ciphertext IS NOT NULL AND api_key_ciphertext NOT LIKE ?", (pattern,)
            )
        ]
        found += [
            StoredSecret("tool", row[0], row[1], row[2], row[3])
            for row in conn.execute(
                "SELECT tenant_id, tool_id, name, ciphertext FROM tool_secrets WHERE ciphertext NOT LIKE ?", (pattern,)
            )
        ]
        return found

    def replace_secret(self, secret: StoredSecret, new: str) -> bool:
        """Swap one ciphertext for another if it is still the one read."""
        with self._write() as conn:
            if secret.kind == "llm":
                cursor = conn.execute(
                    "UPDATE llms SET api_key_ciphertext = ? WHERE tenant_id = ? AND id = ? AND api_key_ciphertext = ?",
                    (new, secret.tenant, secret.owner_id, secret.ciphertext),
                )
            else:
                cursor = conn.execute(
                    "UPDATE tool_secrets SET ciphertext = ? WHERE tenant_id = ? AND tool_id = ? AND name = ?"
                    " AND ciphertext = ?",
                    (new, secret.tenant, secret.owner_id, secret.name, secret.ciphertext),
                )
            return cursor.rowcount == 1

    # -- runs ---------------------------------------------------------------------------------

    def start_run(self, tenant: str, row: RunRow, *, quota: RunQuota) -> None:
        """Record a started run, within the tenant's concurrency and rate limits."""
        now = datetime.now(timezone.utc)
        with self._write(tenant) as conn:
            for limit, condition, since, what in (
                ("max_concurrent_runs", "status = 'running' AND ", STALE_RUN_AFTER, "the runs in progress"),
                ("runs_per_minute", "", timedelta(minutes=1), "the runs started in the last minute"),
            ):
                count = conn.execute(
                    f"SELECT COUNT(*) FROM runs WHERE tenant_id = ? AND {condition}started_at > ?",
                    (tenant, (now - since).isoformat(timespec="microseconds")),
                ).fetchone()[0]
                allowed = quota[limit]  # type: ignore[literal-required]
                if count + 1 > allowed:
                    raise exceeded(limit, count + 1, allowed, what)
            self._insert(conn, "runs", tenant, dict(row), "a run")

    def finish_run(self, tenant: str, run_id: str, fields: dict[str, Any]) -> RunRow:
        """Store a run's outcome; return the record."""
        values = {k: (json.dumps(v) if k in _JSON["runs"] else v) for k, v in fields.items()}
        with self._write() as conn:
            cursor = conn.execute(
                f"UPDATE runs SET {', '.join(f'{column} = ?' for column in values)} WHERE tenant_id = ? AND id = ?",
                (*values.values(), tenant, run_id),
            )
            if cursor.rowcount == 0:
                raise NotFoundError("run", run_id)
        return self.get_run(tenant, run_id)

    def get_run(self, tenant: str, run_id: str) -> RunRow:
        """One run record of the tenant."""
        return self._one("runs", "run", tenant, run_id)  # type: ignore[return-value]

    def list_runs(self, tenant: str, *, limit: int) -> list[RunRow]:
        """The tenant's run records, newest first."""
        sql = "SELECT * FROM runs WHERE tenant_id = ? ORDER BY started_at DESC LIMIT ?"
        return self._rows("runs", sql, (tenant, int(limit)))  # type: ignore[return-value]

    # -- limits and executor options ----------------------------------------------------------

    def get_limits(self, tenant: str) -> dict[str, int]:
        """The tenant's stored limit overrides."""
        rows = self._rows("tenant_limits", "SELECT * FROM tenant_limits WHERE tenant_id = ?", (tenant,))
        if not rows:
            return {}
        return {k: v for k, v in rows[0].items() if k not in ("tenant_id", "updated_at") and v is not None}

    def set_limits(self, tenant: str, values: dict[str, int | None]) -> None:
        """Store limit overrides (column names were checked against :class:`~mt_core.limits.Limits`)."""
        with self._write(tenant) as conn:
            conn.execute("INSERT OR IGNORE INTO tenant_limits (tenant_id, updated_at) VALUES (?, ?)", (tenant, utcnow()))
            for column, value in values.items():
                conn.execute(
                    f"UPDATE tenant_limits SET {column} = ?, updated_at = ? WHERE tenant_id = ?",
                    (value, utcnow(), tenant),
                )

    def get_executor_options(self, tenant: str) -> dict[str, Any]:
        """The tenant's executor options."""
        row = self._connection().execute(
            "SELECT options FROM tenant_executor_options WHERE tenant_id = ?", (tenant,)
        ).fetchone()
        return json.loads(row[0]) if row else {}

    def set_executor_options(self, tenant: str, options: dict[str, Any]) -> None:
        """Replace the tenant's executor options."""
        with self._write(tenant) as conn:
            conn.execute(
                "INSERT INTO tenant_executor_options (tenant_id, options, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT(tenant_id) DO UPDATE SET options = excluded.options, updated_at = excluded.updated_at",
                (tenant, json.dumps(options), utcnow()),
            )

    # -- the package tool catalog -------------------------------------------------------------

    def catalog(self) -> dict[str, CatalogRow]:
        """Every package tool ever recorded, by name."""
        rows = self._rows("package_tools", "SELECT * FROM package_tools ORDER BY name", ())
        return {row["name"]: {**row, "available": bool(row["available"])} for row in rows}  # type: ignore[misc]

    def upsert_catalog(self, entries: list[CatalogRow], unavailable: list[str]) -> None:
        """Record changed package tools and mark vanished ones unavailable."""
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

    def enabled_package_tools(self, tenant: str) -> list[CatalogRow]:
        """The package tools the tenant has enabled (available or not), by name."""
        rows = self._rows(
            "package_tools",
            "SELECT p.*, e.enabled_at, e.settings FROM tenant_package_tools e JOIN package_tools p"
            " ON p.name = e.tool_name WHERE e.tenant_id = ? ORDER BY p.name",
            (tenant,),
        )
        return [{**row, "available": bool(row["available"])} for row in rows]  # type: ignore[misc]

    def enable_package_tool(self, tenant: str, name: str, settings: dict[str, Any] | None,
                            secrets: list[SecretRow] | None) -> None:
        """Enable a package tool for the tenant, or change its settings and secrets."""
        tool_id = f"pkg:{name}"
        with self._write(tenant) as conn:
            conn.execute(
                "INSERT INTO tenant_package_tools (tenant_id, tool_name, enabled_at, settings) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(tenant_id, tool_name) DO NOTHING",
                (tenant, name, utcnow(), json.dumps(settings or {})),
            )
            if settings is not None:
                conn.execute("UPDATE tenant_package_tools SET settings = ? WHERE tenant_id = ? AND tool_name = ?",
                             (json.dumps(settings), tenant, name))
            if secrets is not None:
                conn.execute("DELETE FROM tool_secrets WHERE tenant_id = ? AND tool_id = ?", (tenant, tool_id))
                self._put_secrets(conn, tenant, tool_id, secrets)

    def disable_package_tool(self, tenant: str, name: str) -> bool:
        """Disable a package tool for the tenant; its settings and secrets go with it."""
        with self._write() as conn:
            cursor = conn.execute(
                "DELETE FROM tenant_package_tools WHERE tenant_id = ? AND tool_name = ?", (tenant, name)
            )
            conn.execute("DELETE FROM tool_secrets WHERE tenant_id = ? AND tool_id = ?", (tenant, f"pkg:{name}"))
            return cursor.rowcount > 0


def _breaker(row: dict[str, Any]) -> BreakerRow:
    """A breaker row without its tenant."""
    return {key: row[key] for key in ("llm_id", "state", "failures", "window_start", "open_until", "trial_until",
                                      "last_error", "updated_at")}  # type: ignore[return-value]


def _baseline_sql() -> str:
    return resources.files("mt_core.database").joinpath("schema.sql").read_text(encoding="utf-8")


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements (our scripts hold no triggers or string semicolons)."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [statement.strip() for statement in "\n".join(lines).split(";") if statement.strip()]
