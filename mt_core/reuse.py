"""Get-or-create for tools and LLM configurations: adding a definition again under a taken name
returns the stored id when it is the same (``exist_ok=True``), else a :class:`ConflictError` that
says how to proceed. Keys and secrets are compared by decrypting the stored ones, never stored in
plaintext."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from .errors import ConflictError


def reuse_or_conflict(noun: str, name: str, row: dict[str, Any] | None, given: dict[str, Any],
                      stored: Callable[[dict[str, Any]], dict[str, Any]], exist_ok: bool) -> str | None:
    """``None`` when no ``row`` has the name; the row's id when ``exist_ok`` and every field of
    ``given`` equals the stored one (``stored(row)``, secrets decrypted); else :class:`ConflictError`."""
    if row is None:
        return None
    differs: list[str] = []
    if exist_ok:
        values = stored(row)
        differs = [what for what, value in given.items() if not _same(values.get(what), value)]
        if not differs:
            return str(row["id"])
        raise ConflictError(
            f"this tenant already has {noun} named {name!r} ({row['id']}) with a different {' and '.join(differs)};"
            " delete it first to replace it, or choose another name"
        )
    raise ConflictError(
        f"this tenant already has {noun} named {name!r} ({row['id']}); pass exist_ok=True to reuse it when the"
        " definition is the same, or choose another name"
    )


def _same(stored: Any, given: Any) -> bool:
    if isinstance(stored, str) and isinstance(given, str):
        return hmac.compare_digest(stored.encode(), given.encode())
    return bool(stored == given)
