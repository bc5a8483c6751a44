"""The module-level API of the seed (``add_tool``, ``run_query``...), on a default installation.

Each function takes ``tenant=`` (default ``"default"``) and acts on the installation that
:func:`configure` set, or on one built from the environment at first use.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Any

from .config import Settings
from .core import DEFAULT_TENANT, MTCore, Tenant
from .errors import ValidationError
from .limits import Limits
from .runs import QueryResult
from .tools import UNSET

_default: MTCore | None = None
_lock = threading.Lock()


def configure(
    home: str | os.PathLike[str] | None = None, *, settings: Settings | None = None, tracer_provider: Any = None,
    **values: Any,
) -> MTCore:
    """Set the installation the module-level functions use: a data directory, full ``settings``,
    or individual settings by name (``configure(home, master_key=..., llm_timeout=30)``, the
    rest from the environment); ``tracer_provider`` for runs' OpenTelemetry spans."""
    global _default
    if values:
        unknown = sorted(set(values) - set(Settings.names()))
        if unknown:
            raise ValidationError(unknown[0], f"is not a setting (settings: {', '.join(Settings.names())})")
        settings = dataclasses.replace(settings or Settings.from_env(), **values)
    core = MTCore(home, settings=settings, tracer_provider=tracer_provider)
    with _lock:
        previous, _default = _default, core
    if previous is not None:
        previous.close()
    return core


def get_core() -> MTCore:
    """The installation the module-level functions use, created from the environment if needed."""
    global _default
    if _default is None:
        with _lock:
            if _default is None:
                _default = MTCore()
    return _default


def tenant(name: str = DEFAULT_TENANT) -> Tenant:
    """A handle with the whole API scoped to one tenant: ``tenant("acme").add_tool(...)``."""
    return get_core().tenant(name)


def add_tool(
    name: str, description: str | None, code: str, dependencies: list[str] | None = None, *,
    settings: dict[str, Any] | None = None, secrets: dict[str, str] | None = None, tenant: str = DEFAULT_TENANT,
    exist_ok: bool = False,
) -> str:
    """Validate and store a tool for ``tenant``; return its id (with ``exist_ok=True``, the id of an
    identical tool of that name). See :meth:`Tenant.add_tool`."""
    return get_core().tenant(tenant).add_tool(name, description, code, dependencies, settings=settings, secrets=secrets,
                                              exist_ok=exist_ok)


def update_tool(
    tool_id: str, *, code: Any = UNSET, description: Any = UNSET, dependencies: Any = UNSET, settings: Any = UNSET,
    secrets: Any = UNSET, tenant: str = DEFAULT_TENANT,
) -> int:
    """Store the next version of a tool of ``tenant``; return its number. See :meth:`Tenant.update_tool`."""
    return get_core().tenant(tenant).update_tool(
        tool_id, code=code, description=description, dependencies=dependencies, settings=settings, secrets=secrets
    )


def get_tool(tool_id: str, version: int | None = None, *, tenant: str = DEFAULT_TENANT) -> dict[str, Any]:
    """One tool of ``tenant`` (latest version, or ``version``). See :meth:`Tenant.get_tool`."""
    return get_core().tenant(tenant).get_tool(tool_id, version)


def get_tool_versions(tool_id: str, *, tenant: str = DEFAULT_TENANT) -> list[dict[str, Any]]:
    """The versions of one tool of ``tenant``. See :meth:`Tenant.get_tool_versions`."""
    return get_core().tenant(tenant).get_tool_versions(tool_id)


def get_tools(*, tenant: str = DEFAULT_TENANT) -> list[dict[str, Any]]:
    """All tools ``tenant`` can use. See :meth:`Tenant.get_tools`."""
    return get_core().tenant(tenant).get_tools()


def delete_tool(tool_id: str, *, tenant: str = DEFAULT_TENANT) -> None:
    """Delete one tool of ``tenant``. See :meth:`Tenant.delete_tool`."""
    get_core().tenant(tenant).delete_tool(tool_id)


def enable_package_tool(
    name: str, *, settings: dict[str, Any] | None = None, secrets: dict[str, str] | None = None,
    tenant: str = DEFAULT_TENANT,
) -> str:
    """Let ``tenant`` use a package tool; return its id. See :meth:`Tenant.enable_package_tool`."""
    return get_core().tenant(tenant).enable_package_tool(name, settings=settings, secrets=secrets)


def disable_package_tool(name: str, *, tenant: str = DEFAULT_TENANT) -> None:
    """Stop ``tenant`` from using a package tool. See :meth:`Tenant.disable_package_tool`."""
    get_core().tenant(tenant).disable_package_tool(name)


def get_package_tools() -> list[dict[str, Any]]:
    """The global catalog of package tools that tenants may enable. See :meth:`MTCore.package_tools`."""
    return get_core().package_tools()


def add_llm(
    base_url: str | None = None,
    api_key: str | None = None,
    model_name: str | None = None,
    llm_name: str | None = None,
    *,
    provider: str = "openai",
    fallbacks: list[str] | None = None,
    prices: dict[str, float] | None = None,
    tenant: str = DEFAULT_TENANT,
    exist_ok: bool = False,
    **options: Any,
) -> str:
    """Store an LLM configuration for ``tenant``; return its id (with ``exist_ok=True``, the id of an
    identical configuration of that name). See :meth:`Tenant.add_llm`."""
    return get_core().tenant(tenant).add_llm(
        base_url, api_key, model_name, llm_name, provider=provider, fallbacks=fallbacks, prices=prices,
        exist_ok=exist_ok, **options
    )


def update_llm(llm_id: str, *, tenant: str = DEFAULT_TENANT, **changes: Any) -> dict[str, Any]:
    """Change an LLM configuration of ``tenant`` (``fallbacks=``, ``base_url=``, options...).
    See :meth:`Tenant.update_llm`."""
    return get_core().tenant(tenant).update_llm(llm_id, **changes)


def get_llm_config(llm_id: str, *, tenant: str = DEFAULT_TENANT) -> dict[str, Any]:
    """One LLM configuration of ``tenant``, key masked. See :meth:`Tenant.get_llm_config`."""
    return get_core().tenant(tenant).get_llm_config(llm_id)


def get_llms(*, tenant: str = DEFAULT_TENANT) -> list[dict[str, Any]]:
    """All LLM configurations of ``tenant``, keys masked. See :meth:`Tenant.get_llms`."""
    return get_core().tenant(tenant).get_llms()


def delete_llm(llm_id: str, *, tenant: str = DEFAULT_TENANT) -> None:
    """Delete one LLM configuration of ``tenant``. See :meth:`Tenant.delete_llm`."""
    get_core().tenant(tenant).delete_llm(llm_id)


def run_query(
    tool_ids: list[str],
    llm_id: str,
    query: str,
    use_docker: bool = True,
    *,
    tenant: str = DEFAULT_TENANT,
    **options: Any,
) -> QueryResult:
    """Run ``query`` for ``tenant`` with these tools and LLM. See :meth:`Tenant.run_query`."""
    return get_core().tenant(tenant).run_query(tool_ids, llm_id, query, use_docker, **options)


def get_run(run_id: str, *, tenant: str = DEFAULT_TENANT) -> dict[str, Any]:
    """One run record of ``tenant``. See :meth:`Tenant.get_run`."""
    return get_core().tenant(tenant).get_run(run_id)


def get_runs(*, tenant: str = DEFAULT_TENANT, limit: int = 100) -> list[dict[str, Any]]:
    """Run records of ``tenant``, newest first. See :meth:`Tenant.get_runs`."""
    return get_core().tenant(tenant).get_runs(limit)


def get_usage(*, tenant: str = DEFAULT_TENANT, since: Any = None, until: Any = None,
              group_by: str = "day") -> list[dict[str, Any]]:
    """Usage of ``tenant`` (runs, calls, tokens, cost) grouped by ``"day"``, ``"model"``, ``"llm"``,
    ``"tool"`` or ``"run"``. See :meth:`Tenant.get_usage`."""
    return get_core().tenant(tenant).get_usage(since=since, until=until, group_by=group_by)


def set_limits(*, tenant: str = DEFAULT_TENANT, **values: Any) -> Limits:
    """Change limits and budgets of ``tenant`` (``budget_usd_per_day=5.0``; ``None`` restores a
    default); the limits now in force. See :meth:`Tenant.set_limits`."""
    return get_core().tenant(tenant).set_limits(**values)
