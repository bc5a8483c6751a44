"""mt-core: a multi-tenant agent framework on smolagents.

Importing this package is cheap: it opens no database, loads no plugin and does not import
smolagents. Names are resolved from their modules on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "add_tool": "api", "get_tool": "api", "get_tools": "api", "delete_tool": "api", "update_tool": "api",
    "get_tool_versions": "api",
    "add_llm": "api", "update_llm": "api", "get_llm_config": "api", "get_llms": "api", "delete_llm": "api",
    "run_query": "api", "get_run": "api", "get_runs": "api", "tenant": "api",
    "get_usage": "api", "set_limits": "api",
    "configure": "api", "get_core": "api",
    "enable_package_tool": "api", "disable_package_tool": "api", "get_package_tools": "api",
    "MTCore": "core", "Tenant": "core", "QueryResult": "runs", "Settings": "config",
    "hookimpl": "hookspecs", "LLMConfig": "llms", "FieldSpec": "fields", "ExecutorContext": "executors", "ToolSpec": "executors",
    "SandboxFallbackWarning": "errors", "SandboxUnavailableError": "errors", "SandboxError": "errors",
    "ExecutorAbort": "errors", "StepTimeout": "errors", "SandboxCrashed": "errors",
    "MTError": "errors", "ValidationError": "errors", "TenantError": "errors",
    "ToolValidationError": "errors", "LLMConfigError": "errors", "BlockedAddressError": "errors",
    "NotFoundError": "errors",
    "ConflictError": "errors", "QuotaExceededError": "errors", "BudgetExceededError": "errors", "RunError": "errors",
    "SecretError": "errors", "PluginError": "errors", "KeyRotationError": "errors",
    "SandboxUnavailableError": "errors", "ToolUnavailableError": "errors", "DatabaseError": "errors",
    "LLMCallError": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mt_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"mt_core.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
