"""Per-tenant limits: what one tenant may hold and use, so no tenant can starve another."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from .errors import QuotaExceededError, ValidationError


@dataclass(frozen=True)
class Limits:
    """A tenant's limits (defaults shown). Every write that would exceed one raises
    :class:`QuotaExceededError` and writes nothing.

    Args:
        max_tools: tools the tenant may own.
        max_llms: LLM configurations the tenant may own.
        max_concurrent_runs: runs of the tenant in progress at once.
        runs_per_minute: runs the tenant may start in any 60 seconds.
        max_steps: the highest ``max_steps`` a run may ask for.
        max_query_length: characters in one query.
        max_tool_source_bytes: bytes of one tool's source.
    """

    max_tools: int = 1000
    max_llms: int = 100
    max_concurrent_runs: int = 8
    runs_per_minute: int = 120
    max_steps: int = 20
    max_query_length: int = 20_000
    max_tool_source_bytes: int = 256 * 1024

    @classmethod
    def names(cls) -> list[str]:
        """The names of all limits."""
        return [f.name for f in fields(cls)]

    @classmethod
    def from_row(cls, row: dict[str, Any] | None) -> "Limits":
        """Limits from a ``tenant_limits`` row, defaults where it has NULL (or no row)."""
        values = {name: row[name] for name in cls.names() if row and row.get(name) is not None}
        return cls(**values)

    def as_dict(self) -> dict[str, int]:
        """The limits as a plain dict."""
        return asdict(self)


def check_limit_values(values: dict[str, Any]) -> dict[str, int | None]:
    """Validate new limit values: known names, positive integers, or ``None`` for the default."""
    clean: dict[str, int | None] = {}
    for name, value in values.items():
        if name not in Limits.names():
            raise ValidationError(name, f"is not a limit (limits: {', '.join(Limits.names())})")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValidationError(name, "must be a positive integer, or None for the default")
        clean[name] = value
    return clean


def exceeded(limit: str, value: int, allowed: int, what: str) -> QuotaExceededError:
    """The error for a tenant going over ``limit``."""
    return QuotaExceededError(f"{limit}: {what} would be {value}; this tenant's limit is {allowed}")
