"""Case 8: usage reports at scale, on SQLite and on PostgreSQL: 1,000 tenants and 1,000,000 LLM
attempt events (plus 100,000 tool call events) over the last three months; a month's report for
one tenant through the public API (``Tenant.get_usage``), and the budget check an LLM request
makes (``reserve_llm_call``: a day's and a month's spending under the tenant's lock).

The events are written straight into the tables in bulk (sqlite3 ``executemany`` in one
transaction, PostgreSQL ``COPY``), as a long-running installation would have accumulated them:
nothing about the report depends on how they got there. One tenant is heavy: it has 5% of all
events (50 times a typical tenant's); the others share the rest at random.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .common import Row, make_core, ms, summary
from .postgres import on_both_backends

NAME = "usage"
TENANTS = 1000
EVENTS = 1_000_000
TOOL_EVENTS = 100_000
ATTEMPTS_PER_RUN = 4
HEAVY_SHARE = 0.05  # of all events, for tenant 0
DAYS = 90
REPORT_P95_TARGET = 0.050
MODELS = [("openai", "gpt-4o-mini", 0.15, 0.6), ("openai", "gpt-4o", 2.5, 10.0), ("openai", "self-hosted", None, None)]
ATTEMPT_COLUMNS = ("tenant_id", "run_id", "seq", "call_index", "llm_id", "provider", "model", "base_url", "outcome",
                   "latency_ms", "input_tokens", "output_tokens", "cached_tokens", "started_at", "finished_at",
                   "cost_usd", "priced_by")
RUN_COLUMNS = ("tenant_id", "id", "llm_id", "tool_ids", "query", "agent_type", "executor", "status", "started_at",
               "finished_at")
TOOL_COLUMNS = ("tenant_id", "run_id", "seq", "tool_id", "tool_version", "name", "outcome", "error", "duration_ms",
                "started_at")


def tenant_name(index: int) -> str:
    """The name of the index-th benchmark tenant."""
    return f"tenant-{index:04d}"


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def generate(now: datetime, seed: int = 0) -> tuple[list[tuple], list[tuple], list[tuple], list[tuple]]:
    """Rows of tenants, runs, attempts and tool calls: every run has ATTEMPTS_PER_RUN attempts, at a
    random time of the last DAYS days; the heavy tenant gets HEAVY_SHARE of the runs."""
    rng = random.Random(seed)
    created = iso(now - timedelta(days=DAYS + 1))
    tenants = [(tenant_name(t), created) for t in range(TENANTS)]
    runs, attempts, tools = [], [], []
    run_count = EVENTS // ATTEMPTS_PER_RUN
    tool_every = run_count // TOOL_EVENTS
    heavy = int(run_count * HEAVY_SHARE)
    for n in range(run_count):
        tenant = tenant_name(0 if n < heavy else rng.randrange(1, TENANTS))
        started = now - timedelta(seconds=rng.uniform(60, DAYS * 86400))
        run_id = f"run_{n:010d}"
        llm = f"llm_{tenant}_{n % 2}"
        runs.append((tenant, run_id, llm, "[]", "q", "code", "local", "succeeded", iso(started),
                     iso(started + timedelta(seconds=5))))
        for seq in range(1, ATTEMPTS_PER_RUN + 1):
            provider, model, price_in, price_out = MODELS[(n + seq) % len(MODELS)]
            at = started + timedelta(seconds=seq)
            tokens_in, tokens_out = rng.randrange(500, 5000), rng.randrange(10, 500)
            cost = None if price_in is None else (tokens_in * price_in + tokens_out * price_out) / 1e6
            attempts.append((tenant, run_id, seq, seq, llm, provider, model, None, "ok", 300, tokens_in, tokens_out,
                             0, iso(at), iso(at + timedelta(milliseconds=300)), cost,
                             None if cost is None else f"genai-prices: {provider} {model}"))
        if n % tool_every == 0:
            at = started + timedelta(seconds=2)
            tools.append((tenant, run_id, 1, f"tool_{tenant}", "1", "calculator", "ok", None, 1.5, iso(at)))
    return tenants, runs, attempts, tools


def llm_rows(now: datetime) -> Iterator[tuple]:
    """Two LLM configurations per tenant (the llm report names them)."""
    for t in range(TENANTS):
        for n in range(2):
            yield (tenant_name(t), f"llm_{tenant_name(t)}_{n}", f"llm-{n}", "openai", "gpt-4o-mini", None, "{}",
                   iso(now))


LLM_COLUMNS = ("tenant_id", "id", "name", "provider", "model_name", "base_url", "options", "created_at")


def load(core: Any, now: datetime) -> float:
    """Write the events into ``core``'s database; the seconds it took."""
    tenants, runs, attempts, tools = generate(now)
    llms = list(llm_rows(now))
    tables = [("tenants", ("id", "created_at"), tenants), ("llms", LLM_COLUMNS, llms), ("runs", RUN_COLUMNS, runs),
              ("llm_attempts", ATTEMPT_COLUMNS, attempts), ("tool_calls", TOOL_COLUMNS, tools)]
    core.storage.schema_versions()  # migrated
    started = time.perf_counter()
    if core.storage.dialect == "sqlite":
        conn = sqlite3.connect(core.settings.database_path)
        with conn:
            for table, columns, rows in tables:
                conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES"
                                 f" ({', '.join('?' for _ in columns)})", rows)
        conn.execute("ANALYZE")
        conn.close()
    else:
        import psycopg

        with psycopg.connect(core.settings.database_url) as conn:
            with conn.cursor() as cursor:
                for table, columns, rows in tables:
                    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
            conn.commit()
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def measure(home: Path, database_url: str | None, quick: bool) -> list[Row]:
    """The rows of this case on one database (``None``: SQLite in ``home``)."""
    reads = 100 if quick else 400
    now = datetime.now(timezone.utc)
    core = make_core(home, database_url=database_url)
    dialect = core.storage.dialect
    seconds = load(core, now)
    month = now.date().replace(day=1)
    rng = random.Random(1)

    def report(tenant: str, group_by: str) -> list[dict[str, Any]]:
        return core.tenant(tenant).get_usage(since=month, group_by=group_by)

    for _ in range(30):  # warm-up: connections, caches, the query planner
        report(tenant_name(rng.randrange(1, TENANTS)), "day")
    timings: dict[str, list[float]] = {}
    sizes: dict[str, int] = {}
    for label, group_by, heavy in [("day", "day", False), ("day, heavy tenant", "day", True), ("model", "model", False),
                                   ("llm", "llm", False), ("run", "run", False), ("tool", "tool", False)]:
        samples = []
        for _ in range(reads if group_by == "day" else reads // 4):
            tenant = tenant_name(0 if heavy else rng.randrange(1, TENANTS))
            t0 = time.perf_counter()
            rows = report(tenant, group_by)
            samples.append(time.perf_counter() - t0)
            if group_by != "tool" and not rows:
                raise RuntimeError(f"{tenant} has no usage this month")
        timings[label] = samples
        sizes[label] = sum(row.get("attempts", row.get("calls", 0)) for row in rows)
    # the budget check before an LLM request of the heavy tenant: a day's and a month's spending
    budgets = {"budget_usd_per_day": 1e9, "budget_usd_per_month": 1e9, "tokens_per_day": 10 ** 12}
    heavy_run = core.storage.list_runs(tenant_name(0), limit=1)[0]["id"]
    checks = []
    for n in range(reads // 4):
        t0 = time.perf_counter()
        core.storage.reserve_llm_call(tenant_name(0), {
            "id": f"rsv_{n}", "run_id": heavy_run, "tokens": 100, "cost_usd": 0.0, "created_at": iso(now),
            "expires_at": iso(now + timedelta(minutes=1))}, budgets)
        checks.append(time.perf_counter() - t0)
        core.storage.release_reservation(tenant_name(0), f"rsv_{n}")
    core.close()
    scale = f"{TENANTS:,} tenants, {EVENTS:,} LLM events + {TOOL_EVENTS:,} tool events"
    rows_out = [Row(NAME, f"{dialect}: bulk load ({scale})", f"{seconds:.1f} s", "", "", "", "info",
                    {"seconds": seconds})]
    for label, samples in timings.items():
        stats = summary(samples)
        target = label.startswith("day")
        rows_out.append(Row(
            NAME, f"{dialect}: get_usage(this month, group_by={label}) p95 (p50 {ms(stats['p50'])};"
                  f" {sizes[label]:,} events in the last tenant's month)",
            ms(stats["p95"]), "", "", f"< {REPORT_P95_TARGET * 1000:.0f} ms" if target else "",
            ("met" if stats["p95"] < REPORT_P95_TARGET else "missed") if target else "info", stats))
    stats = summary(checks)
    rows_out.append(Row(NAME, f"{dialect}: budget check before an LLM request, heavy tenant (day and month) p95"
                              f" (p50 {ms(stats['p50'])})", ms(stats["p95"]), "", "", "", "info", stats))
    return rows_out


def run(quick: bool) -> list[Row]:
    """Measure and return the rows of this case, on SQLite and (when a server is at hand) PostgreSQL."""
    return on_both_backends(NAME, measure, quick)
