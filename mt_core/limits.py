"""Per-tenant limits: what one tenant may hold and use, so no tenant can starve another."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from decimal import Decimal
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
        budget_usd_per_day: US dollars the tenant's LLM calls may cost in a UTC day (default: no budget).
        budget_usd_per_month: US dollars they may cost in a UTC month (default: no budget).
        tokens_per_day: input and output tokens they may use in a UTC day (default: no budget).

    Budgets are checked when a run starts and before each LLM request (see :mod:`mt_core.budgets`).
    """

    max_tools: int = 1000
    max_llms: int = 100
    max_concurrent_runs: int = 8
    runs_per_minute: int = 120
    max_steps: int = 20
    max_query_length: int = 20_000
    max_tool_source_bytes: int = 256 * 1024
    budget_usd_per_day: float | None = None
    budget_usd_per_month: float | None = None
    tokens_per_day: int | None = None

    @classmethod
    def names(cls) -> list[str]:
        """The names of all limits."""
        return [f.name for f in fields(cls)]

    @classmethod
    def from_row(cls, row: dict[str, Any] | None) -> "Limits":
        """Limits from a ``tenant_limits`` row, defaults where it has NULL (or no row)."""
        values = {name: row[name] for name in cls.names() if row and row.get(name) is not None}
        return cls(**values)

    def as_dict(self) -> dict[str, int | float | None]:
        """The limits as a plain dict."""
        return asdict(self)


USD_LIMITS = ("budget_usd_per_day", "budget_usd_per_month")


def check_limit_values(values: dict[str, Any]) -> dict[str, int | float | None]:
    """Validate new limit values: known names; positive integers, or positive numbers of US
    dollars for the ``budget_usd_*`` budgets; ``None`` for the default (for a budget: none)."""
    clean: dict[str, int | float | None] = {}
    for name, value in values.items():
        if name not in Limits.names():
            raise ValidationError(name, f"is not a limit (limits: {', '.join(Limits.names())})")
        if value is None:
            clean[name] = None
        elif name in USD_LIMITS:
            if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)) \
                    or not math.isfinite(float(value)) or float(value) <= 0:
                raise ValidationError(name, "must be a positive number of US dollars, or None for no budget")
            clean[name] = float(value)
        elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValidationError(name, "must be a positive integer, or None for the default")
        else:
            clean[name] = value
    return clean


def exceeded(limit: str, value: int, allowed: int, what: str) -> QuotaExceededError:
    """The error for a tenant going over ``limit``."""
    return QuotaExceededError(f"{limit}: {what} would be {value}; this tenant's limit is {allowed}")
