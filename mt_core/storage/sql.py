"""The operations of :class:`~mt_core.storage.base.Storage` in SQL that SQLite and PostgreSQL both run.

A backend (:mod:`.sqlite`, :mod:`.postgresql`) supplies connections, transactions and migrations,
and the few things that differ: how a tenant's limit-checking writes are serialized, how a unique
violation looks, which columns a table has. Statements here use ``?`` placeholders and only
syntax both dialects share (``ON CONFLICT``, ``LIMIT``, ``COUNT``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol, TypeVar

from ..budgets import Spending, day_start, iso, month_start, over_budget
from ..errors import ConflictError, NotFoundError, ValidationError
from ..fallbacks import check_no_cycle
from ..limits import exceeded
from ..owners import stale_reason
from .base import (
    TABLES, BreakerRow, BudgetLimits, CacheRow, CatalogRow, LLMAttemptRow, LLMRow, ReservationRow, RunQuota, RunRow,
    SecretRow, StoredSecret, ToolCallRow, ToolRow, ToolVersionRow, utcnow,
)

T = TypeVar("T")

# The JSON columns of each table (encoded on write, decoded on read).
_JSON = {
    "tool_versions": ("inputs", "output_schema", "dependencies", "settings"),
    "llms": ("options", "prices"),
    "runs": ("tool_ids", "tool_versions"),
    "package_tools": ("inputs", "settings"),
}
_LLM_UPDATABLE = frozenset({"name", "provider", "model_name", "base_url", "options", "prices", "api_key_ciphertext",
                            "api_key_masked"})
_TOOL_SELECT = (
    "SELECT t.id, t.name, t.version AS latest_version, t.created_at, v.version, v.description, v.kind, v.entry,"
    " v.source, v.source_sha256, v.inputs, v.output_type, v.output_schema, v.dependencies, v.settings,"
    " v.created_at AS version_created_at FROM tools t JOIN tool_versions v"
    " ON v.tenant_id = t.tenant_id AND v.tool_id = t.id"
)
# What a run record shows; who ran it (owner_*) and its deadline stay inside the storage layer.
_RUN_COLUMNS = (
    "tenant_id, id, llm_id, tool_ids, tool_versions, query, agent_type, executor, status, output, error,"
    " input_tokens, output_tokens, steps, duration_ms, started_at, finished_at"
)
# What a run cost, from its attempts: the sum of their costs, and how many billed tokens nobody has a
# price for (then the run's cost is unknown: None).
_RUN_COST = (
    "(SELECT COALESCE(SUM(a.cost_usd), 0) FROM llm_attempts a WHERE a.tenant_id = runs.tenant_id"
    " AND a.run_id = runs.id) AS cost_usd, (SELECT COUNT(*) FROM llm_attempts a WHERE a.tenant_id = runs.tenant_id"
    " AND a.run_id = runs.id AND a.cost_usd IS NULL) AS unpriced_calls"
)
_RUNNING = (
    "SELECT id, started_at, deadline, owner_host, owner_boot_id, owner_pid, owner_start_time FROM runs"
    " WHERE tenant_id = ? AND status = 'running' ORDER BY id"  # one order: concurrent markers never deadlock
)


class Tx(Protocol):
    """A connection (inside a transaction for writes) as the shared operations use it."""

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Run a query; its rows as dicts."""

    def run(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Run a statement; the number of rows it changed."""

    def run_many(self, sql: str, params: list[tuple[Any, ...]]) -> None:
        """Run a statement once per parameter tuple."""


def decode(table: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of ``table`` with their JSON columns decoded."""
    columns = [c for c in _JSON.get(table, ()) if rows and c in rows[0]]
    if columns:
        for row in rows:
            for column in columns:
                if row[column] is not None:
                    row[column] = json.loads(row[column])
    return rows


class SQLStorage:
    """The shared operations; a backend subclass provides :meth:`_read`, :meth:`_write`,
    :meth:`_snapshot`, :meth:`_columns` and :meth:`_name_conflict`."""

    dialect = ""

    # -- what a backend provides ------------------------------------------------------------------

    def _read(self) -> AbstractContextManager[Tx]:
        """A connection for reads."""
        raise NotImplementedError

    def _write(self, body: Callable[[Tx], T], tenant: str | None = None, *, retry: bool = True) -> T:
        """``body`` in one write transaction (rolled back if it raises). With ``tenant``, the tenant
        row exists (created if new) and the tenant's limit-checking writes are serialized. A backend
        may run ``body`` again after a transient conflict unless ``retry`` is False."""
        raise NotImplementedError

    def _snapshot(self) -> AbstractContextManager[Tx]:
        """A read-only transaction that sees one consistent state of the whole database."""
        raise NotImplementedError

    def _columns(self, tx: Tx, table: str) -> list[str]:
        """The columns ``table`` has in this database."""
        raise NotImplementedError

    def _name_conflict(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a unique violation of a ``(tenant_id, name)`` key."""
        raise NotImplementedError

    def close(self) -> None:
        """Release every connection."""
        raise NotImplementedError

    # -- helpers ----------------------------------------------------------------------------------

    def _rows(self, table: str, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._read() as tx:
            return decode(table, tx.rows(sql, params))

    def _insert(self, tx: Tx, table: str, tenant: str, row: dict[str, Any], kind: str) -> None:
        columns = _JSON.get(table, ())
        values = {k: (json.dumps(v) if k in columns and v is not None else v) for k, v in row.items()}
        values["tenant_id"] = tenant
        try:
            tx.run(f"INSERT INTO {table} ({', '.join(values)}) VALUES ({', '.join('?' for _ in values)})",
                   tuple(values.values()))
        except Exception as exc:
            if self._name_conflict(exc):
                raise ConflictError(f"this tenant already has {kind} named {row.get('name')!r}") from None
            raise

    @staticmethod
    def _check_count(tx: Tx, table: str, tenant: str, limit: str, allowed: int, what: str) -> None:
        count = tx.rows(f"SELECT COUNT(*) AS n FROM {table} WHERE tenant_id = ?", (tenant,))[0]["n"]
        if count + 1 > allowed:
            raise exceeded(limit, count + 1, allowed, what)

    def schema_versions(self) -> list[tuple[int, str]]:
        """The migrations recorded in this database, oldest first."""
        with self._read() as tx:
            return [(row["version"], row["name"]) for row in tx.rows(
                "SELECT version, name FROM schema_migrations ORDER BY version")]

    # -- tools ------------------------------------------------------------------------------------

    def add_tool(self, tenant: str, tool_id: str, name: str, version: ToolVersionRow, secrets: list[SecretRow], *,
                 max_tools: int) -> None:
        """Store a new tool as version 1, within ``max_tools``."""

        def body(tx: Tx) -> None:
            self._check_count(tx, "tools", tenant, "max_tools", max_tools, "the number of tools")
            self._insert(tx, "tools", tenant, {"id": tool_id, "name": name, "version": 1,
                                               "created_at": version["created_at"]}, "a tool")
            self._insert(tx, "tool_versions", tenant, {**version, "tool_id": tool_id, "version": 1}, "a tool version")
            self._put_secrets(tx, tenant, tool_id, secrets)

        self._write(body, tenant)

    def add_tool_version(self, tenant: str, tool_id: str, version: ToolVersionRow,
                         secrets: list[SecretRow] | None) -> int:
        """Store the next version of a tool; its number."""

        def body(tx: Tx) -> int:
            # the UPDATE takes the tool's row lock first, so concurrent versions get distinct numbers
            if tx.run("UPDATE tools SET version = version + 1 WHERE tenant_id = ? AND id = ?", (tenant, tool_id)) == 0:
                raise NotFoundError("tool", tool_id)
            found = tx.rows("SELECT version FROM tools WHERE tenant_id = ? AND id = ?", (tenant, tool_id))
            number = int(found[0]["version"])
            self._insert(tx, "tool_versions", tenant, {**version, "tool_id": tool_id, "version": number},
                         "a tool version")
            if secrets is not None:
                tx.run("DELETE FROM tool_secrets WHERE tenant_id = ? AND tool_id = ?", (tenant, tool_id))
                self._put_secrets(tx, tenant, tool_id, secrets)
            return number

        return self._write(body)

    @staticmethod
    def _put_secrets(tx: Tx, tenant: str, tool_id: str, secrets: list[SecretRow]) -> None:
        now = utcnow()
        if secrets:
            tx.run_many(
                "INSERT INTO tool_secrets (tenant_id, tool_id, name, ciphertext, masked, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(tenant, tool_id, s["name"], s["ciphertext"], s["masked"], now) for s in secrets],
            )

    def get_tool(self, tenant: str, tool_id: str, version: int | None = None) -> ToolRow:
        """A tool of the tenant at ``version`` (default: the latest)."""
        condition = "v.version = ?" if version is not None else "v.version = t.version"
        params: tuple[Any, ...] = (tenant, tool_id, version) if version is not None else (tenant, tool_id)
        rows = self._rows("tool_versions", f"{_TOOL_SELECT} WHERE t.tenant_id = ? AND t.id = ? AND {condition}", params)
        if not rows:
            exists = "SELECT 1 AS found FROM tools WHERE tenant_id = ? AND id = ?"
            if version is not None and self._rows("tools", exists, (tenant, tool_id)):
                raise NotFoundError("tool version", f"{tool_id}@{version}")
            raise NotFoundError("tool", tool_id)
        return rows[0]  # type: ignore[return-value]

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

    def find_tool(self, tenant: str, name: str) -> ToolRow | None:
        """The tenant's tool named ``name`` at its latest version, or ``None``."""
        sql = f"{_TOOL_SELECT} WHERE t.tenant_id = ? AND t.name = ? AND v.version = t.version"
        rows = self._rows("tool_versions", sql, (tenant, name))
        return rows[0] if rows else None  # type: ignore[return-value]

    def delete_tool(self, tenant: str, tool_id: str) -> None:
        """Delete one tool of the tenant with its versions and secrets."""

        def body(tx: Tx) -> None:
            if tx.run("DELETE FROM tools WHERE tenant_id = ? AND id = ?", (tenant, tool_id)) == 0:
                raise NotFoundError("tool", tool_id)
            tx.run("DELETE FROM tool_secrets WHERE tenant_id = ? AND tool_id = ?", (tenant, tool_id))

        self._write(body)

    def tool_secrets(self, tenant: str, tool_id: str) -> list[SecretRow]:
        """The secrets the tenant gave a tool."""
        return self._rows(  # type: ignore[return-value]
            "tool_secrets",
            "SELECT name, ciphertext, masked FROM tool_secrets WHERE tenant_id = ? AND tool_id = ? ORDER BY name",
            (tenant, tool_id),
        )

    def all_tool_secrets(self, tenant: str) -> dict[str, list[SecretRow]]:
        """The secrets of every tool of the tenant, by tool id."""
        found: dict[str, list[SecretRow]] = {}
        for row in self._rows("tool_secrets", "SELECT tool_id, name, ciphertext, masked FROM tool_secrets"
                              " WHERE tenant_id = ? ORDER BY tool_id, name", (tenant,)):
            found.setdefault(row.pop("tool_id"), []).append(row)  # type: ignore[arg-type]
        return found

    # -- LLM configurations -----------------------------------------------------------------------

    def add_llm(self, tenant: str, row: LLMRow, *, max_llms: int, fallbacks: Sequence[str] = ()) -> None:
        """Store an LLM configuration with its fallbacks, within ``max_llms``."""

        def body(tx: Tx) -> None:
            self._check_count(tx, "llms", tenant, "max_llms", max_llms, "the number of LLM configurations")
            self._insert(tx, "llms", tenant, {k: v for k, v in row.items() if k != "fallbacks"}, "an LLM configuration")
            self._put_fallbacks(tx, tenant, row["id"], fallbacks)

        self._write(body, tenant)

    def update_llm(self, tenant: str, llm_id: str, fields: dict[str, Any], fallbacks: Sequence[str] | None = None) -> None:
        """Change an LLM configuration (and its fallbacks when given); reset its breaker."""
        values = {k: (json.dumps(v) if k in _JSON["llms"] and v is not None else v) for k, v in fields.items()}
        unknown = set(values) - _LLM_UPDATABLE
        if unknown:
            raise ValueError(f"not updatable columns of llms: {sorted(unknown)}")

        def body(tx: Tx) -> None:
            if not tx.rows("SELECT 1 AS found FROM llms WHERE tenant_id = ? AND id = ?", (tenant, llm_id)):
                raise NotFoundError("llm", llm_id)
            if values:
                try:
                    tx.run(f"UPDATE llms SET {', '.join(f'{column} = ?' for column in values)}"
                           " WHERE tenant_id = ? AND id = ?", (*values.values(), tenant, llm_id))
                except Exception as exc:
                    if self._name_conflict(exc):
                        raise ConflictError(
                            f"this tenant already has an LLM configuration named {fields.get('name')!r}") from None
                    raise
            if fallbacks is not None:
                tx.run("DELETE FROM llm_fallbacks WHERE tenant_id = ? AND llm_id = ?", (tenant, llm_id))
                self._put_fallbacks(tx, tenant, llm_id, fallbacks)
                check_no_cycle(self._fallback_graph(tx, tenant), llm_id)
            tx.run("DELETE FROM llm_breakers WHERE tenant_id = ? AND llm_id = ?", (tenant, llm_id))

        self._write(body, tenant)

    @staticmethod
    def _put_fallbacks(tx: Tx, tenant: str, llm_id: str, fallbacks: Sequence[str]) -> None:
        for position, fallback_id in enumerate(fallbacks):
            if not tx.rows("SELECT 1 AS found FROM llms WHERE tenant_id = ? AND id = ?", (tenant, fallback_id)):
                raise NotFoundError("llm", fallback_id)
            tx.run("INSERT INTO llm_fallbacks (tenant_id, llm_id, position, fallback_id) VALUES (?, ?, ?, ?)",
                   (tenant, llm_id, position, fallback_id))

    @staticmethod
    def _fallback_graph(tx: Tx, tenant: str, llm_id: str | None = None) -> dict[str, list[str]]:
        sql = "SELECT llm_id, fallback_id FROM llm_fallbacks WHERE tenant_id = ?"
        params: tuple[Any, ...] = (tenant,)
        if llm_id is not None:
            sql, params = sql + " AND llm_id = ?", (tenant, llm_id)
        graph: dict[str, list[str]] = {}
        for row in tx.rows(sql + " ORDER BY llm_id, position", params):
            graph.setdefault(row["llm_id"], []).append(row["fallback_id"])
        return graph

    def llm_fallback_graph(self, tenant: str) -> dict[str, list[str]]:
        """Every configuration of the tenant that has fallbacks -> their ids, in order."""
        with self._read() as tx:
            return self._fallback_graph(tx, tenant)

    def get_llm(self, tenant: str, llm_id: str) -> LLMRow:
        """One LLM configuration of the tenant, with its fallbacks."""
        with self._read() as tx:
            rows = decode("llms", tx.rows("SELECT * FROM llms WHERE tenant_id = ? AND id = ?", (tenant, llm_id)))
            if not rows:
                raise NotFoundError("llm", llm_id)
            row = rows[0]
            row.pop("tenant_id", None)
            row["fallbacks"] = self._fallback_graph(tx, tenant, llm_id).get(llm_id, [])
        return row  # type: ignore[return-value]

    def list_llms(self, tenant: str) -> list[LLMRow]:
        """The tenant's LLM configurations with their fallbacks, oldest first."""
        with self._read() as tx:
            rows = decode("llms", tx.rows("SELECT * FROM llms WHERE tenant_id = ? ORDER BY created_at, id", (tenant,)))
            graph = self._fallback_graph(tx, tenant)
        for row in rows:
            row.pop("tenant_id", None)
            row["fallbacks"] = graph.get(row["id"], [])
        return rows  # type: ignore[return-value]

    def delete_llm(self, tenant: str, llm_id: str) -> None:
        """Delete one LLM configuration of the tenant (its fallbacks, breaker and cache rows go with it)."""

        def body(tx: Tx) -> None:
            users = [row["llm_id"] for row in tx.rows(
                "SELECT llm_id FROM llm_fallbacks WHERE tenant_id = ? AND fallback_id = ? ORDER BY llm_id",
                (tenant, llm_id))]
            if users and tx.rows("SELECT 1 AS found FROM llms WHERE tenant_id = ? AND id = ?", (tenant, llm_id)):
                raise ConflictError(
                    f"LLM configuration {llm_id!r} is a fallback of {', '.join(users)}; remove it from their"
                    " fallbacks first (update_llm(..., fallbacks=[...]))"
                )
            for table in ("llm_fallbacks", "llm_breakers", "llm_cache"):
                tx.run(f"DELETE FROM {table} WHERE tenant_id = ? AND llm_id = ?", (tenant, llm_id))
            if tx.run("DELETE FROM llms WHERE tenant_id = ? AND id = ?", (tenant, llm_id)) == 0:
                raise NotFoundError("llm", llm_id)

        self._write(body)

    # -- LLM calls: attempts, circuit breakers, response cache ------------------------------------

    def add_llm_attempt(self, tenant: str, row: LLMAttemptRow, *, reservation: str | None = None) -> None:
        """Record one attempt of an LLM call of a run, settling the reservation it held."""

        def body(tx: Tx) -> None:
            if reservation is not None:
                tx.run("DELETE FROM llm_reservations WHERE tenant_id = ? AND id = ?", (tenant, reservation))
            self._insert(tx, "llm_attempts", tenant, dict(row), "an LLM attempt")

        self._write(body)

    def reserve_llm_call(self, tenant: str, row: ReservationRow, budgets: BudgetLimits) -> None:
        """Hold what an attempt about to be sent may cost, if every budget of the tenant has room."""

        def body(tx: Tx) -> None:
            now = datetime.now(timezone.utc)
            self._check_budgets(tx, tenant, budgets, now)
            tx.run("DELETE FROM llm_reservations WHERE tenant_id = ? AND expires_at <= ?", (tenant, iso(now)))
            self._insert(tx, "llm_reservations", tenant, dict(row), "a reservation")

        self._write(body, tenant)

    def release_reservation(self, tenant: str, reservation: str) -> None:
        """Drop a reservation whose attempt was never recorded."""
        self._write(lambda tx: tx.run("DELETE FROM llm_reservations WHERE tenant_id = ? AND id = ?",
                                      (tenant, reservation)))

    @classmethod
    def _check_budgets(cls, tx: Tx, tenant: str, budgets: BudgetLimits, now: datetime) -> None:
        """Raise :class:`QuotaExceededError` when a budget of the tenant has no room left at ``now``."""
        error = over_budget(budgets, cls._spending(tx, tenant, budgets, now), now)
        if error is not None:
            raise error

    @staticmethod
    def _spending(tx: Tx, tenant: str, budgets: BudgetLimits, now: datetime) -> Spending:
        """What the tenant's attempts spent in the UTC day and month of ``now`` (the month only when
        a monthly budget needs it) and what unexpired reservations hold, read in one statement (one
        snapshot: an attempt settled meanwhile is counted once)."""
        day = iso(day_start(now))
        since = iso(month_start(now)) if "budget_usd_per_month" in budgets else day
        row = tx.rows(
            "SELECT COALESCE(SUM(CASE WHEN started_at >= ? THEN cost_usd END), 0) AS usd_day,"
            " COALESCE(SUM(cost_usd), 0) AS usd_month,"
            " COALESCE(SUM(CASE WHEN started_at >= ? THEN input_tokens + output_tokens END), 0) AS tokens_day,"
            " (SELECT COALESCE(SUM(cost_usd), 0) FROM llm_reservations WHERE tenant_id = ? AND expires_at > ?)"
            " AS held_usd,"
            " (SELECT COALESCE(SUM(tokens), 0) FROM llm_reservations WHERE tenant_id = ? AND expires_at > ?)"
            " AS held_tokens"
            " FROM llm_attempts WHERE tenant_id = ? AND started_at >= ?",
            (day, day, tenant, iso(now), tenant, iso(now), tenant, since),
        )[0]
        return Spending(usd_day=float(row["usd_day"]), usd_month=float(row["usd_month"]),
                        tokens_day=int(row["tokens_day"]), held_usd=float(row["held_usd"]),
                        held_tokens=int(row["held_tokens"]))

    def list_llm_attempts(self, tenant: str, run_id: str) -> list[LLMAttemptRow]:
        """The attempts of one of the tenant's runs, in order."""
        return self._of_run("llm_attempts", tenant, run_id)  # type: ignore[return-value]

    def _of_run(self, table: str, tenant: str, run_id: str) -> list[dict[str, Any]]:
        """The rows of ``table`` that belong to one of the tenant's runs, by ``seq``, without the tenant."""
        rows = self._rows(table, f"SELECT * FROM {table} WHERE tenant_id = ? AND run_id = ? ORDER BY seq",
                          (tenant, run_id))
        for row in rows:
            row.pop("tenant_id", None)
        return rows

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
        """Read, change and store a breaker in one transaction; the tenant's writes that take its
        lock (this one included) are serialized, so concurrent processes see each other's changes."""

        def body(tx: Tx) -> BreakerRow | None:
            found = tx.rows("SELECT * FROM llm_breakers WHERE tenant_id = ? AND llm_id = ?", (tenant, llm_id))
            current = _breaker(found[0]) if found else None
            new = change(current)
            if new is None:
                return current
            tx.run(
                "INSERT INTO llm_breakers (tenant_id, llm_id, state, failures, window_start, open_until, trial_until,"
                " last_error, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (tenant_id, llm_id) DO UPDATE SET state = excluded.state, failures = excluded.failures,"
                " window_start = excluded.window_start, open_until = excluded.open_until,"
                " trial_until = excluded.trial_until, last_error = excluded.last_error, updated_at = excluded.updated_at",
                (tenant, llm_id, new["state"], new.get("failures", 0), new.get("window_start"), new.get("open_until"),
                 new.get("trial_until"), new.get("last_error"), new["updated_at"]),
            )
            return {**new, "llm_id": llm_id}

        return self._write(body, tenant)

    def get_cached_response(self, tenant: str, cache_key: str, now: float) -> CacheRow | None:
        """The tenant's unexpired cached response under ``cache_key``."""
        with self._read() as tx:
            found = tx.rows(
                "SELECT cache_key, llm_id, response, created_at, expires_at FROM llm_cache"
                " WHERE tenant_id = ? AND cache_key = ? AND expires_at > ?", (tenant, cache_key, now),
            )
        if not found:
            return None
        row = found[0]
        return {"cache_key": row["cache_key"], "llm_id": row["llm_id"], "response": json.loads(row["response"]),
                "created_at": row["created_at"], "expires_at": row["expires_at"]}

    def put_cached_response(self, tenant: str, row: CacheRow, *, max_entries: int) -> None:
        """Store a response, drop expired entries, evict the oldest beyond ``max_entries``."""

        def body(tx: Tx) -> None:
            tx.run(
                "INSERT INTO llm_cache (tenant_id, cache_key, llm_id, response, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, cache_key) DO UPDATE SET llm_id = excluded.llm_id,"
                " response = excluded.response, created_at = excluded.created_at, expires_at = excluded.expires_at",
                (tenant, row["cache_key"], row["llm_id"], json.dumps(row["response"]), row["created_at"],
                 row["expires_at"]),
            )
            tx.run("DELETE FROM llm_cache WHERE tenant_id = ? AND expires_at <= ?", (tenant, row["created_at"]))
            tx.run(  # keep the newest max_entries (ties at the boundary are kept too)
                "DELETE FROM llm_cache WHERE tenant_id = ? AND created_at < (SELECT created_at FROM llm_cache"
                " WHERE tenant_id = ? ORDER BY created_at DESC LIMIT 1 OFFSET ?)",
                (tenant, tenant, max(int(max_entries) - 1, 0)),
            )

        self._write(body)

    # -- secrets of every tenant (operators only) -------------------------------------------------

    def secrets_not_under(self, key_id: str) -> list[StoredSecret]:
        """Every ciphertext not under master key ``key_id``."""
        pattern = f"v1:{key_id}:%"
        with self._read() as tx:
            found = [
                StoredSecret("llm", row["tenant_id"], row["id"], "api_key", row["api_key_ciphertext"])
                for row in tx.rows("SELECT tenant_id, id, api_key_ciphertext FROM llms WHERE api_key_ciphertext IS NOT"
                                   " NULL AND api_key_ciphertext NOT LIKE ?", (pattern,))
            ]
            found += [
                StoredSecret("tool", row["tenant_id"], row["tool_id"], row["name"], row["ciphertext"])
                for row in tx.rows("SELECT tenant_id, tool_id, name, ciphertext FROM tool_secrets"
                                   " WHERE ciphertext NOT LIKE ?", (pattern,))
            ]
        return found

    def replace_secret(self, secret: StoredSecret, new: str) -> bool:
        """Swap one ciphertext for another if it is still the one read."""

        def body(tx: Tx) -> bool:
            if secret.kind == "llm":
                return tx.run(
                    "UPDATE llms SET api_key_ciphertext = ? WHERE tenant_id = ? AND id = ? AND api_key_ciphertext = ?",
                    (new, secret.tenant, secret.owner_id, secret.ciphertext),
                ) == 1
            return tx.run(
                "UPDATE tool_secrets SET ciphertext = ? WHERE tenant_id = ? AND tool_id = ? AND name = ?"
                " AND ciphertext = ?",
                (new, secret.tenant, secret.owner_id, secret.name, secret.ciphertext),
            ) == 1

        return self._write(body)

    # -- runs -------------------------------------------------------------------------------------

    def start_run(self, tenant: str, row: RunRow, *, quota: RunQuota) -> None:
        """Record a started run, within the tenant's concurrency and rate limits (stale runs of the
        tenant are marked failed first, and no longer count)."""

        def body(tx: Tx) -> None:
            now = datetime.now(timezone.utc)
            running = tx.rows(_RUNNING, (tenant,))
            in_progress = len(running) - self._mark_stale(tx, tenant, running, now)
            recent = tx.rows("SELECT COUNT(*) AS n FROM runs WHERE tenant_id = ? AND started_at > ?",
                             (tenant, iso(now - timedelta(minutes=1))))
            for limit, count, what in (("max_concurrent_runs", in_progress, "the runs in progress"),
                                       ("runs_per_minute", recent[0]["n"], "the runs started in the last minute")):
                allowed = quota[limit]  # type: ignore[literal-required]
                if count + 1 > allowed:
                    raise exceeded(limit, count + 1, allowed, what)
            budgets = quota.get("budgets")
            if budgets:
                self._check_budgets(tx, tenant, budgets, now)
            self._insert(tx, "runs", tenant, dict(row), "a run")

        self._write(body, tenant)

    @staticmethod
    def _mark_stale(tx: Tx, tenant: str, running: list[dict[str, Any]], now: datetime) -> int:
        """Mark ``failed`` those of ``running`` that can no longer be running; how many."""
        marked = 0
        for run in running:
            reason = stale_reason(run, now)
            if reason is not None:
                marked += tx.run(
                    "UPDATE runs SET status = 'failed', error = ?, finished_at = ? WHERE tenant_id = ? AND id = ?"
                    " AND status = 'running'", (reason, now.isoformat(timespec="microseconds"), tenant, run["id"]),
                )
        return marked

    def _reap(self, tenant: str) -> None:
        """Mark the tenant's stale runs failed; a read when there are none."""
        with self._read() as tx:
            running = tx.rows(_RUNNING, (tenant,))
        now = datetime.now(timezone.utc)
        if any(stale_reason(run, now) is not None for run in running):
            self._write(lambda tx: self._mark_stale(tx, tenant, tx.rows(_RUNNING, (tenant,)), now))

    def finish_run(self, tenant: str, run_id: str, fields: dict[str, Any]) -> RunRow:
        """Store a run's outcome; return the record."""
        values = {k: (json.dumps(v) if k in _JSON["runs"] else v) for k, v in fields.items()}
        unknown = set(values) - set(_RUN_COLUMNS.replace(" ", "").split(","))
        if unknown:
            raise ValidationError("fields", f"not run columns: {sorted(unknown)}")

        def body(tx: Tx) -> None:
            changed = tx.run(
                f"UPDATE runs SET {', '.join(f'{column} = ?' for column in values)} WHERE tenant_id = ? AND id = ?",
                (*values.values(), tenant, run_id),
            )
            if changed == 0:
                raise NotFoundError("run", run_id)

        self._write(body)
        return self._run(tenant, run_id)

    def _runs(self, where: str, params: tuple[Any, ...]) -> list[RunRow]:
        """Run records with their cost (``None`` when an attempt is unpriced)."""
        rows = self._rows("runs", f"SELECT {_RUN_COLUMNS}, {_RUN_COST} FROM runs {where}", params)
        for row in rows:
            row["cost_usd"] = None if row["unpriced_calls"] else float(row["cost_usd"])
            row["unpriced_calls"] = int(row["unpriced_calls"])
        return rows  # type: ignore[return-value]

    def _run(self, tenant: str, run_id: str) -> RunRow:
        rows = self._runs("WHERE tenant_id = ? AND id = ?", (tenant, run_id))
        if not rows:
            raise NotFoundError("run", run_id)
        return rows[0]

    def get_run(self, tenant: str, run_id: str) -> RunRow:
        """One run record of the tenant."""
        self._reap(tenant)
        return self._run(tenant, run_id)

    def list_runs(self, tenant: str, *, limit: int) -> list[RunRow]:
        """The tenant's run records, newest first."""
        self._reap(tenant)
        return self._runs("WHERE tenant_id = ? ORDER BY started_at DESC LIMIT ?", (tenant, int(limit)))

    # -- usage ------------------------------------------------------------------------------------

    def add_tool_call(self, tenant: str, row: ToolCallRow) -> None:
        """Record one tool call of a run."""
        self._write(lambda tx: self._insert(tx, "tool_calls", tenant, dict(row), "a tool call"))

    def list_tool_calls(self, tenant: str, run_id: str) -> list[ToolCallRow]:
        """The tool calls of one of the tenant's runs, in order."""
        return self._of_run("tool_calls", tenant, run_id)  # type: ignore[return-value]

    def usage(self, tenant: str | None, *, since: str, until: str, group_by: str) -> list[dict[str, Any]]:
        """Usage from ``since`` to ``until`` grouped by ``group_by``, for one tenant or (``None``) all."""
        if group_by not in _USAGE_GROUPS:
            raise ValidationError("group_by", f"{group_by!r} is not one of {', '.join(_USAGE_GROUPS)}")
        table, alias, keys, join, order, metrics = _USAGE_GROUPS[group_by]
        where, params = f"{alias}.started_at >= ? AND {alias}.started_at < ?", (since, until)
        if tenant is None:
            keys = [f"{alias}.tenant_id AS tenant", *keys]
        else:
            where, params = f"{alias}.tenant_id = ? AND {where}", (tenant, *params)
        group = ", ".join(key.split(" AS ")[0] for key in keys if not key.startswith("MAX("))
        order = f"{alias}.tenant_id, {order}" if tenant is None else order
        return self._rows(table, f"SELECT {', '.join(keys)}, {metrics} FROM {table} {alias}{join} WHERE {where}"
                                 f" GROUP BY {group} ORDER BY {order}", params)

    # -- limits and executor options --------------------------------------------------------------

    def get_limits(self, tenant: str) -> dict[str, int]:
        """The tenant's stored limit overrides."""
        rows = self._rows("tenant_limits", "SELECT * FROM tenant_limits WHERE tenant_id = ?", (tenant,))
        if not rows:
            return {}
        return {k: v for k, v in rows[0].items() if k not in ("tenant_id", "updated_at") and v is not None}

    def set_limits(self, tenant: str, values: dict[str, int | None]) -> None:
        """Store limit overrides (column names were checked against :class:`~mt_core.limits.Limits`)."""

        def body(tx: Tx) -> None:
            now = utcnow()
            tx.run("INSERT INTO tenant_limits (tenant_id, updated_at) VALUES (?, ?) ON CONFLICT (tenant_id) DO NOTHING",
                   (tenant, now))
            for column, value in values.items():
                tx.run(f"UPDATE tenant_limits SET {column} = ?, updated_at = ? WHERE tenant_id = ?", (value, now, tenant))

        self._write(body, tenant)

    def get_executor_options(self, tenant: str) -> dict[str, Any]:
        """The tenant's executor options."""
        rows = self._rows("tenant_executor_options", "SELECT options FROM tenant_executor_options WHERE tenant_id = ?",
                          (tenant,))
        return json.loads(rows[0]["options"]) if rows else {}

    def set_executor_options(self, tenant: str, options: dict[str, Any]) -> None:
        """Replace the tenant's executor options."""
        self._write(lambda tx: tx.run(
            "INSERT INTO tenant_executor_options (tenant_id, options, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (tenant_id) DO UPDATE SET options = excluded.options, updated_at = excluded.updated_at",
            (tenant, json.dumps(options), utcnow()),
        ), tenant)

    # -- the package tool catalog -----------------------------------------------------------------

    def catalog(self) -> dict[str, CatalogRow]:
        """Every package tool ever recorded, by name."""
        return {row["name"]: row for row in self._rows("package_tools", "SELECT * FROM package_tools ORDER BY name")}  # type: ignore[misc]

    def record_catalog(self, entries: list[CatalogRow]) -> None:
        """Record new package tools and new metadata of known ones."""
        now = utcnow()
        self._write(lambda tx: tx.run_many(
            "INSERT INTO package_tools (name, plugin, distribution, version, description, inputs, output_type,"
            " content_sha256, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET plugin = excluded.plugin, distribution = excluded.distribution,"
            " version = excluded.version, description = excluded.description, inputs = excluded.inputs,"
            " output_type = excluded.output_type, content_sha256 = excluded.content_sha256,"
            " updated_at = excluded.updated_at",
            [(e["name"], e["plugin"], e["distribution"], e["version"], e["description"], json.dumps(e["inputs"]),
              e["output_type"], e["content_sha256"], now) for e in entries],
        ))

    def enabled_package_tools(self, tenant: str) -> list[CatalogRow]:
        """The package tools the tenant has enabled, by name."""
        return self._rows(  # type: ignore[return-value]
            "package_tools",
            "SELECT p.*, e.enabled_at, e.settings FROM tenant_package_tools e JOIN package_tools p"
            " ON p.name = e.tool_name WHERE e.tenant_id = ? ORDER BY p.name",
            (tenant,),
        )

    def enable_package_tool(self, tenant: str, name: str, settings: dict[str, Any] | None,
                            secrets: list[SecretRow] | None) -> None:
        """Enable a package tool for the tenant, or change its settings and secrets."""
        tool_id = f"pkg:{name}"

        def body(tx: Tx) -> None:
            tx.run(
                "INSERT INTO tenant_package_tools (tenant_id, tool_name, enabled_at, settings) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (tenant_id, tool_name) DO NOTHING",
                (tenant, name, utcnow(), json.dumps(settings or {})),
            )
            if settings is not None:
                tx.run("UPDATE tenant_package_tools SET settings = ? WHERE tenant_id = ? AND tool_name = ?",
                       (json.dumps(settings), tenant, name))
            if secrets is not None:
                tx.run("DELETE FROM tool_secrets WHERE tenant_id = ? AND tool_id = ?", (tenant, tool_id))
                self._put_secrets(tx, tenant, tool_id, secrets)

        self._write(body, tenant)

    def disable_package_tool(self, tenant: str, name: str) -> bool:
        """Disable a package tool for the tenant; its settings and secrets go with it."""

        def body(tx: Tx) -> bool:
            removed = tx.run("DELETE FROM tenant_package_tools WHERE tenant_id = ? AND tool_name = ?", (tenant, name))
            tx.run("DELETE FROM tool_secrets WHERE tenant_id = ? AND tool_id = ?", (tenant, f"pkg:{name}"))
            return removed > 0

        return self._write(body)

    # -- whole installations ----------------------------------------------------------------------

    def count_rows(self) -> dict[str, int]:
        """The number of rows of every table."""
        with self._read() as tx:
            return {table: int(tx.rows(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"]) for table in TABLES}

    def export_rows(self, tables: list[str] | None = None, *,
                    batch: int = 1000) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """Every row of ``tables`` as stored, in batches, from one snapshot."""
        chosen = list(TABLES) if tables is None else [_known_table(t) for t in tables]
        with self._snapshot() as tx:
            for table in chosen:
                order = ", ".join(TABLES[table])
                last: tuple[Any, ...] | None = None
                while True:  # keyset pagination: each batch starts after the last key of the previous one
                    where, params = ("", ()) if last is None else (
                        f" WHERE ({order}) > ({', '.join('?' for _ in last)})", last)
                    rows = tx.rows(f"SELECT * FROM {table}{where} ORDER BY {order} LIMIT {int(batch)}", params)
                    if not rows:
                        break
                    yield table, rows
                    last = tuple(rows[-1][column] for column in TABLES[table])
                    if len(rows) < batch:
                        break

    def import_rows(self, batches: Iterable[tuple[str, list[dict[str, Any]]]]) -> dict[str, int]:
        """Write exported rows in one transaction; a row whose key exists is overwritten."""

        def body(tx: Tx) -> dict[str, int]:
            written: dict[str, int] = {}
            known: dict[str, list[str]] = {}
            for table, rows in batches:
                if not rows:
                    continue
                columns = list(rows[0])
                if table not in known:
                    known[table] = self._columns(tx, _known_table(table))
                missing = [c for c in columns if c not in known[table]]
                if missing:
                    raise ValidationError("rows", f"table {table} has no column {missing[0]!r} in this database")
                key = TABLES[table]
                rest = [c for c in columns if c not in key]
                action = (f"DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in rest)}" if rest else "DO NOTHING")
                tx.run_many(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
                    f" ON CONFLICT ({', '.join(key)}) {action}",
                    [tuple(row[c] for c in columns) for row in rows],
                )
                written[table] = written.get(table, 0) + len(rows)
            return written

        return self._write(body, retry=False)  # the batches can be read only once


_LLM_METRICS = (
    "COUNT(DISTINCT a.run_id) AS runs, COUNT(DISTINCT a.run_id || ':' || a.call_index) AS calls,"
    " COUNT(*) AS attempts, SUM(a.input_tokens) AS input_tokens, SUM(a.output_tokens) AS output_tokens,"
    " SUM(a.cached_tokens) AS cached_tokens, SUM(a.cost_usd) AS cost_usd,"
    " SUM(CASE WHEN a.cost_usd IS NULL THEN 1 ELSE 0 END) AS unpriced_calls"
)
# group_by -> (table, alias, key columns, join, order, metrics); a MAX(...) key is shown, not grouped by.
_USAGE_GROUPS: dict[str, tuple[str, str, list[str], str, str, str]] = {
    "day": ("llm_attempts", "a", ["substr(a.started_at, 1, 10) AS day"], "", "day", _LLM_METRICS),
    "model": ("llm_attempts", "a", ["a.provider", "a.model"], "", "a.provider, a.model", _LLM_METRICS),
    "llm": ("llm_attempts", "a", ["a.llm_id", "MAX(l.name) AS llm_name"],
            " LEFT JOIN llms l ON l.tenant_id = a.tenant_id AND l.id = a.llm_id", "a.llm_id", _LLM_METRICS),
    "run": ("llm_attempts", "a", ["a.run_id", "MAX(r.status) AS status", "MAX(r.started_at) AS started_at"],
            " JOIN runs r ON r.tenant_id = a.tenant_id AND r.id = a.run_id", "MAX(r.started_at), a.run_id",
            _LLM_METRICS),
    "tool": ("tool_calls", "t", ["t.tool_id", "MAX(t.name) AS name"], "", "t.tool_id",
             "COUNT(DISTINCT t.run_id) AS runs, COUNT(*) AS calls,"
             " SUM(CASE WHEN t.outcome = 'error' THEN 1 ELSE 0 END) AS errors, SUM(t.duration_ms) AS duration_ms"),
}


def _known_table(table: str) -> str:
    if table not in TABLES:
        raise ValidationError("table", f"{table!r} is not a table of mt-core (tables: {', '.join(TABLES)})")
    return table


def _breaker(row: dict[str, Any]) -> BreakerRow:
    """A breaker row without its tenant."""
    return {key: row[key] for key in ("llm_id", "state", "failures", "window_start", "open_until", "trial_until",
                                      "last_error", "updated_at")}  # type: ignore[return-value]
