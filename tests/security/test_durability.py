"""4 processes x 8 threads add tools and record runs on one database for 30 s (a SQLite file, or
PostgreSQL): nothing is lost, and no "database is locked", serialization or deadlock error escapes."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
import traceback
import warnings

from conftest import CALCULATOR, make_settings, raw_sql
from mt_core import MTCore

DURATION = float(os.environ.get("MT_DURABILITY_SECONDS", "30"))
PROCESSES, THREADS = 4, 8

SCRIPT = ["<code>\nfinal_answer('done')\n</code>"]


def _worker(home: str, master_key: str, database_url: str | None, process: int, report: str) -> None:
    from mt_core import MTCore
    from mt_core.testing import ScriptedLLMServer

    warnings.simplefilter("ignore")
    core = MTCore(settings=make_settings(home, master_key=master_key, database_url=database_url))
    counts = {"tools": 0, "runs": 0, "errors": []}
    lock = threading.Lock()
    deadline = time.monotonic() + DURATION
    with ScriptedLLMServer(script=SCRIPT) as server:

        def work(thread: int) -> None:
            handle = core.tenant(f"p{process}-t{thread}")
            handle.set_limits(runs_per_minute=100_000, max_tools=100_000)
            llm_id = handle.add_llm(base_url=server.base_url, api_key="sk-durability-000000", model_name="m")
            n = 0
            while time.monotonic() < deadline:
                n += 1
                try:
                    if thread == 0:  # one thread per process adds tools (each validated in a child process)
                        handle.add_tool(f"tool_{n}", "Evaluates arithmetic.", CALCULATOR)
                        key = "tools"
                    else:
                        handle.run_query([], llm_id, f"run {n}", use_docker=False)
                        key = "runs"
                    with lock:
                        counts[key] += 1
                except Exception:  # noqa: BLE001 - every error is reported to the test
                    with lock:
                        counts["errors"].append(traceback.format_exc(limit=3))

        threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    with open(report, "w") as handle:
        json.dump(counts, handle)


def test_many_processes_and_threads_lose_nothing(tmp_path):
    settings = make_settings(tmp_path / "home")
    context = multiprocessing.get_context("spawn")
    reports = [tmp_path / f"report-{p}.json" for p in range(PROCESSES)]
    workers = [
        context.Process(target=_worker, args=(str(settings.home), settings.master_key, settings.database_url, p,
                                                str(reports[p])))
        for p in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(DURATION + 120)
        assert worker.exitcode == 0
    results = [json.loads(report.read_text()) for report in reports]
    errors = [error for result in results for error in result["errors"]]
    assert errors == [], errors[:3]
    core = MTCore(settings=settings)
    stored_tools = raw_sql(core, "SELECT COUNT(*) FROM tools")[0][0]
    stored_runs = raw_sql(core, "SELECT COUNT(*) FROM runs WHERE status = 'succeeded'")[0][0]
    unfinished = raw_sql(core, "SELECT COUNT(*) FROM runs WHERE status = 'running'")[0][0]
    assert stored_tools == sum(result["tools"] for result in results) > 0
    assert stored_runs == sum(result["runs"] for result in results) > 0
    assert unfinished == 0
    files = sum(1 for _ in (settings.home / "tools").rglob("*.py"))
    assert files == stored_tools
    core.close()
