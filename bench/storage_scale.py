"""Case 4: 1,000 tenants x 100 tools: ``get_tools`` latency, ``add_tool`` throughput, database size.

``add_tool`` validates every tool in a child process (tenant code never runs in the caller), so
its throughput is measured on a sample; the rest of the 100,000 tools are copies of a row that
``add_tool`` stored, inserted in one SQLite transaction on the same file. ``get_tools`` is
measured through the public API, against the same SELECT on a raw sqlite3 connection.
"""

from __future__ import annotations

import random
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import TOOL_DESCRIPTION, TOOL_SOURCE, Row, make_core, ms, ratio, summary

NAME = "storage"
TENANTS = 1000
TOOLS_PER_TENANT = 100
GET_TOOLS_P95_TARGET = 0.005


def tenant_name(index: int) -> str:
    """The name of the index-th benchmark tenant."""
    return f"tenant-{index:04d}"


def bulk_fill(db: Path, template: dict[str, Any], skip: set[tuple[str, str]]) -> tuple[int, float]:
    """Insert the tools missing for every tenant in one transaction; return (rows, seconds)."""
    from mt_core.ids import new_id
    from mt_core.storage import utcnow

    columns = list(template)
    sql = f"INSERT INTO tools ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    started = time.perf_counter()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    count = 0
    for t in range(TENANTS):
        tenant = tenant_name(t)
        conn.execute("INSERT OR IGNORE INTO tenants (id, created_at) VALUES (?, ?)", (tenant, utcnow()))
        rows = []
        for n in range(TOOLS_PER_TENANT):
            name = f"tool_{n:03d}"
            if (tenant, name) in skip:
                continue
            row = {**template, "tenant_id": tenant, "id": new_id("tool"), "name": name, "created_at": utcnow()}
            rows.append(tuple(row[c] for c in columns))
        conn.executemany(sql, rows)
        count += len(rows)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return count, time.perf_counter() - started


def run(quick: bool) -> list[Row]:
    """Measure and return the rows of case 4."""
    sample, reads = (10, 300) if quick else (50, 1000)
    with tempfile.TemporaryDirectory(prefix="mt-bench-") as tmp:
        core = make_core(Path(tmp) / "home")
        added: set[tuple[str, str]] = set()
        started = time.perf_counter()
        for n in range(sample):
            tenant = tenant_name(n % TENANTS)
            name = f"tool_{n // TENANTS:03d}"
            core.tenant(tenant).add_tool(name, TOOL_DESCRIPTION, TOOL_SOURCE)
            added.add((tenant, name))
        add_seconds = time.perf_counter() - started
        db = core.storage.path
        raw = sqlite3.connect(db)
        raw.row_factory = sqlite3.Row
        template = dict(raw.execute("SELECT * FROM tools LIMIT 1").fetchone())
        bulk_rows, bulk_seconds = bulk_fill(db, template, added)
        total = raw.execute("SELECT COUNT(*) FROM tools").fetchone()[0]
        size = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))

        rng = random.Random(0)
        framework, baseline = [], []
        select = "SELECT * FROM tools WHERE tenant_id = ? ORDER BY created_at, id"
        for _ in range(50):  # warm-up: plugin load, catalog sync, connections, page cache
            core.tenant(tenant_name(rng.randrange(TENANTS))).get_tools()
        for index in range(reads):
            tenant = tenant_name(rng.randrange(TENANTS))
            pair = [("f", lambda: core.tenant(tenant).get_tools()), ("b", lambda: raw.execute(select, (tenant,)).fetchall())]
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
    return [
        Row(NAME, f"get_tools(tenant) p95 ({scale}; baseline: the same SELECT on raw sqlite3)", ms(f_s["p95"]),
            ms(b_s["p95"]), f"{ratio(f_s['p95'], b_s['p95']):.2f}", f"< {GET_TOOLS_P95_TARGET * 1000:.0f} ms",
            "met" if f_s["p95"] < GET_TOOLS_P95_TARGET else "missed", {"mt_core": f_s, "sqlite3": b_s}),
        Row(NAME, f"get_tools(tenant) p50 ({reads} reads, random tenants)", ms(f_s["p50"]), ms(b_s["p50"]),
            f"{ratio(f_s['p50'], b_s['p50']):.2f}"),
        Row(NAME, f"add_tool throughput (public API, {sample} calls, child-process validation each)",
            f"{sample / add_seconds:.2f}/s", "", "", "", "info",
            {"calls": sample, "seconds": add_seconds, "per_call_seconds": add_seconds / sample}),
        Row(NAME, f"bulk load of the other {bulk_rows:,} rows (one sqlite3 transaction, not the API)",
            f"{bulk_rows / bulk_seconds:,.0f} rows/s", "", "", "", "info", {"rows": bulk_rows, "seconds": bulk_seconds}),
        Row(NAME, f"database size ({total:,} tools of {len(TOOL_SOURCE)} bytes of source each)",
            f"{size / 1e6:.1f} MB", "", "", "", "info", {"bytes": size, "bytes_per_tool": size / total}),
    ]
