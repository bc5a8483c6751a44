"""Case 5: throughput and p95 of concurrent queries against the latency-bound ideal: threads of one
process (SQLite), and 1, 2, 4 worker processes sharing one PostgreSQL database (as machines would)."""

from __future__ import annotations

import multiprocessing
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import MAX_STEPS, QUERY, SCRIPT, STEPS, Row, make_core, ms, percentile, ratio
from .llm_server import llm_server
from .overhead import scenario, setup_tenant
from .postgres import postgres_database

NAME = "concurrency"
LATENCY = 0.2  # seconds per LLM reply
LEVELS = (1, 8, 32, 64)
TARGET_LEVEL = 32
TARGET_EFFICIENCY = 0.90
PROCESS_LEVELS = (1, 2, 4)
THREADS_PER_PROCESS = 4


def load(query: Callable[[], Any], threads: int, per_thread: int) -> dict[str, Any]:
    """Run ``per_thread`` queries in each of ``threads`` threads started together."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    gate = threading.Barrier(threads + 1)

    def worker() -> None:
        gate.wait()
        for _ in range(per_thread):
            started = time.perf_counter()
            try:
                query()
            except Exception as exc:  # counted and reported, never hidden
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            with lock:
                latencies.append(time.perf_counter() - started)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    gate.wait()
    started = time.perf_counter()
    for thread in pool:
        thread.join()
    wall = time.perf_counter() - started
    ideal = threads / (STEPS * LATENCY)
    return {
        "threads": threads, "queries": len(latencies), "errors": errors[:3], "error_count": len(errors),
        "wall_seconds": wall, "throughput": len(latencies) / wall, "ideal_throughput": ideal,
        "efficiency": len(latencies) / wall / ideal, "p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
    }


def _process_worker(url: str, home: str, master_key: str, tool_id: str, llm_id: str, per_thread: int,
                    start: Any, results: Any) -> None:
    """One worker process: its own installation object on the shared database, warmed up, then
    THREADS_PER_PROCESS threads of queries from the moment ``start`` releases every process."""
    import warnings

    warnings.simplefilter("ignore")
    core = make_core(Path(home), database_url=url, master_key=master_key)
    handle = core.tenant("bench")

    def query() -> Any:
        return handle.run_query([tool_id], llm_id, QUERY, use_docker=False, max_steps=MAX_STEPS)

    query()  # warm-up: imports, the jail's fork server, the pool's connections
    start.wait()
    outcome = load(query, THREADS_PER_PROCESS, per_thread)
    core.close()
    results.put(outcome)


def run_processes(quick: bool) -> list[Row]:
    """N worker processes (each THREADS_PER_PROCESS threads) sharing one PostgreSQL database and one tenant."""
    rows: list[Row] = []
    per_thread = 3 if quick else 6
    with postgres_database() as url, tempfile.TemporaryDirectory(prefix="mt-bench-") as tmp, \
            llm_server(SCRIPT, LATENCY) as base_url:
        if url is None:
            return [Row(NAME, "postgresql processes: no server (see above)", "", "", "", "", "skipped")]
        core = make_core(Path(tmp) / "setup", database_url=url)
        _, tool_id, llm_id = setup_tenant(core, base_url)
        master_key = core.settings.master_key
        core.close()
        context = multiprocessing.get_context("spawn")
        for processes in PROCESS_LEVELS:
            start, results = context.Barrier(processes + 1), context.Queue()
            workers = [context.Process(target=_process_worker, args=(url, str(Path(tmp) / f"machine-{p}"), master_key,
                                                                     tool_id, llm_id, per_thread, start, results))
                       for p in range(processes)]
            for worker in workers:
                worker.start()
            start.wait()
            started = time.perf_counter()
            outcomes = [results.get(timeout=600) for _ in workers]
            wall = time.perf_counter() - started
            for worker in workers:
                worker.join(60)
            queries = sum(o["queries"] for o in outcomes)
            failed = sum(o["error_count"] for o in outcomes)
            threads = processes * THREADS_PER_PROCESS
            ideal = threads / (STEPS * LATENCY)
            throughput = queries / wall
            rows.append(Row(
                NAME, f"postgresql, {processes} process{'es' if processes > 1 else ''} x {THREADS_PER_PROCESS} threads:"
                f" throughput (ideal {ideal:.1f}/s) at {throughput / ideal:.0%} of ideal"
                f"{f'; {failed} queries failed' if failed else ''}",
                f"{throughput:.1f}/s", f"{ideal:.1f}/s", f"{throughput / ideal:.3f}", "", "info",
                {"processes": processes, "threads": threads, "queries": queries, "wall_seconds": wall,
                 "errors": [e for o in outcomes for e in o["errors"]][:3], "p95": max(o["p95"] for o in outcomes)},
            ))
    return rows


def run(quick: bool) -> list[Row]:
    """Measure and return the rows of case 5."""
    rows: list[Row] = []
    with scenario(LATENCY) as (framework, baseline):
        for threads in LEVELS:
            per_thread = max(2, 4 // threads) if quick else max(3, 8 // threads)
            # alternate which side goes first at each level so drift does not favour one
            pair = [("mt_core", framework), ("smolagents", baseline.fresh)]
            if threads in LEVELS[1::2]:
                pair.reverse()
            results = {name: load(query, threads, per_thread) for name, query in pair}
            mt, base = results["mt_core"], results["smolagents"]
            efficiency = mt["efficiency"]
            target = f">= {TARGET_EFFICIENCY:.0%} of ideal" if threads == TARGET_LEVEL else ""
            status = ("met" if efficiency >= TARGET_EFFICIENCY else "missed") if target else "info"
            failures = "".join(
                f"; {r['error_count']} {name} queries failed" for name, r in results.items() if r["error_count"]
            )
            rows.append(Row(
                NAME,
                f"{threads} threads: throughput (ideal {mt['ideal_throughput']:.1f}/s); mt-core at {efficiency:.0%} of ideal,"
                f" smolagents at {base['efficiency']:.0%}{failures}",
                f"{mt['throughput']:.1f}/s", f"{base['throughput']:.1f}/s",
                f"{ratio(mt['throughput'], base['throughput']):.3f}", target, status, results,
            ))
            rows.append(Row(NAME, f"{threads} threads: query p95 ({mt['queries']} queries)", ms(mt["p95"]), ms(base["p95"]),
                            f"{ratio(mt['p95'], base['p95']):.3f}"))
    return rows + run_processes(quick)
