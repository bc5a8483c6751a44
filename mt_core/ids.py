"""Generated object ids: a kind prefix and 128 random bits, never derived from user text."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    """A new id such as ``tool_3f9a...`` (prefix, underscore, 32 hex digits)."""
    return f"{prefix}_{secrets.token_hex(16)}"
