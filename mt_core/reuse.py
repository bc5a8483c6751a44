"""Get-or-create for tools and LLM configurations: adding a definition again under a taken name
returns the stored id when it is the same (``exist_ok=True``), else a :class:`ConflictError` that
says how to proceed. API keys are compared by decrypting the stored one, never stored in plaintext."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

from .errors import ConflictError

if TYPE_CHECKING:
    from .core import Tenant


def existing_tool(
    handle: "Tenant", name: str, *, description: str, code: Any, dependencies: list[str], exist_ok: bool
) -> str | None:
    """The id of the tenant's tool ``name`` when ``exist_ok`` and it has the same description, code
    and dependencies; ``None`` when the name is free; else :class:`ConflictError`."""
    row = _named(handle, "tools", name)
    if row is None:
        return None
    differs = [] if not exist_ok else [
        what for what, stored, given in (
            ("description", row["description"], description), ("code", row["source"], code),
            ("dependencies", row["dependencies"], dependencies),
        ) if stored != given
    ]
    return _reuse_or_conflict("a tool", name, row["id"], differs, exist_ok)


def existing_llm(
    handle: "Tenant", name: str, *, provider: str, clean: dict[str, Any], exist_ok: bool
) -> str | None:
    """The id of the tenant's LLM configuration ``name`` when ``exist_ok`` and its provider, model,
    base URL, options and API key are the same; ``None`` when the name is free; else :class:`ConflictError`."""
    row = _named(handle, "llms", name)
    if row is None:
        return None
    differs: list[str] = []
    if exist_ok:
        differs = [
            what for what, stored, given in (
                ("provider", row["provider"], provider), ("model_name", row["model_name"], clean["model_name"]),
                ("base_url", row["base_url"], clean["base_url"]), ("options", row["options"], clean["options"]),
            ) if stored != given
        ]
        if not differs and not _same_secret(handle.llm_config(row["id"]).api_key, clean["api_key"]):
            differs.append("api_key")
    return _reuse_or_conflict("an LLM configuration", name, row["id"], differs, exist_ok)


def _named(handle: "Tenant", table: str, name: str) -> dict[str, Any] | None:
    return next((row for row in handle.core.storage.list(table, handle.name) if row["name"] == name), None)


def _same_secret(stored: str | None, given: str | None) -> bool:
    if stored is None or given is None:
        return stored is given
    return hmac.compare_digest(stored.encode(), given.encode())


def _reuse_or_conflict(noun: str, name: str, object_id: str, differs: list[str], exist_ok: bool) -> str:
    if exist_ok and not differs:
        return object_id
    if exist_ok:
        raise ConflictError(
            f"this tenant already has {noun} named {name!r} ({object_id}) with a different {' and '.join(differs)};"
            " delete it first to replace it, or choose another name"
        )
    raise ConflictError(
        f"this tenant already has {noun} named {name!r} ({object_id}); pass exist_ok=True to reuse it when the"
        " definition is the same, or choose another name"
    )
