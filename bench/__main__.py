"""``python -m bench [--quick] [CASE...]``: run the benchmarks, print the table, write results.json."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from mt_core.testing import allow_loopback_llm_servers

from . import cold_start, concurrency, docker_sandbox, failover, overhead, plugin_discovery, storage_scale, usage_report
from .common import Row
from .report import machine, table, write_json

CASES = {
    "overhead": overhead,
    "cold_start": cold_start,
    "plugins": plugin_discovery,
    "storage": storage_scale,
    "concurrency": concurrency,
    "docker": docker_sandbox,
    "failover": failover,
    "usage": usage_report,
}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen cases (all by default); exit status 1 when a case could not run."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("cases", nargs="*", metavar="CASE", help=f"cases to run (default: all): {', '.join(CASES)}")
    parser.add_argument("--quick", action="store_true", help="fewer samples: a smoke run, not for publishing")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("results.json"),
                        help="where to write the JSON results (default: bench/results.json)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.cases if name not in CASES]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r} (cases: {', '.join(CASES)})")
    chosen = args.cases or list(CASES)
    # The cases' scripted LLM servers listen on 127.0.0.1, which the SSRF guard refuses unless
    # MT_LLM_ALLOWED_NETWORKS allows it: allow loopback for this process and its children.
    if allow_loopback_llm_servers():
        print("MT_LLM_ALLOWED_NETWORKS is not set: allowing 127.0.0.0/8 for the benchmark's scripted LLM servers",
              flush=True)
    info = machine()
    print(f"machine: {info['cpus']} CPUs, {info['cpu_model']}, Python {info['python']}, {info['system']}", flush=True)
    rows: list[Row] = []
    failed = []
    started = time.perf_counter()
    for name in chosen:
        print(f"running {name}...", file=sys.stderr, flush=True)
        case_started = time.perf_counter()
        try:
            rows += CASES[name].run(args.quick)
        except Exception:  # one broken case must not hide the others' numbers
            failed.append(name)
            traceback.print_exc()
            rows.append(Row(name, "could not run (see the traceback above)", "error", result="error"))
        print(f"  {name}: {time.perf_counter() - case_started:.0f} s", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started
    print(table(rows))
    missed = [r.metric for r in rows if r.result == "missed"]
    print(f"\n{len(rows)} rows, {sum(r.result == 'met' for r in rows)} targets met, {len(missed)} missed,"
          f" {elapsed:.0f} s{' (--quick)' if args.quick else ''}")
    write_json(args.output, info, rows, {
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "quick": args.quick,
        "cases": chosen, "seconds": elapsed,
    })
    print(f"wrote {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
