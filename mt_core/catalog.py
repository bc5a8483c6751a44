"""The global catalog of package tools: kept in step with what installed plugins register."""

from __future__ import annotations

import hashlib
import inspect
import json
import threading
from typing import Any

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


def public_package_tool(row: CatalogRow) -> dict[str, Any]:
    """How a package tool is shown to a tenant (same keys as a tenant tool, plus its origin)."""
    return {
        "id": package_tool_id(row["name"]), "name": row["name"], "description": row["description"],
        "inputs": row["inputs"], "output_type": row["output_type"], "version": row["version"],
        "dependencies": [], "origin": "package", "kind": "package", "plugin": row["plugin"],
        "distribution": row["distribution"], "created_at": row.get("enabled_at") or row["updated_at"],
    }


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

    def enabled(self, tenant: str) -> list[CatalogRow]:
        """The package tools ``tenant`` has enabled that are installed."""
        self.sync()
        return [row for row in self.storage.enabled_package_tools(tenant) if row["available"]]
