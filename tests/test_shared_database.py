"""Many processes sharing one database, as machines sharing one PostgreSQL server do (and, on
SQLite, processes sharing one file): migrations run by exactly one, limits hold across all of them,
each sees the package tools it can run, and runs a dead process left 'running' are marked failed."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import API_KEY, make_settings, raw_sql
from mt_core import MTCore, QuotaExceededError
from mt_core import owners
from mt_core.storage import open_storage
from mt_core.storage.migrations import migrations
from plugin_installs import pip_install, write_distribution

PROCESSES, THREADS = 4, 8
LIMITS = {"max_tools": 10, "max_llms": 12, "max_concurrent_runs": 5, "runs_per_minute": 40}
VERSION_ROW = {"description": "d", "kind": "function", "entry": "f", "source": "def f(): ...",
               "source_sha256": "0" * 64, "inputs": {}, "output_type": "string", "output_schema": None,
               "dependencies": [], "settings": {}}


@pytest.mark.backends("postgresql")
def test_twenty_processes_opening_a_new_database_migrate_it_exactly_once(backend):
    url = backend.new_database(migrated=False)
    code = ("import json, sys; from mt_core.storage import open_storage\n"
            "storage = open_storage(sys.argv[1]); sys.stdin.read()\n"  # wait for the start signal
            "versions = storage.schema_versions(); storage.close()\n"
            "print(json.dumps([storage.applied_migrations, versions]))\n")
    workers = [subprocess.Popen([sys.executable, "-c", code, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(20)]
    time.sleep(1.0)  # every interpreter is up and waiting
    for worker in workers:
        worker.stdin.close()  # type: ignore[union-attr]
        worker.stdin = None
    answers = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        answers.append(json.loads(out))
    everything = [v for v, _, _ in migrations("postgresql")]
    applied = [applied for applied, _ in answers]
    assert sorted(applied, key=len) == [[]] * 19 + [everything]  # one process applied every migration
    assert all([v for v, _ in versions] == everything for _, versions in answers)
    storage = open_storage(url)
    assert [v for v, _ in storage.schema_versions()] == everything and storage.applied_migrations == []
    storage.close()


def _hammer(url: str | None, home: str, master_key: str, process: int, report: str) -> None:
    """One process: THREADS threads adding tools, LLMs and runs to the shared tenant until refused."""
    from mt_core.storage import utcnow

    core = MTCore(settings=make_settings(Path(home), master_key=master_key, database_url=url))
    shared, storage = core.tenant("shared"), core.storage
    owner = owners.current()
    result: dict[str, object] = {"tools": 0, "llms": 0, "runs": 0, "rate": 0, "errors": []}
    lock = threading.Lock()
    gate = threading.Barrier(THREADS)

    def note(key: str, value: object = 1) -> None:
        with lock:
            if isinstance(result[key], list):
                result[key].append(value)  # type: ignore[union-attr]
            else:
                result[key] += value  # type: ignore[operator]

    def work(thread: int) -> None:
        gate.wait()
        for n in range(6):
            tag = f"p{process}-t{thread}-{n}"
            steps = [
                ("tools", lambda: storage.add_tool("shared", f"tool_{tag}", f"tool_{tag}",
                                                   {**VERSION_ROW, "created_at": utcnow()}, [],
                                                   max_tools=LIMITS["max_tools"])),
                ("llms", lambda: shared.add_llm(base_url="http://127.0.0.1:9/v1", api_key=API_KEY, model_name="m",
                                                llm_name=f"llm-{tag}")),
                ("runs", lambda: run_once(tag)),
                ("rate", lambda: start("rate", f"run_rate_{tag}", LIMITS["runs_per_minute"], 1000)),
            ]
            for key, step in steps:
                try:
                    step()
                except QuotaExceededError:
                    continue
                except Exception:  # noqa: BLE001 - any other error fails the test
                    note("errors", traceback.format_exc(limit=4))
                    continue
                note(key)

    def start(tenant: str, run_id: str, per_minute: int, concurrent: int) -> None:
        now = datetime.now(timezone.utc)
        storage.start_run(tenant, {
            "id": run_id, "llm_id": "llm_x", "tool_ids": [], "tool_versions": {}, "query": "q", "agent_type": "code",
            "executor": "local", "status": "running", "started_at": now.isoformat(timespec="microseconds"),
            "owner_host": owner.host, "owner_boot_id": owner.boot_id, "owner_pid": owner.pid,
            "owner_start_time": owner.start_time, "deadline": (now + timedelta(hours=1)).isoformat(),
        }, quota={"max_concurrent_runs": concurrent, "runs_per_minute": per_minute})

    def run_once(tag: str) -> None:
        start("shared", f"run_{tag}", 10_000, LIMITS["max_concurrent_runs"])
        time.sleep(0.02)
        storage.finish_run("shared", f"run_{tag}", {"status": "succeeded",
                                                    "finished_at": datetime.now(timezone.utc).isoformat()})

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    result["hung"] = sum(thread.is_alive() for thread in threads)
    core.close()
    Path(report).write_text(json.dumps(result))


def test_limits_hold_across_processes_and_threads(tmp_path):
    """4 processes x 8 threads against one tenant: no limit exceeded, nothing lost, no error but
    QuotaExceededError (no deadlock, no serialization failure), nothing hangs."""
    settings = make_settings(tmp_path / "home")
    core = MTCore(settings=settings)
    core.tenant("shared").set_limits(**{k: v for k, v in LIMITS.items() if k != "runs_per_minute"})
    context = multiprocessing.get_context("spawn")
    reports = [tmp_path / f"report-{p}.json" for p in range(PROCESSES)]
    workers = [context.Process(target=_hammer, args=(settings.database_url, str(settings.home), settings.master_key, p,
                                                     str(reports[p]))) for p in range(PROCESSES)]
    samples: list[int] = []
    done = threading.Event()

    def monitor() -> None:  # every committed state: at most max_concurrent_runs runs of the tenant running
        while not done.is_set():
            samples.append(raw_sql(core, "SELECT COUNT(*) FROM runs WHERE tenant_id = 'shared'"
                                         " AND status = 'running'")[0][0])

    watcher = threading.Thread(target=monitor)
    for worker in workers:
        worker.start()
    watcher.start()
    for worker in workers:
        worker.join(240)
        assert worker.exitcode == 0
    done.set()
    watcher.join()
    results = [json.loads(report.read_text()) for report in reports]
    errors = [error for result in results for error in result["errors"]]
    assert errors == [], errors[:3]
    assert all(result["hung"] == 0 for result in results)
    # exactly the limit got in, and every success is stored
    assert sum(r["tools"] for r in results) == LIMITS["max_tools"] == raw_sql(
        core, "SELECT COUNT(*) FROM tools WHERE tenant_id = 'shared'")[0][0]
    assert sum(r["llms"] for r in results) == LIMITS["max_llms"] == len(core.tenant("shared").get_llms())
    assert sum(r["rate"] for r in results) == LIMITS["runs_per_minute"] == raw_sql(
        core, "SELECT COUNT(*) FROM runs WHERE tenant_id = 'rate'")[0][0]
    finished = sum(r["runs"] for r in results)
    assert finished == raw_sql(core, "SELECT COUNT(*) FROM runs WHERE tenant_id = 'shared' AND status = 'succeeded'"
                               )[0][0] > LIMITS["max_concurrent_runs"]
    assert max(samples) <= LIMITS["max_concurrent_runs"] and len(samples) > 10
    core.close()


@pytest.fixture(scope="module")
def probe_sites(tmp_path_factory) -> dict[str, Path]:
    """Two plugin distributions, mt-alpha and mt-beta (one tool each), each in its own folder."""
    folder = tmp_path_factory.mktemp("probes")
    return {name: _probe_plugin(folder, name) for name in ("alpha", "beta")}


@pytest.fixture(scope="module")
def gamma_sites(tmp_path_factory) -> dict[str, Path]:
    """mt-gamma 1.0 and 2.0 (one tool, gamma, described differently), each in its own folder."""
    folder = tmp_path_factory.mktemp("gamma")
    return {version: _probe_plugin(folder, "gamma", version) for version in ("1.0", "2.0")}


def _probe_plugin(tmp_path: Path, name: str, version: str = "1.0") -> Path:
    """A plugin distribution registering one tool ``name``, pip-installed into its own folder."""
    source = (
        "from smolagents import tool\nfrom mt_core import hookimpl\n\n"
        f"@tool\ndef {name}(text: str) -> str:\n"
        f'    """The {name} tool, version {version}.\n\n'
        '    Args:\n        text: any text.\n    """\n    return text\n\n'
        f"@hookimpl\ndef mt_register_tools(register):\n    register({name})\n"
    )
    project = write_distribution(tmp_path / f"src-{name}-{version}", f"mt-{name}", version, source)
    site = tmp_path / f"site-{name}-{version}"
    pip_install(site, project)
    return site


def test_two_installations_with_different_plugins_each_see_what_they_can_run(tmp_path, monkeypatch, probe_sites):
    """Machines A (plugin alpha) and B (plugin beta) share one database: each sees as available
    exactly its own tools, and their starts do not rewrite each other's catalog rows."""
    sites = probe_sites
    master_key = make_settings(tmp_path).master_key
    url = make_settings(tmp_path / "shared").database_url or f"sqlite:///{tmp_path / 'shared' / 'mt.db'}"

    def machine(name: str, plugin: str, *, fresh: bool = True) -> MTCore:
        with monkeypatch.context() as patch:
            patch.syspath_prepend(str(sites[plugin]))
            core = MTCore(settings=make_settings(tmp_path / name, master_key=master_key, database_url=url,
                                                 load_plugins=(f"mt-{plugin}",)))
            core.plugins  # discovered while the plugin is on the path, as on that machine
            return core

    a, b = machine("a", "alpha"), machine("b", "beta")
    assert a.tenant("acme").enable_package_tool("alpha") == "pkg:alpha"
    assert b.tenant("acme").enable_package_tool("beta") == "pkg:beta"
    with pytest.raises(Exception, match="package tool 'beta' not found"):
        a.tenant("acme").enable_package_tool("beta")  # A cannot run it, so A cannot enable it
    recorded = raw_sql(a, "SELECT name, updated_at FROM package_tools ORDER BY name")
    for _ in range(3):  # machines restarting in turn change nothing
        for core, mine, theirs in ((machine("a", "alpha"), "alpha", "beta"), (machine("b", "beta"), "beta", "alpha")):
            catalog = {tool["name"]: tool["available"] for tool in core.package_tools()}
            assert catalog == {mine: True, theirs: False}
            # the tool the other machine runs is listed as unavailable here, saying why
            assert {tool["id"]: tool["available"] for tool in core.tenant("acme").get_tools()} == {
                f"pkg:{mine}": True, f"pkg:{theirs}": False}
            assert core.tenant("acme").get_tool(f"pkg:{mine}")["origin"] == "package"
            core.close()
    assert raw_sql(a, "SELECT name, updated_at FROM package_tools ORDER BY name") == recorded
    assert raw_sql(a, "SELECT tool_name FROM tenant_package_tools ORDER BY tool_name") == [("alpha",), ("beta",)]
    for name in ("mt_alpha", "mt_beta"):
        sys.modules.pop(name, None)
    a.close()
    b.close()


def _start_and_hang(url: str | None, home: str, master_key: str, base_url: str, ready: str) -> None:
    """Start a run whose LLM never answers in time, say so, and wait to be killed."""
    import warnings

    warnings.simplefilter("ignore")
    core = MTCore(settings=make_settings(Path(home), master_key=master_key, database_url=url))
    acme = core.tenant("acme")
    llm_id = acme.add_llm(base_url=base_url, api_key=API_KEY, model_name="m")
    Path(ready).write_text(llm_id)
    acme.run_query([], llm_id, "never finishes", use_docker=False)


def test_a_run_left_running_by_a_killed_process_is_marked_failed(tmp_path, llm_server):
    server = llm_server(["<code>\nfinal_answer('late')\n</code>"], latency=120)
    settings = make_settings(tmp_path / "home")
    ready = tmp_path / "ready"
    worker = multiprocessing.get_context("spawn").Process(
        target=_start_and_hang, args=(settings.database_url, str(settings.home), settings.master_key, server.base_url,
                                      str(ready)))
    worker.start()
    core = MTCore(settings=settings)
    acme = core.tenant("acme")
    deadline = time.monotonic() + 60
    while not (ready.exists() and raw_sql(core, "SELECT COUNT(*) FROM runs WHERE status = 'running'")[0][0]):
        assert time.monotonic() < deadline and worker.is_alive()
        time.sleep(0.1)
    [run] = acme.get_runs()
    assert run["status"] == "running"  # its owner is alive: nobody touches it
    assert "owner_pid" not in run and "deadline" not in run  # who runs it is not shown to the tenant
    os.kill(worker.pid, signal.SIGKILL)  # type: ignore[arg-type]
    worker.join()
    [run] = acme.get_runs()
    assert run["status"] == "failed" and run["finished_at"]
    assert f"pid {worker.pid}" in run["error"] and "killed or crashed" in run["error"]
    assert acme.get_run(run["id"])["status"] == "failed"
    core.close()


def _stale_row(run_id: str, *, host: str, pid: int, deadline: datetime, start_time: str = "") -> dict:
    now = datetime.now(timezone.utc)
    return {"id": run_id, "llm_id": "llm_x", "tool_ids": [], "tool_versions": {}, "query": "q", "agent_type": "code",
            "executor": "local", "status": "running", "started_at": now.isoformat(timespec="microseconds"),
            "owner_host": host, "owner_boot_id": owners.current().boot_id, "owner_pid": pid,
            "owner_start_time": start_time, "deadline": deadline.isoformat(timespec="microseconds")}


def test_stale_runs_stop_counting_and_are_marked_failed_when_the_tenant_starts_a_run(core):
    storage, me = core.storage, owners.current()
    now = datetime.now(timezone.utc)
    quota = {"max_concurrent_runs": 2, "runs_per_minute": 100}
    # another machine's run past its deadline, and another machine's run still within it
    storage.start_run("acme", _stale_row("run_lost", host="other-host", pid=1, deadline=now + timedelta(seconds=1)),
                      quota=quota)
    storage.start_run("acme", _stale_row("run_far", host="other-host", pid=1, deadline=now + timedelta(hours=1)),
                      quota=quota)
    with pytest.raises(QuotaExceededError, match="max_concurrent_runs"):
        storage.start_run("acme", _stale_row("run_new", host=me.host, pid=me.pid, deadline=now + timedelta(hours=1),
                                             start_time=me.start_time), quota=quota)
    time.sleep(1.1)
    storage.start_run("acme", _stale_row("run_new", host=me.host, pid=me.pid, deadline=now + timedelta(hours=1),
                                         start_time=me.start_time), quota=quota)
    status = {run["id"]: (run["status"], run["error"]) for run in core.tenant("acme").get_runs()}
    assert status["run_far"] == ("running", None)  # another host's owner is not judged, only its deadline
    assert status["run_new"] == ("running", None)
    assert status["run_lost"][0] == "failed" and "after its deadline" in status["run_lost"][1]
    # a pid on this host that was reused by another process: its start time differs
    storage.start_run("acme", _stale_row("run_reused", host=me.host, pid=me.pid, deadline=now + timedelta(hours=1),
                                         start_time="1"), quota={"max_concurrent_runs": 5, "runs_per_minute": 100})
    assert core.tenant("acme").get_run("run_reused")["status"] == "failed"
    # another tenant's stale runs are that tenant's business
    storage.start_run("globex", _stale_row("run_g", host=me.host, pid=2 ** 22 + 1, deadline=now + timedelta(hours=1)),
                      quota=quota)
    assert raw_sql(core, "SELECT status FROM runs WHERE id = 'run_g'") == [("running",)]
    assert core.tenant("globex").get_runs()[0]["status"] == "failed"


@pytest.mark.backends("postgresql")
def test_serialization_failures_and_deadlocks_are_retried_inside_the_storage_layer(core):
    from psycopg import errors

    from mt_core.storage.postgresql import RETRIES

    calls: list[int] = []

    def body(tx):  # what a write does, losing to a concurrent transaction twice
        calls.append(1)
        tx.run("INSERT INTO tenants (id, created_at) VALUES (?, 'now')", (f"attempt-{len(calls)}",))
        if len(calls) == 1:
            raise errors.SerializationFailure("could not serialize access due to concurrent update")
        if len(calls) == 2:
            raise errors.DeadlockDetected("deadlock detected")
        return "written"

    assert core.storage._write(body) == "written"
    assert raw_sql(core, "SELECT id FROM tenants") == [("attempt-3",)]  # the failed attempts left nothing

    def always(tx):
        calls.append(1)
        raise errors.DeadlockDetected("deadlock detected")

    calls.clear()
    with pytest.raises(errors.DeadlockDetected):
        core.storage._write(always)
    assert len(calls) == RETRIES  # bounded


def test_machines_with_two_versions_of_a_plugin_do_not_rewrite_the_catalog_back_and_forth(tmp_path, monkeypatch,
                                                                                           gamma_sites):
    """Machine A has mt-gamma 1.0, machine B 2.0: each shows and runs its own version; the catalog
    row keeps the newest version recorded, and restarts in turn write nothing."""
    master_key = make_settings(tmp_path).master_key
    url = make_settings(tmp_path / "shared").database_url or f"sqlite:///{tmp_path / 'shared' / 'mt.db'}"

    def machine(name: str, version: str) -> MTCore:
        sys.modules.pop("mt_gamma", None)
        with monkeypatch.context() as patch:
            patch.syspath_prepend(str(gamma_sites[version]))
            core = MTCore(settings=make_settings(tmp_path / name, master_key=master_key, database_url=url,
                                                 load_plugins=("mt-gamma",)))
            core.plugins
            return core

    a, b = machine("a", "1.0"), machine("b", "2.0")
    a.tenant("acme").enable_package_tool("gamma")
    b.package_tools()
    recorded = raw_sql(a, "SELECT version, description, updated_at FROM package_tools")
    assert recorded[0][:2] == ("2.0", "The gamma tool, version 2.0.")
    for _ in range(2):
        for name, version in (("a", "1.0"), ("b", "2.0")):
            core = machine(name, version)
            [tool] = core.tenant("acme").get_tools()
            assert (tool["version"], tool["description"]) == (version, f"The gamma tool, version {version}.")
            assert [(t["version"], t["available"]) for t in core.package_tools()] == [(version, True)]
            core.close()
    assert raw_sql(a, "SELECT version, description, updated_at FROM package_tools") == recorded
    sys.modules.pop("mt_gamma", None)
    a.close()
    b.close()
