"""Case 4: 1,000 tenants x 100 tools, on SQLite and on PostgreSQL: ``get_tools`` latency,
``add_tool`` throughput, database size.

``add_tool`` validates every tool in the local jail (tenant code never runs in the caller; a
warm pool of forked sandboxes serves the validations), so its throughput is measured on a
sample, after one warm-up call (plugins loaded, the jail started); the rest of the 100,000 tools
are copies of the rows that ``add_tool`` stored (tool and version), written in one transaction
through the storage layer's bulk import (the one ``mt db copy`` uses). ``get_tools`` is measured
through the public API, against the same SELECT on a raw connection (sqlite3, or psycopg without
a pool).
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .common import TOOL_DESCRIPTION, TOOL_SOURCE, Row, make_core, ms, ratio, summary
from .postgres import on_both_backends

NAME = "storage"
TENANTS = 1000
TOOLS_PER_TENANT = 100
ADD_TOOL_TARGET = 50.0  # add_tool calls per second, one after another
GET_TOOLS_P95_TARGET = 0.005
# What list_tools reads: a tenant's tools at their latest version (the baseline runs it raw).
SELECT = (
    "SELECT t.id, t.name, t.version AS latest_version, t.created_at, v.version, v.description, v.kind, v.entry,"
    " v.source, v.source_sha256, v.inputs, v.output_type, v.output_schema, v.dependencies, v.settings,"
    " v.created_at AS version_created_at FROM tools t JOIN tool_versions v ON v.tenant_id = t.tenant_id"
    " AND v.tool_id = t.id WHERE t.tenant_id = ? AND v.version = t.version ORDER BY t.created_at, t.id"
)


def tenant_name(index: int) -> str:
    """The name of the index-th benchmark tenant."""
    return f"tenant-{index:04d}"


Batch = tuple[str, list[dict[str, Any]]]


def copies(template: dict[str, list[dict[str, Any]]], skip: set[tuple[str, str]]) -> Iterator[Batch]:
    """Batches of rows for every benchmark tool not stored yet: copies of one stored tool."""
    from mt_core.ids import new_id
    from mt_core.storage import utcnow

    tool, version = template["tools"][0], template["tool_versions"][0]
    for t in range(TENANTS):
        tenant = tenant_name(t)
        yield "tenants", [{"id": tenant, "created_at": utcnow()}]
        tools, versions = [], []
        for n in range(TOOLS_PER_TENANT):
            name = f"tool_{n:03d}"
            if (tenant, name) in skip:
                continue
            tool_id, now = new_id("tool"), utcnow()
            tools.append({**tool, "tenant_id": tenant, "id": tool_id, "name": name, "created_at": now})
            versions.append({**version, "tenant_id": tenant, "tool_id": tool_id, "created_at": now})
        yield "tools", tools
        yield "tool_versions", versions


class RawReader:
    """The baseline: the same SELECT on one plain connection of the same database."""

    def __init__(self, core: Any) -> None:
        self.dialect = core.storage.dialect
        if self.dialect == "sqlite":
            self.conn: Any = sqlite3.connect(core.settings.database_path)
            self.sql = SELECT
        else:
            import psycopg

            self.conn = psycopg.connect(core.settings.database_url, autocommit=True)
            self.sql = SELECT.replace("?", "%s")

    def tools(self, tenant: str) -> list[Any]:
        return self.conn.execute(self.sql, (tenant,)).fetchall()

    def size(self, core: Any) -> int:
        if self.dialect == "sqlite":
            db = Path(core.settings.database_path)
            return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
        return int(self.conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])

    def close(self) -> None:
        self.conn.close()


def measure(home: Path, database_url: str | None, quick: bool) -> list[Row]:
    """The rows of case 4 on one database (``None``: SQLite in ``home``)."""
    sample, reads = (10, 300) if quick else (50, 1000)
    core = make_core(home, database_url=database_url)
    dialect = core.storage.dialect
    added: set[tuple[str, str]] = set()
    core.tenant("warm-up").add_tool("warm_up", TOOL_DESCRIPTION, TOOL_SOURCE)
    started = time.perf_counter()
    for n in range(sample):
        tenant, name = tenant_name(n % TENANTS), f"tool_{n // TENANTS:03d}"
        core.tenant(tenant).add_tool(name, TOOL_DESCRIPTION, TOOL_SOURCE)
        added.add((tenant, name))
    add_seconds = time.perf_counter() - started
    template = {table: rows for table, rows in core.storage.export_rows(["tools", "tool_versions"], batch=1)}
    started = time.perf_counter()
    written = core.storage.import_rows(copies(template, added))
    bulk_seconds = time.perf_counter() - started
    bulk_rows = written.get("tools", 0)
    total = core.storage.count_rows()["tools"]
    raw = RawReader(core)
    size = raw.size(core)

    rng = random.Random(0)
    framework, baseline = [], []
    for _ in range(50):  # warm-up: plugin load, catalog sync, connections, caches, prepared statements
        core.tenant(tenant_name(rng.randrange(TENANTS))).get_tools()
        raw.tools(tenant_name(rng.randrange(TENANTS)))
    for index in range(reads):
        tenant = tenant_name(rng.randrange(TENANTS))
        pair = [("f", lambda: core.tenant(tenant).get_tools()), ("b", lambda: raw.tools(tenant))]
        for which, call in pair if index % 2 else reversed(pair):
            t0 = time.perf_counter()
            got = call()
            (framework if which == "f" else baseline).append(time.perf_counter() - t0)
            if len(got) != TOOLS_PER_TENANT:
                raise RuntimeError(f"{tenant} has {len(got)} tools, expected {TOOLS_PER_TENANT}")
    raw.close()
    core.close()
    f_s, b_s = summary(framework), summary(baseline)
    scale = f"{TENANTS} tenants x {TOOLS_PER_TENANT} tools = {total:,} tools"
    driver = "sqlite3" if dialect == "sqlite" else "psycopg"
    return [
        Row(NAME, f"{dialect}: get_tools(tenant) p95 ({scale}; baseline: the same SELECT on raw {driver})",
            ms(f_s["p95"]), ms(b_s["p95"]), f"{ratio(f_s['p95'], b_s['p95']):.2f}",
            f"< {GET_TOOLS_P95_TARGET * 1000:.0f} ms", "met" if f_s["p95"] < GET_TOOLS_P95_TARGET else "missed",
            {"mt_core": f_s, driver: b_s}),
        Row(NAME, f"{dialect}: get_tools(tenant) p50 ({reads} reads, random tenants)", ms(f_s["p50"]), ms(b_s["p50"]),
            f"{ratio(f_s['p50'], b_s['p50']):.2f}"),
        Row(NAME, f"{dialect}: add_tool throughput (public API, {sample} calls one after another, each validated"
                  " in the local jail)",
            f"{sample / add_seconds:.2f}/s", "", "", f">= {ADD_TOOL_TARGET:.0f}/s",
            "met" if sample / add_seconds >= ADD_TOOL_TARGET else "missed",
            {"calls": sample, "seconds": add_seconds, "per_call_seconds": add_seconds / sample}),
        Row(NAME, f"{dialect}: bulk load of the other {bulk_rows:,} tools (storage import_rows, one transaction)",
            f"{bulk_rows / bulk_seconds:,.0f} tools/s", "", "", "", "info",
            {"rows": bulk_rows, "seconds": bulk_seconds}),
        Row(NAME, f"{dialect}: database size ({total:,} tools of {len(TOOL_SOURCE)} bytes of source each)",
            f"{size / 1e6:.1f} MB", "", "", "", "info", {"bytes": size, "bytes_per_tool": size / total}),
    ]


def run(quick: bool) -> list[Row]:
    """Measure and return the rows of case 4, on SQLite and (when a server is at hand) PostgreSQL."""
    return on_both_backends(NAME, measure, quick)
