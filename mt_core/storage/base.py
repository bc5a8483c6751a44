"""The storage interface: every operation the rest of mt-core may ask of a database.

Every operation on a tenant's rows takes the tenant; there is no lookup by id alone. An id that
belongs to another tenant behaves exactly like one that does not exist (the same
:class:`~mt_core.errors.NotFoundError`). Limits are enforced inside the write that would exceed
them, in the same transaction, so they hold across threads and processes. No SQL and no
connection leaves a storage implementation.
"""

from __future__ import annotations

from datetime import datetime, timezone
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple, Protocol, TypedDict


def utcnow() -> str:
    """The current UTC time as ISO 8601 with microseconds (sorts as text)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class ToolVersionRow(TypedDict, total=False):
    """One immutable version of a tenant's tool (JSON columns decoded)."""

    version: int
    description: str
    kind: str
    entry: str | None
    source: str
    source_sha256: str
    inputs: dict[str, Any]
    output_type: str
    output_schema: dict[str, Any] | None
    dependencies: list[str]
    settings: dict[str, Any]
    created_at: str


class ToolRow(ToolVersionRow, total=False):
    """A tenant's tool: its identity with one of its versions (``version``); ``latest_version``
    and ``created_at`` are the tool's, ``version_created_at`` the version's."""

    id: str
    name: str
    latest_version: int
    version_created_at: str


class SecretRow(TypedDict):
    """One secret of a tool for a tenant: the variable name, its ciphertext and its mask."""

    name: str
    ciphertext: str
    masked: str | None


class StoredSecret(NamedTuple):
    """A ciphertext somewhere in the database (operators only: key rotation)."""

    kind: str  # "llm" (an LLM configuration's key) or "tool" (a tool secret)
    tenant: str
    owner_id: str  # the llm id or the tool id
    name: str  # "api_key", or the tool secret's variable name
    ciphertext: str


class LLMRow(TypedDict, total=False):
    """A tenant's LLM configuration as stored; the key only as ciphertext and mask."""

    id: str
    name: str
    provider: str
    model_name: str
    base_url: str | None
    options: dict[str, Any]
    api_key_ciphertext: str | None
    api_key_masked: str | None
    created_at: str
    prices: dict[str, float] | None  # prices overriding genai-prices (see mt_core.prices)
    fallbacks: list[str]  # ids of the tenant's configurations to try next, in order (table llm_fallbacks)


class LLMAttemptRow(TypedDict, total=False):
    """One attempt of one LLM call of a run (table ``llm_attempts``).

    ``outcome`` is ``ok``, ``retried`` (failed; the same configuration was tried again),
    ``fell_back`` (failed; the call moved on to the next configuration), ``failed`` (failed; nothing
    was left to try), ``cache_hit`` (answered from the response cache, no request) or ``skipped``
    (its circuit breaker was open, no request). ``cost_usd`` is what it cost in US dollars (0 when
    it billed no tokens, ``None`` when nobody has a price for its model) and ``priced_by`` what
    priced it (see :mod:`mt_core.prices`).
    """

    run_id: str
    seq: int
    call_index: int
    llm_id: str
    provider: str
    model: str
    base_url: str | None
    outcome: str
    error_type: str | None
    status_code: int | None
    error: str | None
    latency_ms: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    started_at: str
    finished_at: str
    cost_usd: float | None
    priced_by: str | None


class ToolCallRow(TypedDict, total=False):
    """One call of a tool in a run (table ``tool_calls``), as the sandbox that ran it reported it."""

    run_id: str
    seq: int
    tool_id: str
    tool_version: str | None
    name: str
    outcome: str  # ok or error
    error: str | None
    duration_ms: float
    started_at: str


class ReservationRow(TypedDict):
    """What an LLM attempt about to be sent may cost, held while it is in flight (table
    ``llm_reservations``; times are ISO 8601 UTC)."""

    id: str
    run_id: str
    tokens: int
    cost_usd: float
    created_at: str
    expires_at: str


class BudgetLimits(TypedDict, total=False):
    """A tenant's budgets as :meth:`Storage.start_run` and :meth:`Storage.reserve_llm_call` check
    them (a budget left out is not checked); see :mod:`mt_core.budgets`."""

    budget_usd_per_day: float
    budget_usd_per_month: float
    tokens_per_day: int


class BreakerRow(TypedDict, total=False):
    """The circuit breaker of one LLM configuration (table ``llm_breakers``); times are unix seconds."""

    llm_id: str
    state: str  # closed, open or half_open
    failures: int
    window_start: float | None
    open_until: float | None
    trial_until: float | None
    last_error: str | None
    updated_at: float


class CacheRow(TypedDict):
    """One cached LLM response (table ``llm_cache``); times are unix seconds."""

    cache_key: str
    llm_id: str
    response: dict[str, Any]
    created_at: float
    expires_at: float


class RunRow(TypedDict, total=False):
    """A run record. ``owner_*`` and ``deadline`` are written by :meth:`Storage.start_run` and never
    shown to tenants: who runs it (see :mod:`mt_core.owners`) and when it must have finished."""

    id: str
    llm_id: str
    tool_ids: list[str]
    tool_versions: dict[str, Any] | None
    query: str
    agent_type: str
    executor: str | None
    status: str
    output: str | None
    error: str | None
    input_tokens: int | None
    output_tokens: int | None
    steps: int | None
    duration_ms: int | None
    started_at: str
    finished_at: str | None
    cost_usd: float | None  # read only: the sum of its attempts' costs, None when one is unpriced
    unpriced_calls: int  # read only: its attempts that billed tokens nobody has a price for
    owner_host: str
    owner_boot_id: str
    owner_pid: int
    owner_start_time: str
    deadline: str


class CatalogRow(TypedDict, total=False):
    """A package tool in the global catalog: the metadata last recorded for it (by any process
    sharing the database). Whether a process can run it is not stored: ``available`` is filled
    in by :class:`~mt_core.catalog.Catalog` from that process's own plugins."""

    name: str
    plugin: str
    distribution: str | None
    version: str | None
    description: str
    inputs: dict[str, Any]
    output_type: str
    content_sha256: str
    available: bool
    updated_at: str
    enabled_at: str
    settings: dict[str, Any]


class _RunLimits(TypedDict):
    max_concurrent_runs: int
    runs_per_minute: int


class RunQuota(_RunLimits, total=False):
    """The run limits :meth:`Storage.start_run` enforces, and the tenant's budgets (optional)."""

    budgets: BudgetLimits


# Every table, parents first (the order a copy writes them in), with the columns of its key.
TABLES: dict[str, tuple[str, ...]] = {
    "tenants": ("id",),
    "tools": ("tenant_id", "id"),
    "tool_versions": ("tenant_id", "tool_id", "version"),
    "tool_secrets": ("tenant_id", "tool_id", "name"),
    "llms": ("tenant_id", "id"),
    "runs": ("tenant_id", "id"),
    "tenant_limits": ("tenant_id",),
    "tenant_executor_options": ("tenant_id",),
    "package_tools": ("name",),
    "tenant_package_tools": ("tenant_id", "tool_name"),
    "llm_fallbacks": ("tenant_id", "llm_id", "position"),
    "llm_attempts": ("tenant_id", "run_id", "seq"),
    "llm_breakers": ("tenant_id", "llm_id"),
    "llm_cache": ("tenant_id", "cache_key"),
    "tool_calls": ("tenant_id", "run_id", "seq"),
    "llm_reservations": ("tenant_id", "id"),
}


class Storage(Protocol):
    """What mt-core needs from a database. Implementations: :class:`~mt_core.storage.sqlite.SQLiteStorage`
    and :class:`~mt_core.storage.postgresql.PostgresStorage` (both on :class:`~mt_core.storage.sql.SQLStorage`)."""

    dialect: str  # "sqlite" or "postgresql"

    # -- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        """Release every connection."""

    def schema_versions(self) -> list[tuple[int, str]]:
        """The migrations recorded in this database, oldest first."""

    # -- tools --------------------------------------------------------------------------------
    def add_tool(self, tenant: str, tool_id: str, name: str, version: ToolVersionRow, secrets: list[SecretRow], *,
                 max_tools: int) -> None:
        """Store a new tool as version 1 with its secrets; :class:`QuotaExceededError` past
        ``max_tools``, :class:`ConflictError` for a taken name."""

    def add_tool_version(self, tenant: str, tool_id: str, version: ToolVersionRow,
                         secrets: list[SecretRow] | None) -> int:
        """Store the next version of a tool (``secrets`` replace the tool's when given); its number."""

    def get_tool(self, tenant: str, tool_id: str, version: int | None = None) -> ToolRow:
        """A tool at ``version`` (default: its latest); :class:`NotFoundError` when the tenant has no
        such tool or version."""

    def list_tools(self, tenant: str) -> list[ToolRow]:
        """The tenant's tools at their latest versions, oldest first."""

    def list_tool_versions(self, tenant: str, tool_id: str) -> list[dict[str, Any]]:
        """``version``, ``created_at`` and ``source_sha256`` of every version of a tool, oldest first."""

    def find_tool(self, tenant: str, name: str) -> ToolRow | None:
        """The tenant's tool named ``name`` at its latest version, or ``None``."""

    def delete_tool(self, tenant: str, tool_id: str) -> None:
        """Delete a tool, all its versions and its secrets; :class:`NotFoundError` when it is not the tenant's."""

    def tool_secrets(self, tenant: str, tool_id: str) -> list[SecretRow]:
        """The secrets the tenant gave a tool (its own, or a package tool ``pkg:<name>``)."""

    def all_tool_secrets(self, tenant: str) -> dict[str, list[SecretRow]]:
        """The secrets of every tool of the tenant, by tool id (one read for a whole tool list)."""

    # -- LLM configurations -------------------------------------------------------------------
    def add_llm(self, tenant: str, row: LLMRow, *, max_llms: int, fallbacks: Sequence[str] = ()) -> None:
        """Store an LLM configuration with its fallbacks (ids of the tenant's configurations, in
        order); quota and name conflicts as for tools, :class:`NotFoundError` for a fallback that is
        not the tenant's."""

    def get_llm(self, tenant: str, llm_id: str) -> LLMRow:
        """One LLM configuration with its ``fallbacks``; :class:`NotFoundError` when it is not the tenant's."""

    def list_llms(self, tenant: str) -> list[LLMRow]:
        """The tenant's LLM configurations with their ``fallbacks``, oldest first."""

    def update_llm(self, tenant: str, llm_id: str, fields: dict[str, Any], fallbacks: Sequence[str] | None = None) -> None:
        """Change columns of an LLM configuration (``name``, ``provider``, ``model_name``, ``base_url``,
        ``options``, ``api_key_ciphertext``, ``api_key_masked``) and, when given, replace its
        fallbacks; reset its circuit breaker. One transaction. :class:`NotFoundError` when the
        configuration or a fallback is not the tenant's, :class:`LLMConfigError` (field ``fallbacks``)
        naming the cycle the new fallbacks would make, :class:`ConflictError` for a taken name."""

    def delete_llm(self, tenant: str, llm_id: str) -> None:
        """Delete an LLM configuration with its breaker and cached responses; :class:`NotFoundError`
        when it is not the tenant's, :class:`ConflictError` while another configuration lists it
        as a fallback."""

    def llm_fallback_graph(self, tenant: str) -> dict[str, list[str]]:
        """Every configuration of the tenant that has fallbacks -> their ids, in order."""

    # -- LLM calls: attempts, circuit breakers, response cache ---------------------------------
    def add_llm_attempt(self, tenant: str, row: LLMAttemptRow, *, reservation: str | None = None) -> None:
        """Record one attempt of an LLM call of a run (committed at once), and drop the
        reservation it held while in flight (:meth:`reserve_llm_call`), in the same transaction."""

    def reserve_llm_call(self, tenant: str, row: ReservationRow, budgets: BudgetLimits) -> None:
        """Hold what an attempt about to be sent may cost, if the tenant has room left in every
        budget: what its attempts spent in the UTC day (and month) plus what calls in flight hold
        must be below each limit; else :class:`QuotaExceededError` naming the budget, the spending
        and the limit, and nothing is written. One transaction under the tenant's lock, so that
        every process sharing the database sees the same spending. Drops expired reservations."""

    def release_reservation(self, tenant: str, reservation: str) -> None:
        """Drop a reservation whose attempt was never recorded."""

    def list_llm_attempts(self, tenant: str, run_id: str) -> list[LLMAttemptRow]:
        """The attempts of one of the tenant's runs, in order (``[]`` for none)."""

    def get_breakers(self, tenant: str, llm_ids: Sequence[str]) -> dict[str, BreakerRow]:
        """The stored breakers of these configurations, by id (a configuration without a row is closed)."""

    def update_breaker(self, tenant: str, llm_id: str,
                       change: Callable[[BreakerRow | None], BreakerRow | None]) -> BreakerRow | None:
        """Read a configuration's breaker, apply ``change`` and store what it returns, in one
        transaction that holds the row (``None`` from ``change`` writes nothing). Returns the row
        stored, or the row read when nothing was written. The atomic read-modify-write every
        process sharing the database relies on."""

    def get_cached_response(self, tenant: str, cache_key: str, now: float) -> CacheRow | None:
        """The tenant's cached response under ``cache_key`` if it has not expired at ``now``."""

    def put_cached_response(self, tenant: str, row: CacheRow, *, max_entries: int) -> None:
        """Store a response (replacing one under the same key), drop the tenant's expired entries
        and then its oldest beyond ``max_entries``, in one transaction."""

    # -- secrets of every tenant (operators only: key rotation) --------------------------------
    def secrets_not_under(self, key_id: str) -> list[StoredSecret]:
        """Every stored ciphertext (LLM keys, tool secrets) not encrypted under master key ``key_id``."""

    def replace_secret(self, secret: StoredSecret, new: str) -> bool:
        """Swap one ciphertext for another if it is still the one read; False when it changed meanwhile."""

    # -- runs ---------------------------------------------------------------------------------
    def start_run(self, tenant: str, row: RunRow, *, quota: RunQuota) -> None:
        """Record a run as started (``row`` names its owner and deadline); :class:`QuotaExceededError`
        (nothing written) past the quota. First marks ``failed`` every run of the tenant that can no
        longer be running (:func:`mt_core.owners.stale_reason`), so those stop counting."""

    def finish_run(self, tenant: str, run_id: str, fields: dict[str, Any]) -> RunRow:
        """Store a run's outcome and return the whole record."""

    def get_run(self, tenant: str, run_id: str) -> RunRow:
        """One run record; :class:`NotFoundError` when it is not the tenant's. Stale runs of the
        tenant are marked failed first, as by :meth:`start_run`."""

    def list_runs(self, tenant: str, *, limit: int) -> list[RunRow]:
        """The tenant's run records, newest first (stale runs marked failed first)."""

    # -- usage ----------------------------------------------------------------------------------
    def add_tool_call(self, tenant: str, row: ToolCallRow) -> None:
        """Record one tool call of a run (committed at once)."""

    def list_tool_calls(self, tenant: str, run_id: str) -> list[ToolCallRow]:
        """The tool calls of one of the tenant's runs, in order (``[]`` for none)."""

    def usage(self, tenant: str | None, *, since: str, until: str, group_by: str) -> list[dict[str, Any]]:
        """The tenant's usage from ``since`` (inclusive) to ``until`` (exclusive), ISO 8601 UTC,
        grouped by ``day``, ``model``, ``llm``, ``run`` (LLM attempts: runs, calls, attempts,
        tokens, cost, unpriced attempts) or ``tool`` (tool calls: runs, calls, errors, duration).
        ``tenant=None`` is every tenant's, each row with its ``tenant`` (operators only)."""

    # -- limits and executor options ----------------------------------------------------------
    def get_limits(self, tenant: str) -> dict[str, int]:
        """The tenant's stored limit overrides (only those set)."""

    def set_limits(self, tenant: str, values: dict[str, int | None]) -> None:
        """Store limit overrides (``None`` restores a default)."""

    def get_executor_options(self, tenant: str) -> dict[str, Any]:
        """The tenant's executor options (``{}`` when none are set)."""

    def set_executor_options(self, tenant: str, options: dict[str, Any]) -> None:
        """Replace the tenant's executor options."""

    # -- the package tool catalog (global) and its per-tenant enablement ----------------------
    def catalog(self) -> dict[str, CatalogRow]:
        """Every package tool ever recorded, by name."""

    def record_catalog(self, entries: list[CatalogRow]) -> None:
        """Record new package tools and new metadata of known ones, in one transaction."""

    def enabled_package_tools(self, tenant: str) -> list[CatalogRow]:
        """The package tools the tenant has enabled (with its settings and ``enabled_at``), by name."""

    def enable_package_tool(self, tenant: str, name: str, settings: dict[str, Any] | None,
                            secrets: list[SecretRow] | None) -> None:
        """Enable a package tool for the tenant, or change the settings and secrets given (``None``: keep)."""

    def disable_package_tool(self, tenant: str, name: str) -> bool:
        """Disable a package tool for the tenant (its settings and secrets go); False when it was not enabled."""

    # -- whole installations (operators only: ``mt db copy``) -----------------------------------
    def count_rows(self) -> dict[str, int]:
        """The number of rows of every table of :data:`TABLES`."""

    def export_rows(self, tables: list[str] | None = None, *,
                    batch: int = 1000) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """Every row of ``tables`` (default: all, parents first) as stored (JSON as text, ciphertexts
        untouched), in batches of ``(table, rows)``, read from one consistent snapshot."""

    def import_rows(self, batches: Iterable[tuple[str, list[dict[str, Any]]]]) -> dict[str, int]:
        """Write exported rows in one transaction (all or nothing); a row whose key exists is
        overwritten. Returns the rows written per table."""
