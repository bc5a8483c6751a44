"""Storage: one narrow interface (:class:`Storage`) and its implementations.

No caller knows which implementation it has; :func:`open_storage` picks one from a location.
"""

from __future__ import annotations

import os
from pathlib import Path

from .base import (
    TABLES, BreakerRow, BudgetLimits, CacheRow, CatalogRow, LLMAttemptRow, LLMRow, ReservationRow, RunQuota, RunRow,
    SecretRow, Storage, StoredSecret, ToolCallRow, ToolRow, ToolVersionRow, utcnow,
)

__all__ = ["TABLES", "BreakerRow", "BudgetLimits", "CacheRow", "CatalogRow", "LLMAttemptRow", "LLMRow",
           "ReservationRow", "RunQuota", "RunRow", "SecretRow", "Storage", "StoredSecret", "ToolCallRow", "ToolRow",
           "ToolVersionRow", "is_postgres_url", "open_storage", "sqlite_path", "utcnow"]

SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIXES = ("postgresql://", "postgres://")


def is_postgres_url(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` is a PostgreSQL URL."""
    return isinstance(location, str) and location.startswith(POSTGRES_PREFIXES)


def sqlite_path(location: str | os.PathLike[str]) -> Path | None:
    """The file of a SQLite location (a path or a ``sqlite:///path`` URL); ``None`` for PostgreSQL."""
    if is_postgres_url(location):
        return None
    text = os.fspath(location)
    return Path(text[len(SQLITE_PREFIX):] if text.startswith(SQLITE_PREFIX) else text)


def open_storage(location: str | os.PathLike[str]) -> Storage:
    """The storage at ``location``: a SQLite file path, a ``sqlite:///path`` URL (``sqlite:////abs``
    for an absolute path), or a ``postgresql://`` URL (psycopg is imported only then)."""
    if is_postgres_url(location):
        from .postgresql import PostgresStorage

        return PostgresStorage(str(location))
    from .sqlite import SQLiteStorage

    return SQLiteStorage(sqlite_path(location))  # type: ignore[arg-type]
