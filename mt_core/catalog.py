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
    own = next((row for row in storage.list_tools(tenant) if row["name"] == name), None)
    if own is not None:
        raise ConflictError(
            f"this tenant's own tool {own['id']} is named {name!r}, so the package tool {name!r}"
            f" ({package_tool_id(name)}) cannot be enabled beside it (an agent needs unique tool names);"
            " delete or rename the tenant's tool first"
        )


class Catalog:
    """The package tools installed plugins provide, recorded in the database once per installation."""

    def __init__(self, storage: Storage, plugins: Plugins) -> None:
        self.storage = storage
        self.plugins = plugins
        self._synced = False
        self._lock = threading.Lock()

    def sync(self) -> None:
        """Record new or changed package tools and mark uninstalled ones unavailable (once).

        Writes only what changed, so an unchanged installation costs one read.
        """
        if self._synced:
            return
        with self._lock:
            if self._synced:
                return
            recorded = self.storage.catalog()
            changed: list[CatalogRow] = []
            for name, entry in self.plugins.tools.items():
                digest = fingerprint(entry)
                row = recorded.get(name)
                if row is None or row["content_sha256"] != digest or row["version"] != entry.version or not row["available"]:
                    changed.append({
                        "name": name, "plugin": entry.plugin, "distribution": entry.distribution,
                        "version": entry.version, "description": entry.tool.description,
                        "inputs": dict(entry.tool.inputs), "output_type": entry.tool.output_type,
                        "content_sha256": digest,
                    })
            vanished = [name for name, row in recorded.items() if row["available"] and name not in self.plugins.tools]
            if changed or vanished:
                self.storage.upsert_catalog(changed, vanished)
            self._synced = True

    def all(self) -> list[dict[str, Any]]:
        """Every package tool recorded, with whether it is installed now."""
        self.sync()
        return [{**public_package_tool(row), "available": row["available"]} for row in self.storage.catalog().values()]

    def enabled(self, tenant: str, *, include_unavailable: bool = False) -> list[CatalogRow]:
        """The package tools ``tenant`` has enabled that are installed (or all of them)."""
        self.sync()
        return [row for row in self.storage.enabled_package_tools(tenant) if include_unavailable or row["available"]]
