"""The framework object (:class:`MTCore`) and the per-tenant facade (:class:`Tenant`).

``MTCore`` owns an installation's parts (database, plugins, master key) and the capabilities
built on them (:mod:`~mt_core.tools`, :mod:`~mt_core.llms`, :mod:`~mt_core.runs`); ``Tenant``
only scopes them to one tenant.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .budgets import budget_limits
from .catalog import Catalog
from .config import Settings
from .executors import check_executor_options, choose_executor
from .limits import Limits, check_limit_values
from .llms import LLMs
from .netguard import NetworkPolicy
from .plugins import Plugins
from .runs import (
    DEFAULT_MAX_STEPS, DEFAULT_STEP_TIMEOUT, QueryResult, RunRequest, check_run_arguments, execute, run_record,
)
from .home import prepare_home
from .master_keys import open_secret_box
from .secrets import SecretBox, secret_context
from .storage import Storage, open_storage
from .tools import Tools, UNSET
from .usage import usage_report
from .validation import check_tenant

DEFAULT_TENANT = "default"


class MTCore:
    """One mt-core installation: a data directory, its database, its plugins and its master key.

    Nothing is opened or loaded until first use.

    Args:
        home: data directory; defaults to ``MT_HOME`` or ``./.mt``.
        settings: full settings; by default read from the environment and ``.env``.
        database_url: the database (``MT_DATABASE_URL``): ``sqlite:///path`` or ``postgresql://...``;
            by default ``<home>/mt.db``.
        tracer_provider: the OpenTelemetry tracer provider that runs' spans go to (the ``otel``
            extra; see :mod:`mt_core.telemetry`); by default the one OpenTelemetry returns when a
            run starts. mt-core never sets a global one.
    """

    def __init__(self, home: str | os.PathLike[str] | None = None, *, settings: Settings | None = None,
                 database_url: str | None = None, tracer_provider: Any = None) -> None:
        base = settings or Settings.from_env()
        if home is not None:
            base = dataclasses.replace(base, home=Path(home), home_is_default=False)
        if database_url is not None:
            base = dataclasses.replace(base, database_url=database_url)
        self.settings = base
        self.tracer_provider = tracer_provider
        self._lock = threading.RLock()  # lazy parts nest (the tools need storage and plugins)
        self._storage: Storage | None = None
        self._plugins: Plugins | None = None
        self._secrets: SecretBox | None = None
        self._catalog: Catalog | None = None
        self._tools: Tools | None = None
        self._llms: LLMs | None = None
        self._network_policy: NetworkPolicy | None = None

    def __repr__(self) -> str:
        return f"MTCore(home={str(self.settings.home)!r})"

    @property
    def home(self) -> Path:
        """The data directory."""
        return self.settings.home

    def _once(self, attribute: str, make: Callable[[], Any]) -> Any:
        """The value of ``attribute``, made by ``make()`` the first time (once, under the lock)."""
        value = getattr(self, attribute)
        if value is None:
            with self._lock:
                value = getattr(self, attribute)
                if value is None:
                    value = make()
                    setattr(self, attribute, value)
        return value

    @property
    def storage(self) -> Storage:
        """The database (opened and migrated on first use)."""
        def make() -> Storage:
            if self.settings.database_url is None:
                prepare_home(self.settings)  # the SQLite file lives in the data directory
            return open_storage(self.settings.database)

        return self._once("_storage", make)

    @property
    def plugins(self) -> Plugins:
        """The loaded plugins (discovered on first use)."""
        return self._once(
            "_plugins", lambda: Plugins(allow=self.settings.load_plugins, cache_dir=self.home / "cache").load()
        )

    @property
    def secrets(self) -> SecretBox:
        """The encryption of secrets at rest under the master key (``MT_MASTER_KEY`` or the key file)."""
        return self._once("_secrets", lambda: open_secret_box(self))

    @property
    def catalog(self) -> Catalog:
        """The package tools installed plugins provide."""
        return self._once("_catalog", lambda: Catalog(self.storage, self.plugins))

    @property
    def tools(self) -> Tools:
        """Tenants' tools (every method takes the tenant)."""
        return self._once("_tools", lambda: Tools(self.storage, self.plugins, self.catalog, lambda: self.secrets,
                                                  self.settings))

    @property
    def llms(self) -> LLMs:
        """Tenants' LLM configurations (every method takes the tenant)."""
        return self._once("_llms", lambda: LLMs(self.storage, self.plugins, lambda: self.secrets, self.settings,
                                                self.network_policy))

    @property
    def network_policy(self) -> NetworkPolicy:
        """Where requests to tenant-supplied URLs may connect (``MT_LLM_ALLOWED_NETWORKS``)."""
        return self._once("_network_policy", lambda: NetworkPolicy.from_strings(self.settings.llm_allowed_networks))

    def package_tools(self) -> list[dict[str, Any]]:
        """The global catalog of package tools installed plugins register (what tenants may enable)."""
        return self.catalog.all()

    def rotate_secrets(self) -> dict[str, int]:
        """Re-encrypt every stored secret (LLM keys, tool secrets) under the current master key.

        Run it with ``MT_MASTER_KEY`` set to the new key and ``MT_MASTER_KEY_PREVIOUS`` to the
        old one: reads accept both keys throughout, so nothing stops while it runs, and each
        value is swapped only if nobody changed it meanwhile. Returns counts.
        """
        box = self.secrets
        counts = {"rotated": 0, "skipped": 0}
        for secret in self.storage.secrets_not_under(box.current_key_id):
            context = secret_context(secret)
            plaintext = box.decrypt(secret.ciphertext, tenant=secret.tenant, context=context)
            fresh = box.encrypt(plaintext, tenant=secret.tenant, context=context)
            counts["rotated" if self.storage.replace_secret(secret, fresh) else "skipped"] += 1
        return counts

    def tenant(self, name: str = DEFAULT_TENANT) -> "Tenant":
        """A handle on one tenant, with the whole API scoped to it."""
        return Tenant(self, name)

    def usage_all_tenants(self, *, since: Any = None, until: Any = None, group_by: str = "day") -> list[dict[str, Any]]:
        """Every tenant's usage (operators only): the rows of :meth:`Tenant.get_usage`, each with its
        ``tenant``."""
        return usage_report(self.storage, None, since=since, until=until, group_by=group_by)

    def close(self) -> None:
        """Close database connections."""
        if self._storage is not None:
            self._storage.close()


class Tenant:
    """Everything one tenant can do. Every method reads and writes only this tenant's data.

    Args:
        core: the installation.
        name: the tenant's name (letters, digits, ``_ . -``; created on first write).
    """

    def __init__(self, core: MTCore, name: str = DEFAULT_TENANT) -> None:
        self.core = core
        self.name = check_tenant(name)

    def __repr__(self) -> str:
        return f"Tenant({self.name!r})"

    # -- tools ------------------------------------------------------------------------------

    def add_tool(self, name: str, description: str | None, code: str, dependencies: list[str] | None = None, *,
                 settings: dict[str, Any] | None = None, secrets: dict[str, str] | None = None,
                 exist_ok: bool = False) -> str:
        """Validate and store a tool written as Python source; return its new id.

        ``code`` holds any tool smolagents loads: a ``@tool`` function, a plain function with type
        hints and a Google-style docstring, or a ``smolagents.Tool`` subclass, with helpers beside
        it. It is built in a sandbox, never in this process. ``description=None`` keeps the tool's
        own. ``settings`` are keyword arguments of a class tool's ``__init__``; ``secrets`` are
        environment variables (and ``__init__`` arguments) of the sandbox that runs it, stored
        encrypted. Raises :class:`ToolValidationError` or :class:`ConflictError`; nothing is stored
        on error. With ``exist_ok=True`` a tool of the same name and definition returns its id instead.
        """
        return self.core.tools.add(self.name, name=name, description=description, code=code, dependencies=dependencies,
                                   settings=settings, secrets=secrets, limits=self.limits(), exist_ok=exist_ok)

    def update_tool(self, tool_id: str, *, code: Any = UNSET, description: Any = UNSET, dependencies: Any = UNSET,
                    settings: Any = UNSET, secrets: Any = UNSET) -> int:
        """Validate the tool as changed and store it as its next version; return the version number.
        Arguments left out keep their value. Versions are immutable; runs use the latest unless
        pinned (``"<tool_id>@<n>"``)."""
        return self.core.tools.update(self.name, tool_id, code=code, description=description,
                                      dependencies=dependencies, settings=settings, secrets=secrets,
                                      limits=self.limits())

    def get_tool(self, tool_id: str, version: int | None = None) -> dict[str, Any]:
        """One tool this tenant can use, at its latest version or ``version``: its own (with its
        source under ``code``, secrets masked) or an enabled package tool (id ``pkg:<name>``)."""
        return self.core.tools.get(self.name, tool_id, version)

    def get_tool_versions(self, tool_id: str) -> list[dict[str, Any]]:
        """The versions of one of this tenant's tools: number, ``created_at``, ``source_sha256``."""
        return self.core.tools.versions(self.name, tool_id)

    def get_tools(self) -> list[dict[str, Any]]:
        """The tools this tenant can use: its own, oldest first, then its enabled package tools."""
        return self.core.tools.list(self.name)

    def delete_tool(self, tool_id: str) -> None:
        """Delete one of this tenant's own tools (every version) and its file."""
        self.core.tools.delete(self.name, tool_id)

    def enable_package_tool(self, name: str, *, settings: dict[str, Any] | None = None,
                            secrets: dict[str, str] | None = None) -> str:
        """Let this tenant use a package tool from the catalog, with its own settings and secrets;
        return its id (``pkg:<name>``). Enabling again changes the settings and secrets given."""
        return self.core.tools.enable_package(self.name, name, settings=settings, secrets=secrets)

    def disable_package_tool(self, name: str) -> None:
        """Stop this tenant from using a package tool; NotFoundError when it was not enabled."""
        self.core.tools.disable_package(self.name, name)

    # -- LLM configurations -----------------------------------------------------------------

    def add_llm(self, base_url: str | None = None, api_key: str | None = None, model_name: str | None = None,
                llm_name: str | None = None, *, provider: str = "openai", fallbacks: list[str] | None = None,
                prices: dict[str, float] | None = None, exist_ok: bool = False, **options: Any) -> str:
        """Store an LLM configuration (API key encrypted at rest); return its new id.

        Extra keyword arguments are provider fields (e.g. ``temperature``), checked by name, type
        and range, and the gateway's: ``timeout`` (seconds per attempt), ``max_retries`` (default
        2) and ``cache_ttl`` (seconds to cache deterministic replies; off by default).
        ``fallbacks`` lists ids of this tenant's configurations that a call tries, in order, when
        this one still fails after its retries. ``prices`` (``{"input_per_mtok": 0.15,
        "output_per_mtok": 0.6}``, optionally ``cached_input_per_mtok``: US dollars per million
        tokens) price its calls instead of genai-prices' data (:mod:`mt_core.prices`), e.g. for a
        self-hosted model. Raises :class:`LLMConfigError` for an unknown
        provider or a missing/invalid field, :class:`NotFoundError` for a fallback this tenant does
        not have, and :class:`BlockedAddressError` for a ``base_url`` whose host is a literal
        address (or ``localhost``) outside public addresses and ``MT_LLM_ALLOWED_NETWORKS``; host
        names are checked when a request connects. A taken name (``llm_name``, default from
        ``model_name``) is a :class:`ConflictError`; with ``exist_ok=True`` a configuration with the
        same name, provider, model, base URL, options, fallbacks, prices and API key returns its id instead.
        """
        return self.core.llms.add(self.name, base_url=base_url, api_key=api_key, model_name=model_name,
                                  llm_name=llm_name, provider=provider, options=options,
                                  max_llms=self.limits().max_llms, fallbacks=fallbacks or [], prices=prices,
                                  exist_ok=exist_ok)

    def update_llm(self, llm_id: str, *, fallbacks: Any = UNSET, base_url: Any = UNSET, api_key: Any = UNSET,
                   model_name: Any = UNSET, llm_name: Any = UNSET, provider: Any = UNSET, prices: Any = UNSET,
                   **options: Any) -> dict[str, Any]:
        """Change one of this tenant's LLM configurations; arguments left out keep their value.

        ``fallbacks`` replaces the fallback list (``[]`` clears it); a list that would make a
        cycle is refused with :class:`LLMConfigError` naming it. Option keyword arguments are
        merged into the stored options (``None`` removes one); ``prices`` replace the stored prices
        (``None`` removes them: genai-prices' apply again). The result is validated as a
        whole, like ``add_llm``; its circuit breaker starts closed again. Returns the
        configuration as :meth:`get_llm_config` shows it.
        """
        return self.core.llms.update(self.name, llm_id, fallbacks=fallbacks, base_url=base_url, api_key=api_key,
                                     model_name=model_name, llm_name=llm_name, provider=provider, prices=prices,
                                     options=options)

    def get_llm_config(self, llm_id: str) -> dict[str, Any]:
        """One of this tenant's LLM configurations, with the API key masked."""
        return self.core.llms.get(self.name, llm_id)

    def get_llms(self) -> list[dict[str, Any]]:
        """This tenant's LLM configurations (keys masked), oldest first."""
        return self.core.llms.list(self.name)

    def delete_llm(self, llm_id: str) -> None:
        """Delete one of this tenant's LLM configurations; :class:`ConflictError` while another
        of its configurations lists it as a fallback."""
        self.core.llms.delete(self.name, llm_id)

    # -- limits and executor options --------------------------------------------------------

    def limits(self) -> Limits:
        """This tenant's limits (stored overrides over the defaults)."""
        return Limits.from_row(self.core.storage.get_limits(self.name))

    def set_limits(self, **values: int | float | None) -> Limits:
        """Change limits (``max_tools=50``, ``budget_usd_per_day=5.0``); ``None`` restores a default
        (for a budget: none). Returns the new limits."""
        self.core.storage.set_limits(self.name, check_limit_values(values))
        return self.limits()

    def executor_options(self) -> dict[str, Any]:
        """This tenant's executor options (e.g. the sandbox's ``memory``, ``network``)."""
        return self.core.storage.get_executor_options(self.name)

    def set_executor_options(self, **options: Any) -> dict[str, Any]:
        """Set executor options for this tenant's runs (``None`` removes one); each installed
        executor that validates options checks them first. Returns the options now in force."""
        merged = check_executor_options(self.core.plugins, {**self.executor_options(), **options}, self.core.settings)
        self.core.storage.set_executor_options(self.name, merged)
        return merged

    # -- runs -------------------------------------------------------------------------------

    def run_query(self, tool_ids: list[str], llm_id: str, query: str, use_docker: bool = True, *,
                  agent_type: str = "code", max_steps: int = DEFAULT_MAX_STEPS, verbosity: int = 0,
                  step_timeout: float = DEFAULT_STEP_TIMEOUT) -> QueryResult:
        """Run ``query`` with a fresh agent using these tools (``"<id>@<n>"`` pins a version) and
        this LLM; record the run.

        ``use_docker=True`` runs the agent's code and tools in the Docker sandbox when one is
        available and in the local jail otherwise (with a :class:`SandboxFallbackWarning`).
        ``agent_type`` is ``"code"`` (``CodeAgent``) or ``"tool_calling"`` (``ToolCallingAgent``).
        ``verbosity`` 0 is silent, 1 prints the agent's steps, 2 adds debug detail. Raises
        :class:`RunError` when the run fails (the failed run is recorded), :class:`NotFoundError`
        for ids this tenant does not have, :class:`QuotaExceededError` past a limit or a budget
        (nothing recorded). A run that a budget stops before an LLM request raises
        :class:`RunError` with status ``budget_exceeded``.
        """
        core, limits = self.core, self.limits()
        check_run_arguments(query, agent_type, tool_ids, max_steps, step_timeout, limits, core.settings)
        tools = core.tools.resolve(self.name, list(tool_ids))
        chain = core.llms.resolve(self.name, llm_id)
        executor = choose_executor(core.plugins, use_docker, core.settings)
        env = {name: os.environ[name] for name in core.settings.sandbox_env_vars if name in os.environ}
        for spec in tools:
            env.update(spec.env)
        request = RunRequest(
            tenant=self.name, query=query, agent_type=agent_type, max_steps=max_steps, verbosity=verbosity,
            step_timeout=float(step_timeout), tools=tools, tool_ids=tuple(tool_ids), chain=chain,
            executor=executor, executor_options=self.executor_options(),
            quota={"max_concurrent_runs": limits.max_concurrent_runs, "runs_per_minute": limits.runs_per_minute,
                   "budgets": budget_limits(limits.as_dict())},
            settings=core.settings, sandbox_modules=core.plugins.modules(), sandbox_env=env,
            tracer_provider=core.tracer_provider,
        )
        return execute(request, core.storage, core.plugins.notify)

    def get_run(self, run_id: str) -> dict[str, Any]:
        """One of this tenant's run records, with ``cost_usd`` (``None`` when ``unpriced_calls`` is
        not 0), ``llm_calls`` (every attempt of every LLM call in order: ``call_index``, ``llm_id``,
        ``provider``, ``model``, ``outcome``, ``error_type``, ``status_code``, ``latency_ms``, tokens,
        ``cost_usd``, ``priced_by``...) and ``tool_calls`` (each call of a tool, in order)."""
        from .ids import check_id

        return run_record(self.core.storage, self.name, check_id(run_id, "run"))

    def get_runs(self, limit: int = 100) -> list[dict[str, Any]]:
        """This tenant's run records, newest first."""
        return self.core.storage.list_runs(self.name, limit=limit)

    # -- usage ------------------------------------------------------------------------------

    def get_usage(self, *, since: Any = None, until: Any = None, group_by: str = "day") -> list[dict[str, Any]]:
        """This tenant's usage from ``since`` (default: the start of this UTC month) until ``until``
        (default: now; a date includes that day), grouped by ``"day"``, ``"model"``, ``"llm"``,
        ``"run"`` (runs, calls, attempts, tokens, ``cost_usd``, ``unpriced_calls``) or ``"tool"``
        (runs, calls, errors, ``duration_ms``). See :func:`mt_core.usage.usage_report`."""
        return usage_report(self.core.storage, self.name, since=since, until=until, group_by=group_by)
