"""``mt db copy``: a whole installation from SQLite to PostgreSQL (and back), verified, re-runnable."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from conftest import API_KEY, CALCULATOR, CALCULATOR_SCRIPT, decrypted, make_settings
from mt_core import MTCore
from mt_core.budgets import iso
from mt_core.secrets import generate_master_key, seal_tool_secrets
from mt_core.storage import TABLES

pytestmark = [pytest.mark.backends("postgresql"),
              pytest.mark.filterwarnings("ignore::mt_core.errors.SandboxFallbackWarning")]

TOOL_SECRET = "tok-copy-0123456789abcdef"


def mt_db_copy(*args: str, home, master_key: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MT_HOME": str(home), "MT_MASTER_KEY": master_key, "MT_LOAD_PLUGINS": ""}
    env.pop("MT_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "mt_core", "db", "copy", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def snapshot(core: MTCore) -> dict[str, list[dict]]:
    """Every row of every table, as stored, in key order."""
    rows: dict[str, list[dict]] = {table: [] for table in TABLES}
    for table, batch in core.storage.export_rows():
        rows[table] += batch
    return rows


@pytest.fixture
def installation(tmp_path, llm_server):
    """A SQLite installation with every kind of row: tools with versions and secrets, LLMs with
    keys and prices, limits and budgets, executor options, an enabled package tool with its secret, runs with their
    tool calls, the LLM gateway's fallbacks, priced attempts, breakers and cache, and a reservation."""
    home = tmp_path / "home"
    core = MTCore(settings=make_settings(home, database_url=f"sqlite:///{home}/mt.db"))
    acme, globex = core.tenant("acme"), core.tenant("globex")
    server = llm_server(CALCULATOR_SCRIPT * 2)
    tool_id = acme.add_tool("calculator", "Evaluates arithmetic.", CALCULATOR)
    assert acme.update_tool(tool_id, description="Evaluates arithmetic, v2.", secrets={"CALC_TOKEN": TOOL_SECRET}) == 2
    # a flaky primary falling back to a cached backup: breaker, attempt and cache rows
    backup = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m", llm_name="gpt", temperature=0,
                          cache_ttl=3600, prices={"input_per_mtok": 0.15, "output_per_mtok": 0.6})
    down = llm_server(script=[{"status": 503}])
    llm_id = acme.add_llm(base_url=down.base_url, api_key=API_KEY, model_name="d", llm_name="flaky", max_retries=0,
                          fallbacks=[backup])
    globex.add_llm(base_url="http://127.0.0.1:9/v1", api_key=f"{API_KEY}-globex", model_name="g")
    acme.set_limits(max_tools=7, runs_per_minute=30, budget_usd_per_day=5.5, tokens_per_day=1_000_000)
    core.storage.set_executor_options("acme", {"memory": "256m"})
    core.storage.record_catalog([{"name": "human_size", "plugin": "example_tools", "distribution": "mt-example-tools",
                                  "version": "0.1.0", "description": "Sizes.", "inputs": {}, "output_type": "string",
                                  "content_sha256": "0" * 64}])
    sealed = seal_tool_secrets(core.secrets, "acme", "pkg:human_size", {"HS_KEY": TOOL_SECRET})
    core.storage.enable_package_tool("acme", "human_size", {"unit": "MiB"}, sealed)  # type: ignore[arg-type]
    result = acme.run_query([tool_id], llm_id, "What is 25 multiplied by 16?")
    assert str(result) == "400" and result.cost_usd > 0 and result.tool_calls
    now = datetime.now(timezone.utc)  # a reservation left by a process that died with its call in flight
    core.storage.reserve_llm_call("acme", {"id": "rsv_left", "run_id": result.run_id, "tokens": 10, "cost_usd": 0.001,
                                           "created_at": iso(now), "expires_at": iso(now + timedelta(minutes=5))}, {})
    assert all(snapshot(core).values()), "the installation lacks a kind of row"
    return core, tool_id, llm_id


def test_copy_sqlite_to_postgresql_then_run_again(installation, backend, tmp_path):
    source, tool_id, llm_id = installation
    key = source.settings.master_key
    url = backend.new_database(migrated=False)  # the copy migrates it
    out = mt_db_copy("--from", f"sqlite:///{source.home}/mt.db", "--to", url, home=source.home, master_key=key)
    assert out.returncode == 0, out.stderr
    assert "5 secrets decrypt there" in out.stdout  # 3 LLM keys, a tool secret, a package tool secret
    assert API_KEY not in out.stdout + out.stderr and "postgres@" not in out.stderr

    # another machine: its own (empty) data directory, the same master key, the PostgreSQL database
    target = MTCore(settings=make_settings(tmp_path / "machine-b", master_key=key, database_url=url))
    assert snapshot(target) == snapshot(source)  # every row of every table, byte for byte
    acme = target.tenant("acme")
    assert acme.get_tool(tool_id)["version"] == 2
    assert acme.get_tool(tool_id, 1)["description"] == "Evaluates arithmetic."
    assert acme.get_tool(tool_id)["code"] == CALCULATOR
    assert decrypted(target, "acme", llm_id).api_key == API_KEY
    assert target.tools.resolve("acme", [tool_id])[0].env == {"CALC_TOKEN": TOOL_SECRET}
    assert acme.limits().max_tools == 7 and acme.executor_options() == {"memory": "256m"}
    assert [run["status"] for run in acme.get_runs()] == ["succeeded"]

    # again: refused without the option, which the error names; nothing written
    again = mt_db_copy("--from", f"sqlite:///{source.home}/mt.db", "--to", url, home=source.home, master_key=key)
    assert again.returncode == 1
    assert "already holds data" in again.stderr and "--into-non-empty" in again.stderr
    assert "Traceback" not in again.stderr
    # with it: idempotent, and a change made in the source since is carried over
    source.tenant("acme").set_limits(max_tools=9)
    forced = mt_db_copy("--from", f"sqlite:///{source.home}/mt.db", "--to", url, "--into-non-empty",
                        home=source.home, master_key=key)
    assert forced.returncode == 0, forced.stderr
    assert snapshot(target) == snapshot(source)
    assert acme.limits().max_tools == 9
    target.close()


def test_copy_refuses_without_the_right_master_key(installation, backend):
    source, _, _ = installation
    url = backend.new_database()
    out = mt_db_copy("--from", f"sqlite:///{source.home}/mt.db", "--to", url, home=source.home,
                     master_key=generate_master_key())
    assert out.returncode == 1
    assert "does not decrypt with this installation's master key" in out.stderr
    target = MTCore(settings=make_settings(source.home, database_url=url))
    assert sum(target.storage.count_rows().values()) == 0  # nothing was copied
    target.close()


def test_copy_postgresql_back_to_a_new_sqlite_file(installation, backend, tmp_path):
    source, _, llm_id = installation
    key = source.settings.master_key
    url = backend.new_database()
    assert mt_db_copy("--from", f"sqlite:///{source.home}/mt.db", "--to", url, home=source.home,
                      master_key=key).returncode == 0
    back = tmp_path / "back" / "mt.db"
    out = mt_db_copy("--from", url, "--to", f"sqlite:///{back}", home=source.home, master_key=key)
    assert out.returncode == 0, out.stderr
    copy = MTCore(settings=make_settings(tmp_path / "back", master_key=key, database_url=f"sqlite:///{back}"))
    assert snapshot(copy) == snapshot(source)
    assert decrypted(copy, "acme", llm_id).api_key == API_KEY
    copy.close()


def test_copy_from_a_missing_sqlite_file_is_a_clean_error(tmp_path, backend):
    out = mt_db_copy("--from", f"sqlite:///{tmp_path}/nothing.db", "--to", backend.new_database(), home=tmp_path,
                     master_key=generate_master_key())
    assert out.returncode == 1 and "there is no SQLite database at" in out.stderr
    assert not (tmp_path / "nothing.db").exists()
