"""Circuit breakers of LLM configurations, shared by every process on the same database.

States: ``closed`` (calls go through; failures are counted in a window), ``open`` (the
configuration is skipped until ``open_until``), ``half_open`` (the cooldown is over and one trial
call holds a lease until ``trial_until``; its success closes the breaker, its failure opens it
again). The transitions are pure functions of a :class:`~mt_core.storage.BreakerRow`; each is
applied through :meth:`Storage.update_breaker`, one transaction per change, so ten workers see
one state and the first to find an outage spares the others.

Only outages count (429, 5xx, timeouts, connection errors: :attr:`Failure.counts`); an answer
such as 401 or a context-window 400 shows the endpoint is up and closes a half-open breaker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .storage import BreakerRow, Storage


@dataclass(frozen=True)
class BreakerPolicy:
    """When a breaker opens and for how long.

    Args:
        failures: counted failures within ``window`` seconds that open the breaker.
        window: seconds from the first counted failure in which failures add up.
        cooldown: seconds an open breaker skips its configuration.
    """

    failures: int = 5
    window: float = 60.0
    cooldown: float = 30.0

    @classmethod
    def from_settings(cls, settings: Any) -> "BreakerPolicy":
        """The operator's policy (``MT_LLM_BREAKER_FAILURES``, ``_WINDOW``, ``_COOLDOWN``)."""
        return cls(int(settings.llm_breaker_failures), float(settings.llm_breaker_window),
                   float(settings.llm_breaker_cooldown))


@dataclass(frozen=True)
class Admission:
    """Whether a call may use a configuration now.

    ``trial`` marks the one call let through a half-open breaker. When refused, ``until`` is
    when the configuration will be tried again and ``reason`` says why it is skipped.
    """

    allowed: bool
    trial: bool = False
    until: float | None = None
    reason: str = ""
    row: BreakerRow | None = None


def clock_time(moment: float) -> str:
    """A unix time as ``2025-01-31T12:00:05Z``."""
    return datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def admit(row: BreakerRow | None, now: float, lease: float) -> tuple[Admission, BreakerRow | None]:
    """Whether a call may go through ``row``'s configuration at ``now``, and the row to store
    (None: unchanged). A call let through a half-open breaker holds it for ``lease`` seconds."""
    if row is None or row["state"] == "closed":
        return Admission(True, row=row), None
    if row["state"] == "open" and now < float(row["open_until"] or 0):
        until = float(row["open_until"] or now)
        return Admission(False, until=until, row=row, reason=_open_reason(row, until, now)), None
    if row["state"] == "half_open" and now < float(row["trial_until"] or 0):
        until = float(row["trial_until"] or now)
        return Admission(False, until=until, row=row, reason=(
            f"circuit breaker half-open: a trial call is under way; tried again by {clock_time(until)}"
            f" (in {max(until - now, 0):.0f} s)")), None
    trial: BreakerRow = {**row, "state": "half_open", "trial_until": now + max(lease, 1.0), "updated_at": now}
    return Admission(True, trial=True, row=trial), trial


def _open_reason(row: BreakerRow, until: float, now: float) -> str:
    cause = f" (last: {row.get('last_error')})" if row.get("last_error") else ""
    return (f"circuit breaker open after {row.get('failures', 0)} failures{cause}; it will be tried again at"
            f" {clock_time(until)} (in {max(until - now, 0):.0f} s)")


def after_failure(row: BreakerRow | None, now: float, policy: BreakerPolicy, label: str) -> BreakerRow:
    """The row after a counted failure at ``now`` (``label`` names it, e.g. ``503 InternalServerError``)."""
    if row is not None and row["state"] == "half_open":  # the trial failed: open again
        return {**row, "state": "open", "open_until": now + policy.cooldown, "trial_until": None,
                "last_error": label, "updated_at": now}
    if row is not None and row["state"] == "open":  # a call that started before it opened
        return {**row, "last_error": label, "updated_at": now}
    start = row.get("window_start") if row else None
    if start is None or now - float(start) > policy.window:
        failures, start = 1, now
    else:
        failures = int(row.get("failures", 0)) + 1  # type: ignore[union-attr]
    if failures >= policy.failures:
        return {"state": "open", "failures": failures, "window_start": start, "open_until": now + policy.cooldown,
                "trial_until": None, "last_error": label, "updated_at": now}
    return {"state": "closed", "failures": failures, "window_start": start, "open_until": None, "trial_until": None,
            "last_error": label, "updated_at": now}


def after_success(row: BreakerRow | None, now: float) -> BreakerRow | None:
    """The row after an answer at ``now``: closed and cleared (None when it already was)."""
    if row is None or (row["state"] == "closed" and not row.get("failures")):
        return None
    return {"state": "closed", "failures": 0, "window_start": None, "open_until": None, "trial_until": None,
            "last_error": None, "updated_at": now}


class Breakers:
    """The breakers of one tenant's configurations, on the shared database.

    Args:
        storage: the database.
        tenant: the tenant.
        policy: when breakers open.
        clock: unix time (shared by processes and machines, unlike a monotonic clock).
    """

    def __init__(self, storage: Storage, tenant: str, policy: BreakerPolicy,
                 clock: Callable[[], float] = time.time) -> None:
        self.storage, self.tenant, self.policy, self.clock = storage, tenant, policy, clock

    def open_now(self, llm_ids: Sequence[str]) -> set[str]:
        """Which of these configurations would be skipped now (one read, no lock)."""
        now = self.clock()
        return {llm_id for llm_id, row in self.storage.get_breakers(self.tenant, llm_ids).items()
                if not admit(row, now, 0.0)[0].allowed}

    def admit(self, llm_id: str, lease: float) -> Admission:
        """Whether a call may use ``llm_id`` now; claims the half-open trial when it is due.

        A closed breaker costs one read; the transaction is taken only to change the state.
        """
        rows = self.storage.get_breakers(self.tenant, [llm_id])
        admission, change = admit(rows.get(llm_id), self.clock(), lease)
        if change is None:
            return admission
        decided: list[Admission] = []

        def apply(current: BreakerRow | None) -> BreakerRow | None:
            result, new = admit(current, self.clock(), lease)  # decided again on the row as locked
            decided.append(result)
            return new

        self.storage.update_breaker(self.tenant, llm_id, apply)
        return decided[0]

    def failure(self, llm_id: str, label: str) -> BreakerRow | None:
        """Count an outage of ``llm_id``; returns the row stored."""
        return self.storage.update_breaker(
            self.tenant, llm_id, lambda row: after_failure(row, self.clock(), self.policy, label))

    def success(self, llm_id: str, seen: BreakerRow | None) -> None:
        """Record that ``llm_id`` answered; writes only when ``seen`` (its row at admission) was
        not already closed and clear."""
        if after_success(seen, self.clock()) is None:
            return
        self.storage.update_breaker(self.tenant, llm_id, lambda row: after_success(row, self.clock()))
