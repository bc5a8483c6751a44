"""The global catalog of package tools: kept in step with what installed plugins register."""

from __future__ import annotations

import hashlib
import inspect
import json
import threading
from typing import Any

from .errors import ConflictError, ToolUnavailableError
from .plugins import PackageTool, Plugins
from .storage import CatalogRow, Storage

PACKAGE_PREFIX = "pkg:"


def package_tool_id(name: str) -> str:
    """The id under which a package tool is used in ``tool_ids`` (``pkg:<name>``)."""
    return f"{PACKAGE_PREFIX}{name}"


def fingerprint(entry: PackageTool) -> str:
    """A hash of a package tool's metadata and source: changes when the tool does."""
    tool = entry.tool
    try:
        source = inspect.getsource(type(tool)) if type(tool).__name__ != "SimpleTool" else inspect.getsource(tool.forward)
    except (OSError, TypeError):
        source = ""
    payload = json.dumps(
        [entry.name, entry.version, tool.description, tool.inputs, tool.output_type, source], sort_keys=True, default=str
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def public_package_tool(row: CatalogRow, plugins: Plugins | None = None) -> dict[str, Any]:
    """How a package tool is shown to a tenant (same keys as a tenant tool, plus its origin); an
    unavailable one says why when ``plugins`` is given."""
    available = bool(row.get("available", True))
    return {
        "id": package_tool_id(row["name"]), "name": row["name"], "description": row["description"],
        "inputs": row["inputs"], "output_type": row["output_type"], "version": row["version"],
        "dependencies": [], "origin": "package", "kind": "package", "plugin": row["plugin"],
        "distribution": row["distribution"], "created_at": row.get("enabled_at") or row["updated_at"],
        "available": available,
        "unavailable_reason": None if available or plugins is None else unavailable_reason(row, plugins),
    }


def unavailable_reason(row: CatalogRow, plugins: Plugins) -> str:
    """Why a recorded package tool is not registered in this process (uninstalled, not loaded, broken)."""
    from importlib import metadata

    from .plugins import normalize_dist_name

    distribution = row["distribution"] or row["plugin"]
    info = plugins.infos.get(row["plugin"])
    if info is not None and info.error:
        return f"its plugin {row['plugin']!r} failed to load: {info.error}"
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return f"its distribution {distribution!r} is not installed (pip install it again, or disable the tool)"
    except ValueError:  # no distribution recorded (an in-process plugin)
        return f"its plugin {row['plugin']!r} is not loaded"
    if plugins.allow is not None and normalize_dist_name(distribution) not in plugins.allow:
        return f"its distribution {distribution!r} is installed but MT_LOAD_PLUGINS does not name it"
    return f"its distribution {distribution!r} no longer registers a tool named {row['name']!r}"


def usable_package_tool(row: CatalogRow, plugins: Plugins) -> PackageTool:
    """The registered tool behind an enabled package tool; :class:`ToolUnavailableError` naming what is missing."""
    entry = plugins.tools.get(row["name"]) if row.get("available", True) else None
    if entry is None:
        raise ToolUnavailableError(
            f"tool {package_tool_id(row['name'])!r} is unavailable: {unavailable_reason(row, plugins)}"
        )
    return entry


def check_own_tool_name(storage: Storage, tenant: str, name: str) -> None:
    """Refuse a tenant tool named like a package tool the tenant enabled (an agent needs unique names)."""
    if any(row["name"] == name for row in storage.enabled_package_tools(tenant)):
        raise ConflictError(
            f"this tenant has enabled the package tool {name!r} ({package_tool_id(name)}), and an agent needs"
            f" unique tool names: choose another name, or disable the package tool first (`mt tools disable {name}`)"
        )


def check_package_tool_name(storage: Storage, tenant: str, name: str) -> None:
    """Refuse to enable a package tool whose name one of the tenant's own tools has."""
    own = storage.find_tool(tenant, name)
    if own is not None:
        raise ConflictError(
            f"this tenant's own tool {own['id']} is named {name!r}, so the package tool {name!r}"
            f" ({package_tool_id(name)}) cannot be enabled beside it (an agent needs unique tool names);"
            " delete or rename the tenant's tool first"
        )


class Catalog:
    """The package tools of this process's plugins, and the global catalog in the database.

    Every process sharing a database records the tools its plugins register (their metadata, by
    name; never deleted, so a tenant's enablement outlives an uninstall). Whether a tool is
    *available* is not stored: it is whether this process's plugins register it, so two
    machines with different plugins each see exactly what they can run, and neither changes what
    the other sees. A tool this process has is shown with its own metadata.
    """

    def __init__(self, storage: Storage, plugins: Plugins) -> None:
        self.storage = storage
        self.plugins = plugins
        self._local: dict[str, CatalogRow] | None = None
        self._lock = threading.Lock()

    def local(self) -> dict[str, CatalogRow]:
        """The package tools of this process's plugins, by name (recorded in the database once)."""
        if self._local is not None:
            return self._local
        with self._lock:
            if self._local is None:
                local: dict[str, CatalogRow] = {
                    name: {
                        "name": name, "plugin": entry.plugin, "distribution": entry.distribution,
                        "version": entry.version, "description": entry.tool.description,
                        "inputs": dict(entry.tool.inputs), "output_type": entry.tool.output_type,
                        "content_sha256": fingerprint(entry),
                    }
                    for name, entry in self.plugins.tools.items()
                }
                recorded = self.storage.catalog()
                changed = [row for name, row in local.items() if _should_record(row, recorded.get(name))]
                if changed:
                    self.storage.record_catalog(changed)
                self._local = local
        return self._local

    def all(self) -> list[dict[str, Any]]:
        """Every package tool recorded by any process, with whether this process can run it."""
        local = self.local()
        rows = self.storage.catalog()
        for name, row in local.items():
            rows[name] = {**rows.get(name, {"updated_at": None}), **row}  # type: ignore[typeddict-item]
        return [{**public_package_tool(row), "available": name in local} for name, row in sorted(rows.items())]

    def enabled(self, tenant: str, *, include_unavailable: bool = False) -> list[CatalogRow]:
        """The package tools ``tenant`` has enabled that this process can run (with its settings),
        and with ``include_unavailable`` the others too, as recorded, with ``available`` False."""
        local = self.local()
        found: list[CatalogRow] = []
        for row in self.storage.enabled_package_tools(tenant):
            if row["name"] in local:
                found.append({**local[row["name"]], "enabled_at": row["enabled_at"],  # type: ignore[typeddict-item]
                              "settings": row.get("settings") or {}, "updated_at": row["updated_at"], "available": True})
            elif include_unavailable:
                found.append({**row, "available": False})
        return found


def _should_record(mine: CatalogRow, recorded: CatalogRow | None) -> bool:
    """Whether this process's metadata of a tool goes into the database: when the tool is new there,
    or this is a newer distribution version than the one recorded, or the same version with other
    content. An older version never overwrites a newer one, so installations at different versions
    do not rewrite the row back and forth."""
    if recorded is None:
        return True
    if recorded["content_sha256"] == mine["content_sha256"]:
        return False
    ours, theirs = _version(mine.get("version")), _version(recorded.get("version"))
    if ours is None or theirs is None:
        return mine.get("version") == recorded.get("version")
    return ours >= theirs


def _version(text: str | None) -> Any:
    """A comparable version (``packaging``), or ``None`` when it cannot be parsed."""
    try:
        from packaging.version import InvalidVersion, Version
    except ImportError:  # pragma: no cover - packaging comes with smolagents' dependencies
        return None
    try:
        return Version(text or "")
    except InvalidVersion:
        return None
