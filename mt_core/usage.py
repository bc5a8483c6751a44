"""Usage: the events a run writes as it goes, and the reports rolled up from them.

The events are one row per LLM attempt (``llm_attempts``, written by the gateway, priced by
:mod:`mt_core.prices`) and one row per tool call (``tool_calls``, written here as the sandbox
reports each call), so that a run that crashed still shows what it spent. Reports group them
over a time window by UTC day, model, LLM configuration, run or tool (:func:`usage_report`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from .budgets import iso, month_start
from .errors import ValidationError
from .executors import ToolSpec
from .storage import Storage, ToolCallRow

logger = logging.getLogger(__name__)

GROUPS = ("day", "model", "llm", "tool", "run")
MAX_TOOL_ERROR_CHARS = 500


def _moment(name: str, value: object, *, end: bool) -> datetime:
    """A report's bound as an aware UTC datetime. A date (or ``YYYY-MM-DD``) is the start of that
    day, or for ``end`` the start of the next one: ``until`` names the last day included."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        except ValueError:
            raise ValidationError(name, f"{value!r} is not a date (YYYY-MM-DD) or an ISO 8601 time") from None
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if isinstance(value, date):
        start = datetime.combine(value, time(0), tzinfo=timezone.utc)
        return start + timedelta(days=1) if end else start
    raise ValidationError(name, f"must be a date, a datetime or an ISO 8601 string, got {type(value).__name__}")


def report_window(since: object = None, until: object = None, *,
                  now: datetime | None = None) -> tuple[str, str]:
    """The (inclusive, exclusive) bounds of a report as stored times: ``since`` defaults to the
    start of the current UTC month, ``until`` to now. A naive datetime is taken as UTC."""
    now = now or datetime.now(timezone.utc)
    start = month_start(now) if since is None else _moment("since", since, end=False)
    stop = now if until is None else _moment("until", until, end=True)
    if stop <= start:
        raise ValidationError("until", f"must be after since (the window would be {iso(start)} to {iso(stop)})")
    return iso(start), iso(stop)


def usage_report(storage: Storage, tenant: str | None, *, since: object = None, until: object = None,
                 group_by: str = "day") -> list[dict[str, Any]]:
    """Usage rows of ``tenant`` (``None``: every tenant, each row with its ``tenant``) from ``since``
    to ``until`` (see :func:`report_window`), grouped by ``group_by``:

    - ``day`` (UTC), ``model`` (``provider``, ``model``), ``llm`` (``llm_id``, ``llm_name``) or
      ``run`` (``run_id``, ``status``, ``started_at``): ``runs``, ``calls`` (LLM calls),
      ``attempts`` (requests, retries and fallbacks included), ``input_tokens``, ``output_tokens``,
      ``cached_tokens``, ``cost_usd`` (what the priced attempts cost; ``None`` when none was
      priced) and ``unpriced_calls`` (attempts that billed tokens nobody has a price for: when
      not 0, ``cost_usd`` leaves them out);
    - ``tool`` (``tool_id``, ``name``): ``runs``, ``calls``, ``errors``, ``duration_ms``.
    """
    if group_by not in GROUPS:
        raise ValidationError("group_by", f"{group_by!r} is not one of {', '.join(GROUPS)}")
    start, stop = report_window(since, until)
    rows = storage.usage(tenant, since=start, until=stop, group_by=group_by)
    for row in rows:
        if "cost_usd" in row and row["cost_usd"] is not None:
            row["cost_usd"] = float(row["cost_usd"])
        if "duration_ms" in row:
            row["duration_ms"] = round(float(row["duration_ms"] or 0), 3)
    return rows


class ToolCallLog:
    """Stores each tool call of a run as the sandbox reports it (``ExecutorContext.on_tool_call``),
    with the tool's id and version, and hands the stored row to ``observe`` (traces).

    Args:
        storage: the database.
        tenant: the run's tenant.
        run_id: the run.
        tools: the run's tools (a call is matched to its tool by name).
        observe: called with each stored row; may be ``None``.
    """

    def __init__(self, storage: Storage, tenant: str, run_id: str, tools: tuple[ToolSpec, ...],
                 observe: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.storage = storage
        self.tenant = tenant
        self.run_id = run_id
        self.observe = observe
        self._tools = {spec.name: spec for spec in tools}
        self._lock = threading.Lock()
        self._seq = 0

    def __call__(self, call: dict[str, Any]) -> None:
        """Record one reported call (``name``, ``started`` Unix time, ``seconds``, ``ok``, ``error``).
        A failure to store it is logged: it never breaks the run."""
        spec = self._tools.get(str(call.get("name")))
        if spec is None:  # only this run's tools are reported; anything else is not recorded
            return
        with self._lock:
            self._seq += 1
            seq = self._seq
        error = call.get("error")
        row: ToolCallRow = {
            "run_id": self.run_id, "seq": seq, "tool_id": spec.id,
            "tool_version": None if spec.version is None else str(spec.version), "name": spec.name,
            "outcome": "ok" if call.get("ok") else "error",
            "error": None if call.get("ok") else str(error or "")[:MAX_TOOL_ERROR_CHARS],
            "duration_ms": round(max(0.0, float(call.get("seconds") or 0.0)) * 1000, 3),
            "started_at": iso(datetime.fromtimestamp(float(call.get("started") or 0.0), timezone.utc)),
        }
        try:
            self.storage.add_tool_call(self.tenant, row)
        except Exception:  # noqa: BLE001 - a usage record never breaks a run
            logger.warning("could not record a call of tool %s in run %s", spec.id, self.run_id, exc_info=True)
            return
        if self.observe is not None:
            self.observe(dict(row))
