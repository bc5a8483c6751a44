"""Generated object ids: a kind prefix and 128 random bits, never derived from user text."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    """A new id such as ``tool_3f9a...`` (prefix, underscore, 32 hex digits)."""
    return f"{prefix}_{secrets.token_hex(16)}"


def check_id(value: object, kind: str) -> str:
    """An id as given by a caller: a non-empty string of at most 128 characters without NUL.

    Anything else is simply not found, with the same :class:`~mt_core.errors.NotFoundError` (and
    message) as an id that belongs to another tenant or never existed.
    """
    from .errors import NotFoundError

    if not isinstance(value, str) or not value or len(value) > 128 or "\x00" in value:
        raise NotFoundError(kind, _shown(value))
    return value


def _shown(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text[:128]
