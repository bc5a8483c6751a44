"""Many threads and processes at once on one installation."""

from __future__ import annotations

import multiprocessing
import re
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import API_KEY, CALCULATOR, make_settings
from mt_core import MTCore
from mt_core.testing import conversation_step, message_text

pytestmark = pytest.mark.filterwarnings("ignore::mt_core.errors.SandboxFallbackWarning")


def arithmetic_responder(body):
    """Multiplies the two numbers of the task with the calculator, then answers."""
    if conversation_step(body) == 0:
        task = next(message_text(m) for m in body["messages"] if m["role"] == "user")
        a, b = re.findall(r"\d+", task.split("New task:")[-1])[:2]
        return f'<code>\nresult = calculator(expression="{a} * {b}")\nprint(result)\n</code>'
    return "<code>\nfinal_answer(result)\n</code>"


def test_eight_threads_for_eight_tenants_get_their_own_answers(core, llm_server):
    server = llm_server(responder=arithmetic_responder, latency=0.05)
    setups = {}
    for n in range(8):
        handle = core.tenant(f"tenant-{n}")
        tool_id = handle.add_tool("calculator", "Evaluates arithmetic.", CALCULATOR)
        llm_id = handle.add_llm(base_url=server.base_url, api_key=f"{API_KEY}-{n}", model_name=f"model-{n}")
        setups[n] = (handle, tool_id, llm_id)

    def ask(n):
        handle, tool_id, llm_id = setups[n]
        return handle.run_query([tool_id], llm_id, f"What is {n + 10} multiplied by {n + 3}?")

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(ask, range(8)))

    for n, result in enumerate(results):
        assert str(result) == str((n + 10) * (n + 3))
        handle = setups[n][0]
        assert [r["id"] for r in handle.get_runs()] == [result.run_id]
        assert handle.get_run(result.run_id)["output"] == str((n + 10) * (n + 3))
    # each tenant's requests carried its own key and model
    for request in server.requests:
        n = int(request["body"]["model"].split("-")[1])
        assert request["headers"]["authorization"] == f"Bearer {API_KEY}-{n}"


def _add_llms(home: str, master_key: str, database_url: str | None, worker: int, count: int) -> None:
    core = MTCore(settings=make_settings(home, master_key=master_key, database_url=database_url))
    handle = core.tenant(f"proc-{worker}")
    for i in range(count):
        handle.add_llm(base_url="http://127.0.0.1:9/v1", api_key=API_KEY, model_name=f"m-{i}")
    core.close()


def test_several_processes_write_one_database_without_losing_rows(tmp_path):
    settings = make_settings(tmp_path)
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_add_llms, args=(str(tmp_path), settings.master_key, settings.database_url, w, 40))
        for w in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    core = MTCore(settings=settings)
    assert sorted(len(core.tenant(f"proc-{w}").get_llms()) for w in range(4)) == [40, 40, 40, 40]
    if core.storage.dialect == "sqlite":
        with sqlite3.connect(tmp_path / "mt.db") as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    core.close()
