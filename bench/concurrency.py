"""Case 5: throughput and p95 of concurrent queries (threads) against the latency-bound ideal."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .common import STEPS, Row, ms, percentile, ratio
from .overhead import scenario

NAME = "concurrency"
LATENCY = 0.2  # seconds per LLM reply
LEVELS = (1, 8, 32, 64)
TARGET_LEVEL = 32
TARGET_EFFICIENCY = 0.90


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
    return rows
