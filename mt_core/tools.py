"""Tools of tenants: validation in the sandbox, immutable versions, per-tenant settings and
secrets, package tools from the catalog, and what a run needs to build them (:class:`ToolSpec`)."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .catalog import (
    PACKAGE_PREFIX, Catalog, check_own_tool_name, check_package_tool_name, package_tool_id, public_package_tool,
    usable_package_tool,
)
from .dependencies import check_resolvable
from .errors import NotFoundError, QuotaExceededError, ToolValidationError, ValidationError
from .executors import ToolSpec
from .ids import check_id, new_id
from .limits import Limits, exceeded
from .plugins import Plugins
from .reuse import reuse_or_conflict
from .secrets import SecretBox, redact, seal_tool_secrets, tool_secret_context
from .storage import CatalogRow, SecretRow, Storage, ToolRow, ToolVersionRow, utcnow
from .validation import (
    MAX_DESCRIPTION, check_dependencies, check_text, check_tool_name, check_tool_secrets, check_tool_settings,
    check_tool_source, tool_error,
)

MAX_TOOL_SOURCE_BYTES = 4 * 1024 * 1024  # absolute; the per-tenant limit is lower
UNSET: Any = object()  # "leave as it is" in update_tool


def public_tool(row: ToolRow, secrets: list[SecretRow], *, with_code: bool) -> dict[str, Any]:
    """How a tenant sees one of its tools: secrets masked, the source only when asked for."""
    shown = {
        "id": row["id"], "name": row["name"], "description": row["description"], "inputs": row["inputs"],
        "output_type": row["output_type"], "version": row["version"], "latest_version": row["latest_version"],
        "dependencies": row["dependencies"], "origin": "tenant", "kind": row["kind"], "settings": row["settings"],
        "secrets": {secret["name"]: secret["masked"] for secret in secrets}, "created_at": row["created_at"],
        "version_created_at": row["version_created_at"], "available": True, "unavailable_reason": None,
    }
    if with_code:
        shown["code"] = row["source"]
    return shown


def split_tool_ref(value: object) -> tuple[str, int | None]:
    """``"<tool_id>@<n>"`` as (id, n); a bare id as (id, None)."""
    tool_id = check_id(value, "tool")
    base, sep, version = tool_id.rpartition("@")
    if sep and base and version.isdigit() and not base.startswith(PACKAGE_PREFIX):
        return base, int(version)
    return tool_id, None


class ValidationSlots:
    """Bounds on tool validations running at once: per tenant and in this process."""

    def __init__(self, per_tenant: int, total: int) -> None:
        self.per_tenant, self.total = per_tenant, total
        self._running: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, tenant: str) -> Iterator[None]:
        """A slot for one validation; :class:`QuotaExceededError` naming the bound when none is free."""
        with self._lock:
            mine, everyone = self._running.get(tenant, 0), sum(self._running.values())
            if mine >= self.per_tenant:
                raise QuotaExceededError(
                    f"validations_per_tenant: {mine} tool validations of this tenant are running; the limit is"
                    f" {self.per_tenant} at once (MT_VALIDATIONS_PER_TENANT). Try again when one has finished"
                )
            if everyone >= self.total:
                raise QuotaExceededError(
                    f"validations: {everyone} tool validations are running on this server; the limit is {self.total}"
                    " at once (MT_VALIDATIONS). Try again shortly"
                )
            self._running[tenant] = mine + 1
        try:
            yield
        finally:
            with self._lock:
                self._running[tenant] -= 1
                if not self._running[tenant]:
                    del self._running[tenant]


class Tools:
    """The tools of every tenant (each method takes the tenant).

    Args:
        storage: the database.
        plugins: the loaded plugins (package tools and the modules sandboxes import).
        catalog: the package tool catalog.
        secrets: returns the encryption of secrets at rest (made on first need).
        settings: the operator's settings.
    """

    def __init__(self, storage: Storage, plugins: Plugins, catalog: Catalog, secrets: Callable[[], SecretBox],
                 settings: Any) -> None:
        self.storage = storage
        self.plugins = plugins
        self.catalog = catalog
        self._secrets = secrets
        self.settings = settings
        self.slots = ValidationSlots(settings.validations_per_tenant, settings.validations)

    # -- tenant tools -------------------------------------------------------------------------

    def add(self, tenant: str, *, name: object, description: object, code: object, dependencies: object,
            settings: object, secrets: object, limits: Limits, exist_ok: bool = False) -> str:
        """Validate a tool in the sandbox and store it as version 1; return its id (see
        :mod:`mt_core.reuse` for ``exist_ok``)."""
        name = check_tool_name(name)
        described = self._description(description)
        deps = check_dependencies(dependencies)
        options = check_tool_settings(settings)
        secret_values = check_tool_secrets(secrets)
        source = self._source(code, limits)
        row = self.storage.find_tool(tenant, name)
        given = {"description": described, "code": source, "dependencies": deps, "settings": options,
                 "secrets": secret_values}
        if described is None:  # the tool's own description: whatever it is now
            del given["description"]
        reused = reuse_or_conflict(
            "a tool", name, row, given,
            lambda r: {**r, "code": r["source"], "secrets": self._secret_values(tenant, r["id"])}, exist_ok,
        )
        if reused is not None:
            return reused
        check_own_tool_name(self.storage, tenant, name)
        check_resolvable(deps, timeout=self.settings.tool_dependency_timeout)
        meta = self._validate(tenant, name, source, options, secret_values)
        tool_id = new_id("tool")
        version = self._version_row(meta, described, source, deps, options)
        sealed = seal_tool_secrets(self._secrets(), tenant, tool_id, secret_values) if secret_values else []
        self.storage.add_tool(tenant, tool_id, name, version, sealed, max_tools=limits.max_tools)  # type: ignore[arg-type]
        try:
            self._write_file(tenant, tool_id, source)
        except OSError:
            self.storage.delete_tool(tenant, tool_id)
            raise
        return tool_id

    def update(self, tenant: str, tool_id: object, *, code: object = UNSET, description: object = UNSET,
               dependencies: object = UNSET, settings: object = UNSET, secrets: object = UNSET,
               limits: Limits) -> int:
        """Validate the tool as changed and store it as the next version; return its number.

        Arguments left out keep their current value; ``description=None`` takes the tool's own.
        """
        tool_id = check_id(tool_id, "tool")
        if tool_id.startswith(PACKAGE_PREFIX):
            raise ValidationError("tool_id", "package tools are updated by upgrading their distribution")
        current = self.storage.get_tool(tenant, tool_id)
        source = current["source"] if code is UNSET else self._source(code, limits)
        described = current["description"] if description is UNSET else self._description(description)
        deps = current["dependencies"] if dependencies is UNSET else check_dependencies(dependencies)
        options = current["settings"] if settings is UNSET else check_tool_settings(settings)
        secret_values = (self._secret_values(tenant, tool_id) if secrets is UNSET else check_tool_secrets(secrets))
        if dependencies is not UNSET:
            check_resolvable(deps, timeout=self.settings.tool_dependency_timeout)
        meta = self._validate(tenant, current["name"], source, options, secret_values)
        version = self._version_row(meta, described, source, deps, options)
        sealed = None if secrets is UNSET else seal_tool_secrets(self._secrets(), tenant, tool_id, secret_values)
        number = self.storage.add_tool_version(tenant, tool_id, version, sealed)  # type: ignore[arg-type]
        self._write_file(tenant, tool_id, source)
        return number

    def get(self, tenant: str, tool_id: object, version: int | None = None) -> dict[str, Any]:
        """A tool this tenant can use: its own (with ``code``), or an enabled package tool."""
        tool_id = check_id(tool_id, "tool")
        if tool_id.startswith(PACKAGE_PREFIX):
            return self._package_view(tenant, self._enabled(tenant, tool_id))
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise NotFoundError("tool version", f"{tool_id}@{version!r}")
        row = self.storage.get_tool(tenant, tool_id, version)
        return public_tool(row, self.storage.tool_secrets(tenant, tool_id), with_code=True)

    def versions(self, tenant: str, tool_id: object) -> list[dict[str, Any]]:
        """Every version of one of the tenant's tools: number, creation time, source hash."""
        tool_id = check_id(tool_id, "tool")
        if tool_id.startswith(PACKAGE_PREFIX):
            row = self._enabled(tenant, tool_id)
            return [{"version": row["version"], "created_at": row["updated_at"], "source_sha256": row["content_sha256"]}]
        return self.storage.list_tool_versions(tenant, tool_id)

    def list(self, tenant: str) -> list[dict[str, Any]]:
        """The tools this tenant can use: its own, oldest first, then its enabled package tools (one
        whose package is gone is listed with ``available`` False and the reason)."""
        secrets = self.storage.all_tool_secrets(tenant)
        own = [public_tool(row, secrets.get(row["id"], []), with_code=False) for row in self.storage.list_tools(tenant)]
        return own + [self._package_view(tenant, row, secrets.get(package_tool_id(row["name"]), []))
                      for row in self.catalog.enabled(tenant, include_unavailable=True)]

    def delete(self, tenant: str, tool_id: object) -> None:
        """Delete one of the tenant's own tools, every version, its secrets and its file."""
        tool_id = check_id(tool_id, "tool")
        self.storage.delete_tool(tenant, tool_id)
        self._path(tenant, tool_id).unlink(missing_ok=True)

    # -- package tools ------------------------------------------------------------------------

    def enable_package(self, tenant: str, name: object, *, settings: object = None, secrets: object = None) -> str:
        """Let the tenant use a package tool (with its own settings and secrets); return its id."""
        row = self.catalog.local().get(name) if isinstance(name, str) else None  # what this process can run
        if row is None:
            raise NotFoundError("package tool", str(name)[:128])
        options = check_tool_settings(settings) if settings is not None else None
        secret_values = check_tool_secrets(secrets) if secrets is not None else None
        check_package_tool_name(self.storage, tenant, row["name"])
        tool_id = package_tool_id(row["name"])
        sealed = (seal_tool_secrets(self._secrets(), tenant, tool_id, secret_values)
                  if secret_values is not None else None)
        self.storage.enable_package_tool(tenant, row["name"], options, sealed)  # type: ignore[arg-type]
        return tool_id

    def disable_package(self, tenant: str, name: object) -> None:
        """Stop the tenant from using a package tool; :class:`NotFoundError` when it was not enabled."""
        if not isinstance(name, str) or not self.storage.disable_package_tool(tenant, name):
            raise NotFoundError("package tool", str(name)[:128])

    def _enabled(self, tenant: str, tool_id: str, enabled: list[CatalogRow] | None = None) -> dict[str, Any]:
        """The tenant's enabled package tool ``pkg:<name>`` (from ``enabled``, the tenant's list, when
        the caller has read it)."""
        name = tool_id[len(PACKAGE_PREFIX):]
        for row in enabled if enabled is not None else self.catalog.enabled(tenant, include_unavailable=True):
            if row["name"] == name:
                return dict(row)
        raise NotFoundError("tool", tool_id)

    def _package_view(self, tenant: str, row: Any, secrets: list[SecretRow] | None = None) -> dict[str, Any]:
        if secrets is None:
            secrets = self.storage.tool_secrets(tenant, package_tool_id(row["name"]))
        return {**public_package_tool(row, self.plugins), "settings": row.get("settings") or {},
                "secrets": {secret["name"]: secret["masked"] for secret in secrets}}

    # -- runs ---------------------------------------------------------------------------------

    def resolve(self, tenant: str, tool_ids: list[Any]) -> tuple[ToolSpec, ...]:
        """What a run needs to build these tools (``"<id>@<n>"`` pins a version).

        :class:`NotFoundError` for a tool this tenant cannot use; :class:`ValidationError` when two
        tools would share a name in the agent or two of their secrets the same variable.
        """
        specs = []
        enabled: list[CatalogRow] | None = None  # the tenant's package tools, read once for the run
        for ref in tool_ids:
            tool_id, version = split_tool_ref(ref)
            if tool_id.startswith(PACKAGE_PREFIX):
                if enabled is None:
                    enabled = self.catalog.enabled(tenant, include_unavailable=True)
                specs.append(self._package_spec(tenant, tool_id, enabled))
            else:
                specs.append(self._tenant_spec(tenant, tool_id, version))
        names = [spec.name for spec in specs]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValidationError("tool_ids", f"two tools are named {duplicates[0]!r}; an agent needs unique names")
        seen: dict[str, str] = {}
        for spec in specs:
            for variable, value in spec.env.items():
                if seen.setdefault(variable, value) != value:
                    raise ValidationError("tool_ids", f"two tools of this run have a different secret {variable!r}")
        return tuple(specs)

    def _tenant_spec(self, tenant: str, tool_id: str, version: int | None) -> ToolSpec:
        row = self.storage.get_tool(tenant, tool_id, version)
        secret_values = self._secret_values(tenant, tool_id)
        return ToolSpec(
            id=tool_id, name=row["name"], description=row["description"], origin="tenant", inputs=row["inputs"],
            output_type=row["output_type"], output_schema=row["output_schema"], source=row["source"],
            entry=row["entry"], version=row["version"], dependencies=tuple(row["dependencies"]),
            init_kwargs={**row["settings"], **secret_values}, env=secret_values,
        )

    def _package_spec(self, tenant: str, tool_id: str, enabled: list[CatalogRow]) -> ToolSpec:
        row = self._enabled(tenant, tool_id, enabled)
        entry = usable_package_tool(row, self.plugins)
        secret_values = self._secret_values(tenant, tool_id)
        return ToolSpec(
            id=tool_id, name=row["name"], description=row["description"], origin="package", inputs=row["inputs"],
            output_type=row["output_type"], version=row["version"], distribution=row["distribution"],
            entry_point=entry.entry_point, host_tool=entry if entry.entry_point is None else None,
            init_kwargs={**(row.get("settings") or {}), **secret_values}, env=secret_values,
        )

    # -- helpers ------------------------------------------------------------------------------

    def _description(self, description: object) -> str | None:
        if description is None:
            return None
        return check_text("description", description, max_length=MAX_DESCRIPTION, error=tool_error)

    def _source(self, code: object, limits: Limits) -> str:
        size = len(code.encode("utf-8", "surrogatepass")) if isinstance(code, str) else 0
        if size > limits.max_tool_source_bytes:
            raise exceeded("max_tool_source_bytes", size, limits.max_tool_source_bytes, "the tool's source in bytes")
        return check_tool_source(code, max_bytes=MAX_TOOL_SOURCE_BYTES)

    def _secret_values(self, tenant: str, tool_id: str) -> dict[str, str]:
        rows = self.storage.tool_secrets(tenant, tool_id)
        if not rows:
            return {}
        box = self._secrets()
        return {row["name"]: box.decrypt(row["ciphertext"], tenant=tenant, context=tool_secret_context(tool_id, row["name"]))
                for row in rows}

    def _validate(self, tenant: str, name: str, source: str, settings: dict[str, Any],
                  secret_values: dict[str, str]) -> dict[str, Any]:
        """Build the tool in a fresh sandbox process as a run would; its metadata, or ToolValidationError."""
        from .executors import local_executor, IN_PROCESS
        from .sandbox.local import validate_source

        confined = local_executor(self.plugins, self.settings).name != IN_PROCESS
        with self.slots.hold(tenant):
            answer = validate_source(
                self.settings, name=name, code=source, init_kwargs={**settings, **secret_values}, env=secret_values,
                modules=self.plugins.modules(), timeout=self.settings.tool_check_timeout, confined=confined,
            )
        if not answer.get("ok"):
            raise ToolValidationError(redact(str(answer.get("error")), secret_values.values()), line=answer.get("line"))
        return answer

    @staticmethod
    def _version_row(meta: dict[str, Any], description: str | None, source: str, deps: list[str],
                     settings: dict[str, Any]) -> ToolVersionRow:
        return {
            "description": description or meta["description"], "kind": meta["kind"], "entry": meta["entry"],
            "source": source, "source_sha256": hashlib.sha256(source.encode()).hexdigest(), "inputs": meta["inputs"],
            "output_type": meta["output_type"], "output_schema": meta.get("output_schema"), "dependencies": deps,
            "settings": settings, "created_at": utcnow(),
        }

    def _path(self, tenant: str, tool_id: str) -> Path:
        return Path(self.settings.home) / "tools" / tenant / f"{tool_id}.py"

    def _write_file(self, tenant: str, tool_id: str, source: str) -> None:
        """Write the tool's latest source to ``<home>/tools/<tenant>/<id>.py`` (never read back to run)."""
        path = self._path(tenant, tool_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(source, encoding="utf-8")
        os.replace(temporary, path)
