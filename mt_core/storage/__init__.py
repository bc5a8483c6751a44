"""Storage: one narrow interface (:class:`Storage`) and its implementations.

No caller knows which implementation it has; :func:`open_storage` picks one from a location.
"""

from __future__ import annotations

import os
from pathlib import Path

from .base import (
    BreakerRow, CacheRow, CatalogRow, LLMAttemptRow, LLMRow, RunQuota, RunRow, SecretRow, Storage, StoredSecret,
    ToolRow, ToolVersionRow, utcnow,
)

__all__ = ["BreakerRow", "CacheRow", "CatalogRow", "LLMAttemptRow", "LLMRow", "RunQuota", "RunRow", "SecretRow",
           "Storage", "StoredSecret", "ToolRow", "ToolVersionRow", "open_storage", "utcnow"]


def open_storage(location: str | os.PathLike[str]) -> Storage:
    """The storage at ``location``: a SQLite file path or a ``sqlite:///path`` URL."""
    from .sqlite import SQLiteStorage

    text = os.fspath(location)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///"):]
    return SQLiteStorage(Path(text))
