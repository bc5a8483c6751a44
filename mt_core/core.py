"""The framework object (:class:`MTCore`) and the per-tenant handle (:class:`Tenant`)."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .catalog import (
    PACKAGE_PREFIX, check_own_tool_name, check_package_tool_name, package_tool_id, public_package_tool, sync_catalog,
    usable_package_tool,
)
from .config import Settings
from .dependencies import check_resolvable
from .errors import LLMConfigError, NotFoundError, ValidationError
from .home import prepare_home
from .ids import new_id
from .limits import Limits, check_limit_values, exceeded
from .llms import LLMConfig, validate_llm_fields
from .master_keys import open_secret_box
from .plugins import Plugins
from .reuse import existing_llm, existing_tool
from .runs import DEFAULT_MAX_STEPS, DEFAULT_STEP_TIMEOUT, QueryResult, run_query
from .secrets import SecretBox, mask
from .storage import Storage, utcnow
from .tool_loader import find_tool_definition
from .validation import (
    MAX_DESCRIPTION, check_dependencies, check_llm_name, check_tenant, check_text, check_tool_name,
    check_tool_source, default_llm_name, tool_error,
)

DEFAULT_TENANT = "default"
MAX_TOOL_SOURCE_BYTES = 4 * 1024 * 1024  # absolute; the per-tenant limit is lower


class MTCore:
    """One mt-core installation: a data directory, its database, its plugins and its master key.

    Nothing is opened or loaded until first use.

    Args:
        home: data directory; defaults to ``MT_HOME`` or ``./.mt``.
        settings: full settings; by default read from the environment and ``.env``.
    """

    def __init__(self, home: str | os.PathLike[str] | None = None, *, settings: Settings | None = None) -> None:
        base = settings or Settings.from_env()
        if home is not None:
            base = dataclasses.replace(base, home=Path(home), home_is_default=False)
        self.settings = base
        self._lock = threading.RLock()  # lazy properties nest (the catalog needs storage and plugins)
        self._storage: Storage | None = None
        self._plugins: Plugins | None = None
        self._secrets: SecretBox | None = None
        self._catalog_synced = False

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
        return self._once("_storage", lambda: Storage(prepare_home(self.settings) / "mt.db"))

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

    def package_tools(self) -> list[dict[str, Any]]:
        """The global catalog of package tools installed plugins register (what tenants may enable)."""
        self.sync_catalog()
        return [
            {**public_package_tool(row), "available": bool(row["available"])}
            for row in self.storage.catalog().values()
        ]

    def sync_catalog(self) -> None:
        """Bring the package tool catalog in step with the loaded plugins (once per installation)."""
        if not self._catalog_synced:
            with self._lock:
                if not self._catalog_synced:
                    sync_catalog(self.storage, self.plugins)
                    self._catalog_synced = True

    def rotate_secrets(self) -> dict[str, int]:
        """Re-encrypt every stored secret under the current master key.

        Run it with ``MT_MASTER_KEY`` set to the new key and ``MT_MASTER_KEY_PREVIOUS`` to the
        old one: reads accept both keys throughout, so nothing stops while it runs, and each
        row is swapped only if nobody changed it meanwhile. Returns counts.
        """
        box = self.secrets
        counts = {"rotated": 0, "skipped": 0}
        for tenant, llm_id, ciphertext in self.storage.secrets_to_rotate(box.current_key_id):
            context = _key_context(llm_id)
            plaintext = box.decrypt(ciphertext, tenant=tenant, context=context)
            fresh = box.encrypt(plaintext, tenant=tenant, context=context)
            counts["rotated" if self.storage.replace_secret(tenant, llm_id, ciphertext, fresh) else "skipped"] += 1
        return counts

    def tenant(self, name: str = DEFAULT_TENANT) -> "Tenant":
        """A handle on one tenant, with the whole API scoped to it."""
        return Tenant(self, name)

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

    def add_tool(
        self, name: str, description: str, code: str, dependencies: list[str] | None = None, *, exist_ok: bool = False
    ) -> str:
        """Validate and store a tool written as Python source; return its new id.

        ``code`` holds one function with type hints and a Google-style docstring, or one class
        deriving from ``smolagents.Tool``. It is checked statically, then built in a child
        process (never in this one). Raises :class:`ToolValidationError` or
        :class:`ConflictError` (name taken); nothing is stored on error. With ``exist_ok=True`` a
        tool of the same name, description, code and dependencies returns its id instead.
        """
        from .tool_check import check_in_child

        check_tool_name(name)
        description = check_text("description", description, max_length=MAX_DESCRIPTION, error=tool_error)
        deps = check_dependencies(dependencies)
        reused = existing_tool(self, name, description=description, code=code, dependencies=deps, exist_ok=exist_ok)
        if reused is not None:
            return reused
        check_own_tool_name(self.core.storage, self.name, name)
        limits = self.limits()
        size = len(code.encode("utf-8", "surrogatepass")) if isinstance(code, str) else 0
        if size > limits.max_tool_source_bytes:
            raise exceeded("max_tool_source_bytes", size, limits.max_tool_source_bytes, "the tool's source in bytes")
        tree = check_tool_source(code, max_bytes=MAX_TOOL_SOURCE_BYTES)
        meta = check_in_child(name, code, timeout=self.core.settings.tool_check_timeout)
        kind = "class" if isinstance(find_tool_definition(tree), ast.ClassDef) else "function"
        check_resolvable(deps, timeout=self.core.settings.tool_dependency_timeout)
        tool_id = new_id("tool")
        self.core.storage.insert(
            "tools",
            self.name,
            {
                "id": tool_id, "name": name, "description": description, "kind": kind, "source": code,
                "source_sha256": hashlib.sha256(code.encode()).hexdigest(), "inputs": meta["inputs"],
                "output_type": meta["output_type"], "dependencies": deps, "created_at": utcnow(),
            },
            check=self._quota("tools", "max_tools", limits.max_tools),
        )
        try:
            self._write_tool_file(tool_id, code)
        except OSError:
            self.core.storage.delete("tools", self.name, tool_id)
            raise
        return tool_id

    def get_tool(self, tool_id: str) -> dict[str, Any]:
        """One tool this tenant can use: its own (with its source under ``code``) or an enabled
        package tool (id ``pkg:<name>``)."""
        if _check_id(tool_id, "tool").startswith(PACKAGE_PREFIX):
            return public_package_tool(self._enabled_package_tool(tool_id), self.core.plugins)
        row = self.core.storage.get("tools", self.name, tool_id)
        return {**_public_tool(row), "code": row["source"]}

    def get_tools(self) -> list[dict[str, Any]]:
        """The tools this tenant can use: its own, oldest first, then its enabled package tools (one
        whose package is gone is listed with ``available`` False and the reason)."""
        own = [_public_tool(row) for row in self.core.storage.list("tools", self.name)]
        self.core.sync_catalog()
        enabled = self.core.storage.enabled_package_tools(self.name, include_unavailable=True)
        return own + [public_package_tool(row, self.core.plugins) for row in enabled]

    def delete_tool(self, tool_id: str) -> None:
        """Delete one of this tenant's own tools and its file (disable a package tool instead)."""
        self.core.storage.delete("tools", self.name, _check_id(tool_id, "tool"))
        self._tool_path(tool_id).unlink(missing_ok=True)

    def enable_package_tool(self, name: str) -> str:
        """Let this tenant use a package tool from the catalog; return its id (``pkg:<name>``)."""
        self.core.sync_catalog()
        row = self.core.storage.catalog().get(name) if isinstance(name, str) else None
        if row is None or not row["available"]:
            raise NotFoundError("package tool", str(name)[:128])
        check_package_tool_name(self.core.storage, self.name, name)
        self.core.storage.set_package_tool_enabled(self.name, name, True)
        return package_tool_id(name)

    def disable_package_tool(self, name: str) -> None:
        """Stop this tenant from using a package tool; NotFoundError when it was not enabled."""
        if not isinstance(name, str) or not self.core.storage.set_package_tool_enabled(self.name, name, False):
            raise NotFoundError("package tool", str(name)[:128])

    def _enabled_package_tool(self, tool_id: str) -> dict[str, Any]:
        self.core.sync_catalog()
        name = tool_id[len(PACKAGE_PREFIX):]
        for row in self.core.storage.enabled_package_tools(self.name, include_unavailable=True):
            if row["name"] == name:
                return row
        raise NotFoundError("tool", tool_id)

    def resolve_tools(self, tool_ids: list[str]) -> list[dict[str, Any]]:
        """The records of the given tools and how to build each (for a run).

        Raises :class:`NotFoundError` for an id this tenant cannot use and
        :class:`ValidationError` when two tools would share a name in the agent.
        """
        from .tool_loader import build_tool

        resolved = []
        for tool_id in tool_ids:
            if _check_id(tool_id, "tool").startswith(PACKAGE_PREFIX):
                row = self._enabled_package_tool(tool_id)
                entry = usable_package_tool(row, self.core.plugins)
                resolved.append({"record": public_package_tool(row), "build": lambda entry=entry: entry.tool})
            else:
                row = self.core.storage.get("tools", self.name, tool_id)
                resolved.append({
                    "record": {**_public_tool(row), "code": row["source"]},
                    "build": lambda row=row: build_tool(
                        row["name"], row["description"], row["source"], str(self._tool_path(row["id"]))
                    ),
                })
        names = [item["record"]["name"] for item in resolved]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValidationError("tool_ids", f"two tools are named {duplicates[0]!r}; an agent needs unique names")
        return resolved

    def _tool_path(self, tool_id: str) -> Path:
        return self.core.home / "tools" / self.name / f"{tool_id}.py"

    def _write_tool_file(self, tool_id: str, code: str) -> None:
        path = self._tool_path(tool_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(code, encoding="utf-8")
        os.replace(temporary, path)

    # -- LLM configurations -----------------------------------------------------------------

    def add_llm(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        model_name: str | None = None,
        llm_name: str | None = None,
        *,
        provider: str = "openai",
        exist_ok: bool = False,
        **options: Any,
    ) -> str:
        """Store an LLM configuration (API key encrypted at rest); return its new id.

        Raises :class:`LLMConfigError` for an unknown provider or a missing/invalid field, and
        :class:`ConflictError` when the name (``llm_name``, default from ``model_name``) is taken;
        with ``exist_ok=True`` a configuration with the same name, provider, model, base URL,
        options and API key returns its id instead. Extra keyword arguments are provider fields
        (e.g. ``temperature``, ``timeout``).
        """
        entry = self.core.plugins.providers.get(provider) if isinstance(provider, str) else None
        if entry is None:
            known = ", ".join(sorted(self.core.plugins.providers)) or "none"
            raise LLMConfigError("provider", f"{provider!r} is not an installed provider (installed: {known})")
        clean = validate_llm_fields(entry, base_url=base_url, api_key=api_key, model_name=model_name, options=options)
        name = check_llm_name(llm_name if llm_name is not None else default_llm_name(clean["model_name"] or provider))
        reused = existing_llm(self, name, provider=provider, clean=clean, exist_ok=exist_ok)
        if reused is not None:
            return reused
        llm_id = new_id("llm")
        key = clean["api_key"]
        self.core.storage.insert(
            "llms",
            self.name,
            {
                "id": llm_id, "name": name, "provider": provider, "model_name": clean["model_name"],
                "base_url": clean["base_url"], "options": clean["options"],
                "api_key_ciphertext": self.core.secrets.encrypt(key, tenant=self.name, context=_key_context(llm_id))
                if key else None,
                "api_key_masked": mask(key), "created_at": utcnow(),
            },
            check=self._quota("llms", "max_llms", self.limits().max_llms),
        )
        return llm_id

    def get_llm_config(self, llm_id: str) -> dict[str, Any]:
        """One of this tenant's LLM configurations, with the API key masked."""
        return _public_llm(self.core.storage.get("llms", self.name, _check_id(llm_id, "llm")))

    def get_llms(self) -> list[dict[str, Any]]:
        """This tenant's LLM configurations (keys masked), oldest first."""
        return [_public_llm(row) for row in self.core.storage.list("llms", self.name)]

    def delete_llm(self, llm_id: str) -> None:
        """Delete one of this tenant's LLM configurations."""
        self.core.storage.delete("llms", self.name, _check_id(llm_id, "llm"))

    def llm_config(self, llm_id: str) -> LLMConfig:
        """The configuration with its key decrypted, for a provider factory. Never log it."""
        row = self.core.storage.get("llms", self.name, _check_id(llm_id, "llm"))
        ciphertext = row["api_key_ciphertext"]
        api_key = (
            self.core.secrets.decrypt(ciphertext, tenant=self.name, context=_key_context(row["id"]))
            if ciphertext else None
        )
        return LLMConfig(
            tenant=self.name, id=row["id"], name=row["name"], provider=row["provider"],
            model_name=row["model_name"], base_url=row["base_url"], api_key=api_key,
            options=dict(row["options"]), timeout=self.core.settings.llm_timeout,
        )

    # -- limits -----------------------------------------------------------------------------

    def limits(self) -> Limits:
        """This tenant's limits (stored overrides over the defaults)."""
        return Limits.from_row(self.core.storage.limits_row(self.name))

    def set_limits(self, **values: int | None) -> Limits:
        """Change limits (``max_tools=50``); ``None`` restores a default. Returns the new limits."""
        self.core.storage.set_limits_row(self.name, check_limit_values(values))
        return self.limits()

    def executor_options(self) -> dict[str, Any]:
        """This tenant's executor options (e.g. the Docker sandbox's ``memory``, ``network``)."""
        return self.core.storage.executor_options(self.name)

    def set_executor_options(self, **options: Any) -> dict[str, Any]:
        """Set executor options for this tenant's runs (``None`` removes one); each installed
        executor that validates options checks them first. Returns the options now in force."""
        merged = {**self.executor_options(), **options}
        merged = {name: value for name, value in merged.items() if value is not None}
        for name, value in merged.items():
            if not isinstance(value, (str, int, float, bool)):
                raise ValidationError(name, f"must be a string, number or boolean, got {type(value).__name__}")
        for executor in self.core.plugins.executors.values():
            if executor.validate_options is not None:
                try:
                    executor.validate_options(merged)
                except ValueError as exc:
                    raise ValidationError("executor_options", f"{executor.name}: {exc}") from None
        self.core.storage.set_executor_options(self.name, merged)
        return merged

    def _quota(self, table: str, limit: str, allowed: int) -> Callable[[Any], None]:
        """A check, run inside the insert's transaction, that the tenant stays within ``limit``."""

        def check(conn: Any) -> None:
            count = conn.execute(f"SELECT COUNT(*) FROM {table} WHERE tenant_id = ?", (self.name,)).fetchone()[0]
            if count + 1 > allowed:
                raise exceeded(limit, count + 1, allowed, f"the number of {table}")

        return check

    # -- runs -------------------------------------------------------------------------------

    def run_query(
        self,
        tool_ids: list[str],
        llm_id: str,
        query: str,
        use_docker: bool = True,
        *,
        agent_type: str = "code",
        max_steps: int = DEFAULT_MAX_STEPS,
        verbosity: int = 0,
        step_timeout: float = DEFAULT_STEP_TIMEOUT,
    ) -> QueryResult:
        """Run ``query`` with a fresh agent using these tools and this LLM; record the run.

        ``use_docker=True`` runs the agent's code in the Docker sandbox when one is available and
        falls back to the local executor with a warning otherwise. ``agent_type`` is ``"code"``
        (smolagents ``CodeAgent``) or ``"tool_calling"`` (``ToolCallingAgent``). ``verbosity`` 0
        is silent, 1 prints the agent's steps, 2 adds debug detail. Raises :class:`RunError` when the run fails (the
        failed run is recorded) and :class:`NotFoundError` for ids this tenant does not have.
        """
        return run_query(
            self, tool_ids, llm_id, query, use_docker=use_docker, agent_type=agent_type,
            max_steps=max_steps, verbosity=verbosity, step_timeout=step_timeout,
        )

    def get_run(self, run_id: str) -> dict[str, Any]:
        """One of this tenant's run records."""
        return self.core.storage.get("runs", self.name, _check_id(run_id, "run"))

    def get_runs(self, limit: int = 100) -> list[dict[str, Any]]:
        """This tenant's run records, newest first."""
        return self.core.storage.list("runs", self.name, limit=limit)


def _key_context(llm_id: str) -> str:
    return f"llms:{llm_id}:api_key"


def _check_id(value: object, kind: str) -> str:
    """Ids are opaque strings; anything else is simply not found (same error as a foreign id)."""
    if not isinstance(value, str) or not value or len(value) > 128 or "\x00" in value:
        raise NotFoundError(kind, str(value)[:128])
    return value


def _public_tool(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "name": row["name"], "description": row["description"], "inputs": row["inputs"],
        "output_type": row["output_type"], "version": row["version"], "dependencies": row["dependencies"],
        "origin": "tenant", "kind": row["kind"], "created_at": row["created_at"], "available": True,
        "unavailable_reason": None,
    }


def _public_llm(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "name": row["name"], "provider": row["provider"], "model_name": row["model_name"],
        "base_url": row["base_url"], "api_key": row["api_key_masked"], "options": row["options"],
        "created_at": row["created_at"],
    }
