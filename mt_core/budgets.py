"""Budgets: what a tenant may spend, in US dollars per UTC day and month and in tokens per UTC day.

A budget is checked in the database, under the tenant's lock, so that it holds across threads,
processes and machines:

- when a run starts (:meth:`~mt_core.storage.base.Storage.start_run`): a tenant with no room left
  in a budget cannot start one (:class:`~mt_core.errors.QuotaExceededError`, no run recorded);
- before each LLM request (:meth:`~mt_core.storage.base.Storage.reserve_llm_call`): the gateway
  reserves what the request may cost, and settles the reservation with what it did cost when
  the attempt is recorded. A run whose request finds no room stops there, with status
  ``budget_exceeded``.

"Room" means that what the tenant's LLM attempts spent in the window, plus what requests still in
flight hold, is below the limit. A request let through may cost more than the room left, so
concurrent runs of a tenant may overshoot a budget by at most the requests already in flight.
Attempts nobody has a price for count toward ``tokens_per_day`` only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .errors import QuotaExceededError
from .prices import format_usd
from .storage.base import BudgetLimits

BUDGETS = ("budget_usd_per_day", "budget_usd_per_month", "tokens_per_day")
RESERVATION_SLACK_SECONDS = 60.0  # how long past its own deadline a reservation still counts
CHARS_PER_TOKEN = 4  # the estimate of a request's input tokens, before the provider counts them


def budget_limits(values: dict[str, Any]) -> BudgetLimits:
    """The budgets set among ``values`` (a tenant's limits): those that are not ``None``."""
    return {name: values[name] for name in BUDGETS if values.get(name) is not None}  # type: ignore[return-value]


def day_start(now: datetime) -> datetime:
    """The start of the UTC day of ``now``."""
    now = now.astimezone(timezone.utc)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def month_start(now: datetime) -> datetime:
    """The start of the UTC month of ``now``."""
    return day_start(now).replace(day=1)


def iso(moment: datetime) -> str:
    """``moment`` as stored: ISO 8601 in UTC with microseconds (sorts as text)."""
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Spending:
    """What a tenant's LLM attempts spent in the current UTC day and month, and what requests in
    flight hold (their reservations)."""

    usd_day: float = 0.0
    usd_month: float = 0.0
    tokens_day: int = 0
    held_usd: float = 0.0
    held_tokens: int = 0


def over_budget(budgets: BudgetLimits, spending: Spending, now: datetime) -> QuotaExceededError | None:
    """The error for the first budget with no room left, or ``None`` when every one has room."""
    day = day_start(now).date().isoformat()
    checks = (
        ("budget_usd_per_day", spending.usd_day, spending.held_usd, f"on {day} (UTC)"),
        ("budget_usd_per_month", spending.usd_month, spending.held_usd, f"in {day[:7]} (UTC)"),
        ("tokens_per_day", spending.tokens_day, spending.held_tokens, f"on {day} (UTC)"),
    )
    for name, used, held, when in checks:
        limit = budgets.get(name)  # type: ignore[misc]
        if limit is None or used + held < limit:
            continue
        if name == "tokens_per_day":
            spent, of, more = f"used {used:,} tokens", f"{int(limit):,}", f"{held:,} tokens"
        else:
            spent, of, more = f"spent {format_usd(used)}", format_usd(limit), format_usd(held)
        flight = f" (and LLM calls in flight hold {more} more)" if held else ""
        return QuotaExceededError(f"{name}: this tenant has {spent} {when}{flight}; its budget is {of}")
    return None


def estimate_tokens(messages: list[Any], max_tokens: object = None) -> tuple[int, int]:
    """An estimate of a request's (input, output) tokens before it is sent: its messages' text at
    :data:`CHARS_PER_TOKEN` characters a token, and the configuration's ``max_tokens`` (else 0)."""
    chars = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else getattr(message, "content", None)
        if isinstance(content, list):
            chars += sum(len(str(part.get("text", ""))) for part in content if isinstance(part, dict))
        elif content is not None:
            chars += len(content) if isinstance(content, str) else len(json.dumps(content, default=str))
    output = max_tokens if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) else 0
    return chars // CHARS_PER_TOKEN, output


def reservation_expiry(now: datetime, seconds: float) -> datetime:
    """When a reservation made at ``now`` for a request that may take ``seconds`` stops counting."""
    return now + timedelta(seconds=seconds + RESERVATION_SLACK_SECONDS)
