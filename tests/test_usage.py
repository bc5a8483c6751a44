"""Usage events, prices and reports: runs against scripted servers whose ``usage`` fields are
known, costs checked against prices computed by hand, reports through the API and ``mt usage``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from datetime import datetime, timedelta, timezone

import pytest

from conftest import API_KEY, CALCULATOR, current_backend, raw_sql
from mt_core import LLMConfigError, NotFoundError, RunError, ValidationError
from mt_core.prices import attempt_cost, check_prices, format_usd
from mt_core.storage import utcnow

CALL_TOOL = 'Thought: use the calculator.\n<code>\nresult = calculator(expression="25 * 16")\nprint(result)\n</code>'
FINAL = "<code>\nfinal_answer(result)\n</code>"
# Two LLM calls whose usage is known: the first with 400 of its 1,000 input tokens from the provider's cache.
PRICED_SCRIPT = [
    {"content": CALL_TOOL, "usage": {"prompt_tokens": 1000, "completion_tokens": 200, "cached_tokens": 400}},
    {"content": FINAL, "usage": {"prompt_tokens": 1500, "completion_tokens": 50}},
]
# gpt-4o-mini by hand: $0.15 per million input tokens, $0.075 per million cached ones, $0.60 per million output
FIRST_CALL = (600 * 0.15 + 400 * 0.075 + 200 * 0.60) / 1e6  # $0.000240
SECOND_CALL = (1500 * 0.15 + 50 * 0.60) / 1e6  # $0.000255


def run(tenant, tool_ids, llm_id, **options):
    """run_query in the local jail; the result (or the RunError) and the run record."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = tenant.run_query(tool_ids, llm_id, "What is 25 multiplied by 16?", use_docker=False, **options)
        except RunError as error:
            return error, tenant.get_run(error.run_id)
    return result, tenant.get_run(result.run_id)


@pytest.fixture
def acme(core, llm_server):
    """Tenant acme with the calculator and a gpt-4o-mini configuration on a scripted server."""
    tenant = core.tenant("acme")
    server = llm_server(PRICED_SCRIPT)
    tool_id = tenant.add_tool("calculator", "Evaluates arithmetic.", CALCULATOR)
    llm_id = tenant.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="gpt-4o-mini", llm_name="mini")
    return tenant, server, tool_id, llm_id


# -- events and prices ------------------------------------------------------------------------------


def test_every_attempt_is_priced_with_genai_prices_and_the_run_carries_its_cost(acme):
    tenant, _, tool_id, llm_id = acme

    result, record = run(tenant, [tool_id], llm_id)

    assert str(result) == "400"
    calls = record["llm_calls"]
    assert [(c["input_tokens"], c["output_tokens"], c["cached_tokens"]) for c in calls] == [(1000, 200, 400),
                                                                                          (1500, 50, 0)]
    assert [c["cost_usd"] for c in calls] == pytest.approx([FIRST_CALL, SECOND_CALL], rel=1e-9)
    # a proxy's base_url is no known provider's API: gpt-4o-mini is OpenAI's model, found by its name
    assert calls[0]["priced_by"].startswith("genai-prices ") and "openai gpt-4o-mini (by model name)" in calls[0]["priced_by"]
    assert record["cost_usd"] == pytest.approx(FIRST_CALL + SECOND_CALL, rel=1e-9)
    assert record["unpriced_calls"] == 0
    assert result.cost_usd == record["cost_usd"] and result.llm_calls == calls
    assert tenant.get_runs()[0]["cost_usd"] == record["cost_usd"]


def test_tool_calls_are_stored_with_the_tool_id_and_version(acme):
    tenant, _, tool_id, llm_id = acme
    assert tenant.update_tool(tool_id, description="Evaluates arithmetic, v2.") == 2

    result, record = run(tenant, [f"{tool_id}@1"], llm_id)

    [call] = record["tool_calls"]
    assert (call["tool_id"], call["tool_version"], call["name"], call["outcome"], call["error"]) == (
        tool_id, "1", "calculator", "ok", None)
    assert call["seq"] == 1 and call["duration_ms"] >= 0
    started = datetime.fromisoformat(call["started_at"])
    first, second = (datetime.fromisoformat(c["started_at"]) for c in record["llm_calls"])
    assert first < started < second  # the tool ran after the first LLM call and before the second
    assert result.tool_calls == record["tool_calls"]


def test_a_failing_tool_call_is_recorded_as_an_error(core, llm_server):
    tenant = core.tenant("acme")
    failing = '''
def divide(a: float, b: float) -> float:
    """Divides a by b.

    Args:
        a: The dividend.
        b: The divisor.
    """
    return a / b
'''
    server = llm_server(["<code>\ntry:\n    divide(a=1, b=0)\nexcept Exception:\n    pass\nfinal_answer('no')\n</code>"])
    tool_id = tenant.add_tool("divide", "Divides.", failing)
    llm_id = tenant.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")

    _, record = run(tenant, [tool_id], llm_id)

    [call] = record["tool_calls"]
    assert call["outcome"] == "error" and call["error"].startswith("ZeroDivisionError")
    [row] = tenant.get_usage(group_by="tool")
    assert (row["tool_id"], row["name"], row["calls"], row["errors"], row["runs"]) == (tool_id, "divide", 1, 1, 1)


def test_a_price_override_prices_a_private_model_and_removing_it_leaves_it_unpriced(core, llm_server):
    tenant = core.tenant("acme")
    server = llm_server(PRICED_SCRIPT)
    tool_id = tenant.add_tool("calculator", "Evaluates arithmetic.", CALCULATOR)
    prices = {"input_per_mtok": 2, "output_per_mtok": 8, "cached_input_per_mtok": 0.5}
    llm_id = tenant.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="acme-private-7b", prices=prices)
    assert tenant.get_llm_config(llm_id)["prices"] == {"input_per_mtok": 2.0, "output_per_mtok": 8.0,
                                                       "cached_input_per_mtok": 0.5}

    _, record = run(tenant, [tool_id], llm_id)

    by_hand = [(600 * 2 + 400 * 0.5 + 200 * 8) / 1e6, (1500 * 2 + 50 * 8) / 1e6]  # $0.0030, $0.0034
    assert [c["cost_usd"] for c in record["llm_calls"]] == pytest.approx(by_hand, rel=1e-12)
    assert {c["priced_by"] for c in record["llm_calls"]} == {"configuration"}
    assert record["cost_usd"] == pytest.approx(sum(by_hand), rel=1e-12)

    tenant.update_llm(llm_id, prices=None)  # genai-prices knows no "acme-private-7b": unpriced, never 0
    assert tenant.get_llm_config(llm_id)["prices"] is None
    _, unpriced = run(tenant, [tool_id], llm_id)
    assert [c["cost_usd"] for c in unpriced["llm_calls"]] == [None, None]
    assert unpriced["cost_usd"] is None and unpriced["unpriced_calls"] == 2

    [row] = tenant.get_usage(group_by="llm")
    assert row["llm_id"] == llm_id and row["runs"] == 2 and row["calls"] == 4 and row["unpriced_calls"] == 2
    assert row["cost_usd"] == pytest.approx(sum(by_hand), rel=1e-12)  # what was priced; the rest is flagged


def test_prices_are_validated(core):
    tenant = core.tenant("acme")
    base = {"base_url": "http://127.0.0.1:9/v1", "api_key": API_KEY, "model_name": "m"}
    for prices, says in [
        ({"input_per_mtok": 1}, "output_per_mtok is missing"),
        ({"input_per_mtok": -1, "output_per_mtok": 1}, "input_per_mtok must be a number"),
        ({"input_per_mtok": 1, "output_per_mtok": True}, "output_per_mtok must be a number"),
        ({"input_per_mtok": 1, "output_per_mtok": float("nan")}, "output_per_mtok must be a number"),
        ({"input_per_mtok": 1, "output_per_mtok": 1, "input_per_mtk": 1}, "did you mean 'input_per_mtok'"),
        ([1, 2], "must be a dict"),
    ]:
        with pytest.raises(LLMConfigError, match=says):
            tenant.add_llm(**base, prices=prices)
    assert tenant.get_llms() == []
    llm_id = tenant.add_llm(**base, prices={"input_per_mtok": 0, "output_per_mtok": 0})  # a free self-hosted model
    with pytest.raises(LLMConfigError, match="prices"):
        tenant.update_llm(llm_id, prices={"output_per_mtok": 1})
    assert tenant.get_llm_config(llm_id)["prices"] == {"input_per_mtok": 0.0, "output_per_mtok": 0.0}
    assert check_prices(None) is None


def test_exist_ok_compares_prices(core):
    tenant = core.tenant("acme")
    base = {"base_url": "http://127.0.0.1:9/v1", "api_key": API_KEY, "model_name": "m", "llm_name": "m"}
    llm_id = tenant.add_llm(**base, prices={"input_per_mtok": 1, "output_per_mtok": 2})
    assert tenant.add_llm(**base, prices={"input_per_mtok": 1, "output_per_mtok": 2}, exist_ok=True) == llm_id
    with pytest.raises(Exception, match="different prices"):
        tenant.add_llm(**base, prices={"input_per_mtok": 1, "output_per_mtok": 3}, exist_ok=True)


def test_historic_and_cached_token_prices_come_from_the_bundled_data():
    """genai-prices' own data, at the attempt's time: OpenAI cut o3 from $10/$40 to $2/$8 per million
    tokens on 2025-06-10."""
    def cost(at, **tokens):
        values = {"input_tokens": 0, "output_tokens": 0, "cached_tokens": 0, **tokens}
        return attempt_cost(provider="openai", model="o3", base_url="https://api.openai.com/v1", prices=None,
                            at=at, **values)

    before, after = datetime(2025, 6, 1, tzinfo=timezone.utc), datetime(2025, 7, 1, tzinfo=timezone.utc)
    assert cost(before, input_tokens=1_000_000).usd == pytest.approx(10.0)
    assert cost(after, input_tokens=1_000_000).usd == pytest.approx(2.0)
    assert cost(before, output_tokens=1_000_000).usd == pytest.approx(40.0)
    assert cost(after, input_tokens=1_000_000, cached_tokens=1_000_000).usd == pytest.approx(0.5)
    assert cost(after, input_tokens=1_000_000).priced_by.endswith(": openai o3")  # by its API's address
    # a known provider's API only prices its own models
    assert attempt_cost(provider="openai", model="claude-sonnet-4-5", base_url="https://api.openai.com/v1",
                        prices=None, input_tokens=10, output_tokens=10, cached_tokens=0, at=after).usd is None
    # an attempt that billed nothing costs nothing, priced or not
    assert attempt_cost(provider="openai", model="no-such-model", base_url=None, prices=None, input_tokens=0,
                        output_tokens=0, cached_tokens=0, at=after).usd == 0.0


def test_prices_never_come_from_the_network(acme):
    from genai_prices import data_snapshot

    tenant, _, tool_id, llm_id = acme
    _, record = run(tenant, [tool_id], llm_id)

    assert record["cost_usd"] is not None
    assert data_snapshot.get_snapshot().from_auto_update is False  # the data bundled with the package
    assert "genai_prices:update" not in {thread.name for thread in threading.enumerate()}


def test_an_unknown_model_is_unpriced_and_flagged_never_zero(core, llm_server):
    tenant = core.tenant("acme")
    server = llm_server(PRICED_SCRIPT)
    tool_id = tenant.add_tool("calculator", "Evaluates arithmetic.", CALCULATOR)
    llm_id = tenant.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="scripted")

    result, record = run(tenant, [tool_id], llm_id)

    assert result.cost_usd is None and record["cost_usd"] is None and record["unpriced_calls"] == 2
    assert [(c["cost_usd"], c["priced_by"]) for c in record["llm_calls"]] == [(None, None), (None, None)]
    [row] = tenant.get_usage(group_by="model")
    assert (row["provider"], row["model"], row["cost_usd"], row["unpriced_calls"]) == ("openai", "scripted", None, 2)
    assert (row["input_tokens"], row["output_tokens"], row["cached_tokens"]) == (2500, 250, 400)


def test_a_cache_hit_bills_nothing(core, llm_server):
    tenant = core.tenant("acme")
    server = llm_server([{"content": '<code>final_answer("done")</code>',
                          "usage": {"prompt_tokens": 1000, "completion_tokens": 10}}])
    llm_id = tenant.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="gpt-4o-mini", temperature=0,
                            cache_ttl=60)

    _, first = run(tenant, [], llm_id)
    _, second = run(tenant, [], llm_id)

    assert first["cost_usd"] == pytest.approx((1000 * 0.15 + 10 * 0.6) / 1e6)
    [hit] = second["llm_calls"]
    assert hit["outcome"] == "cache_hit" and hit["cost_usd"] == 0.0 and hit["priced_by"] is None
    assert second["cost_usd"] == 0.0 and second["unpriced_calls"] == 0


CRASHING_WORKER = textwrap.dedent('''
    import sys, warnings
    from mt_core import MTCore, Settings
    home, key, tool_id, llm_id, database_url = sys.argv[1:6]
    settings = Settings(home=home, master_key=key, database_url=database_url or None, load_plugins=(),
                        llm_allowed_networks=("127.0.0.0/8",))
    warnings.simplefilter("ignore")
    MTCore(settings=settings).tenant("acme").run_query([tool_id], llm_id, "What is 25 * 16?", use_docker=False)
''')


def test_a_crashed_run_still_shows_what_it_spent_and_the_tools_it_called(core, llm_server):
    tenant = core.tenant("acme")
    server = llm_server([PRICED_SCRIPT[0], {"hang": True}])
    tool_id = tenant.add_tool("calculator", "Evaluates arithmetic.", CALCULATOR)
    llm_id = tenant.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="gpt-4o-mini")
    worker = subprocess.Popen([sys.executable, "-c", CRASHING_WORKER, str(core.home), core.settings.master_key,
                               tool_id, llm_id, core.settings.database_url or ""],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len(server.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(server.requests) == 2, "the worker never reached its second LLM call"
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()

    [record] = tenant.get_runs()
    record = tenant.get_run(record["id"])
    assert record["status"] == "failed"
    assert [c["cost_usd"] for c in record["llm_calls"]] == pytest.approx([FIRST_CALL])
    assert record["cost_usd"] == pytest.approx(FIRST_CALL)
    assert [c["name"] for c in record["tool_calls"]] == ["calculator"]
    [day] = tenant.get_usage()
    assert day["cost_usd"] == pytest.approx(FIRST_CALL) and day["calls"] == 1


# -- reports --------------------------------------------------------------------------------------


def test_reports_by_day_model_llm_run_and_tool(acme):
    tenant, _, tool_id, llm_id = acme
    first, _ = run(tenant, [tool_id], llm_id)
    second, _ = run(tenant, [tool_id], llm_id)
    per_run = FIRST_CALL + SECOND_CALL
    today = datetime.now(timezone.utc).date().isoformat()

    [day] = tenant.get_usage(group_by="day")
    assert day == {"day": today, "runs": 2, "calls": 4, "attempts": 4, "input_tokens": 5000, "output_tokens": 500,
                   "cached_tokens": 800, "cost_usd": pytest.approx(2 * per_run, rel=1e-9), "unpriced_calls": 0}
    [model] = tenant.get_usage(group_by="model")
    assert (model["provider"], model["model"], model["calls"]) == ("openai", "gpt-4o-mini", 4)
    [llm] = tenant.get_usage(group_by="llm")
    assert (llm["llm_id"], llm["llm_name"], llm["runs"]) == (llm_id, "mini", 2)
    runs = tenant.get_usage(group_by="run")
    assert [r["run_id"] for r in runs] == [first.run_id, second.run_id]  # oldest first
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
    assert [r["cost_usd"] for r in runs] == pytest.approx([per_run, per_run], rel=1e-9)
    [tool] = tenant.get_usage(group_by="tool")
    assert (tool["tool_id"], tool["name"], tool["runs"], tool["calls"], tool["errors"]) == (
        tool_id, "calculator", 2, 2, 0)


def test_report_windows(acme, backend):
    tenant, _, tool_id, llm_id = acme
    run(tenant, [tool_id], llm_id)
    # an attempt of an older run, moved to last month behind mt-core's back
    earlier = (datetime.now(timezone.utc).replace(day=1) - timedelta(days=3)).replace(hour=12)
    core = tenant.core
    raw_sql(core, "UPDATE llm_attempts SET started_at = ? WHERE seq = 1", (earlier.isoformat(timespec="microseconds"),))
    today = datetime.now(timezone.utc).date()

    assert [r["calls"] for r in tenant.get_usage()] == [1]  # default: this month
    days = tenant.get_usage(since=earlier.date(), until=today)
    assert [(r["day"], r["calls"]) for r in days] == [(earlier.date().isoformat(), 1), (today.isoformat(), 1)]
    assert [r["calls"] for r in tenant.get_usage(since=earlier.date().isoformat(), until=earlier.date())] == [1]
    assert tenant.get_usage(since=today + timedelta(days=1), until=today + timedelta(days=2)) == []
    naive_utc = datetime.now(timezone.utc).replace(tzinfo=None)  # a naive time is UTC
    assert tenant.get_usage(since=naive_utc - timedelta(hours=1), until=naive_utc + timedelta(hours=1)) != []
    assert tenant.get_usage(since=naive_utc + timedelta(hours=1), until=naive_utc + timedelta(hours=2)) == []
    with pytest.raises(ValidationError, match="since: 'last week' is not a date"):
        tenant.get_usage(since="last week")
    with pytest.raises(ValidationError, match="until: must be after since"):
        tenant.get_usage(since=today, until=today - timedelta(days=1))
    with pytest.raises(ValidationError, match="group_by: 'week' is not one of day, model, llm, tool, run"):
        tenant.get_usage(group_by="week")


def test_one_tenant_never_reads_anothers_usage(acme, llm_server):
    tenant, _, tool_id, llm_id = acme
    result, _ = run(tenant, [tool_id], llm_id)
    core = tenant.core
    globex = core.tenant("globex")

    for group in ("day", "model", "llm", "tool", "run"):
        assert globex.get_usage(group_by=group) == []
        assert core.storage.usage("globex", since="2000-01-01", until="2100-01-01", group_by=group) == []
    assert core.storage.list_tool_calls("globex", result.run_id) == []
    with pytest.raises(NotFoundError):
        globex.get_run(result.run_id)
    # the operator's view has both, each row with its tenant
    server = llm_server([{"content": '<code>final_answer("hi")</code>', "usage": {"prompt_tokens": 7,
                                                                                 "completion_tokens": 3}}])
    run(globex, [], globex.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="gpt-4o-mini"))
    rows = core.usage_all_tenants(group_by="model")
    assert [(r["tenant"], r["input_tokens"]) for r in rows] == [("acme", 2500), ("globex", 7)]
    assert [r["input_tokens"] for r in tenant.get_usage(group_by="model")] == [2500]


def test_module_level_get_usage(default_core, llm_server):
    import mt_core

    server = llm_server([{"content": '<code>final_answer("hi")</code>', "usage": {"prompt_tokens": 100,
                                                                                 "completion_tokens": 20}}])
    llm_id = mt_core.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="gpt-4o-mini", tenant="acme")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mt_core.run_query([], llm_id, "Say hi.", use_docker=False, tenant="acme")

    [row] = mt_core.get_usage(tenant="acme", group_by="llm")
    assert row["llm_id"] == llm_id and row["cost_usd"] == pytest.approx((100 * 0.15 + 20 * 0.6) / 1e6)
    assert mt_core.get_usage(tenant="globex") == []


def mt(*args: str, home) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **current_backend().env(home), "MT_LOAD_PLUGINS": ""}
    return subprocess.run([sys.executable, "-m", "mt_core", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_mt_usage_prints_a_table_json_and_the_operators_view(acme, llm_server):
    tenant, _, tool_id, llm_id = acme
    run(tenant, [tool_id], llm_id)
    other = tenant.core.tenant("globex")
    server = llm_server(["<code>final_answer('x')</code>"])
    run(other, [], other.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="scripted"))
    today = datetime.now(timezone.utc).date().isoformat()
    home = tenant.core.home

    table = mt("usage", "--tenant", "acme", "--since", today[:8] + "01", "--by", "day", home=home)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["day", "runs", "calls", "input_tokens", "output_tokens", "cached_tokens", "cost_usd",
                                "unpriced_calls"]
    assert lines[1].split() == [today, "1", "2", "2500", "250", "400", format_usd(FIRST_CALL + SECOND_CALL), "0"]
    assert lines[2] == f"total: 2,750 tokens, {format_usd(FIRST_CALL + SECOND_CALL)}"

    as_json = json.loads(mt("usage", "--tenant", "acme", "--by", "model", "--json", home=home).stdout)
    assert [(r["model"], r["calls"]) for r in as_json] == [("gpt-4o-mini", 2)]
    assert as_json[0]["cost_usd"] == pytest.approx(FIRST_CALL + SECOND_CALL)

    everyone = mt("usage", "--all-tenants", "--by", "model", home=home)
    assert everyone.returncode == 0, everyone.stderr
    rows = [line.split() for line in everyone.stdout.splitlines()]
    assert rows[0][:3] == ["tenant", "provider", "model"]
    assert [row[:3] for row in rows[1:3]] == [["acme", "openai", "gpt-4o-mini"], ["globex", "openai", "scripted"]]
    assert rows[2][-2:] == ["unpriced", "1"]
    assert "1 calls have no known price" in everyone.stdout

    tools = mt("usage", "--tenant", "acme", "--by", "tool", home=home)
    assert tools.stdout.splitlines()[1].split()[:5] == [tool_id, "calculator", "1", "1", "0"]
    assert "(none)" in mt("usage", "--tenant", "initech", home=home).stdout
    refused = mt("usage", "--tenant", "acme", "--all-tenants", home=home)
    assert refused.returncode != 0 and "not both" in refused.stderr
    runs = mt("runs", "list", "--tenant", "globex", home=home).stdout.splitlines()
    assert runs[0].split()[-2:] == ["cost_usd", "error"] and runs[1].split()[-1] == "unpriced"


# -- the schema change ----------------------------------------------------------------------------


def test_migrating_a_database_with_runs_keeps_them_and_their_keys(tmp_path, backend):
    """Migration 0008 rebuilds runs on SQLite (with foreign keys off while it does): every row
    stays, the foreign keys still hold, and a run may now end with status budget_exceeded."""
    from mt_core.storage import open_storage
    from mt_core.storage.migrations import migrations, split_sql

    steps = [step for step in migrations(backend.name) if step[0] < 8]
    now = utcnow()
    rows = [
        "INSERT INTO tenants (id, created_at) VALUES ('acme', '{now}')",
        "INSERT INTO runs (tenant_id, id, llm_id, tool_ids, query, agent_type, status, started_at)"
        " VALUES ('acme', 'run_old', 'llm_x', '[]', 'q', 'code', 'succeeded', '{now}')",
        "INSERT INTO llm_attempts (tenant_id, run_id, seq, call_index, llm_id, provider, model, outcome, latency_ms,"
        " input_tokens, output_tokens, started_at, finished_at) VALUES ('acme', 'run_old', 1, 1, 'llm_x', 'openai',"
        " 'gpt-4o-mini', 'ok', 5, 100, 10, '{now}', '{now}')",
        "INSERT INTO llm_attempts (tenant_id, run_id, seq, call_index, llm_id, provider, model, outcome, latency_ms,"
        " started_at, finished_at) VALUES ('acme', 'run_old', 2, 2, 'llm_x', 'openai', 'gpt-4o-mini', 'failed', 5,"
        " '{now}', '{now}')",
    ]
    if backend.name == "sqlite":
        import sqlite3

        location = str(tmp_path / "old.db")
        conn = sqlite3.connect(location)
        runner = conn.execute
    else:
        import psycopg

        location = backend.new_database(migrated=False)
        conn = psycopg.connect(location, autocommit=True)
        runner = conn.execute
    runner("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
    for version, name, sql in steps:
        for statement in split_sql(sql):
            runner(statement)
        runner(f"INSERT INTO schema_migrations (version, name, applied_at) VALUES ({version}, '{name}', '{now}')")
    for statement in rows:
        runner(statement.format(now=now))
    if backend.name == "sqlite":
        conn.commit()
    conn.close()

    storage = open_storage(location)
    try:
        assert storage.schema_versions()[-1] == (8, "usage")
        record = storage.get_run("acme", "run_old")
        assert record["status"] == "succeeded" and record["cost_usd"] is None and record["unpriced_calls"] == 1
        assert [a["cost_usd"] for a in storage.list_llm_attempts("acme", "run_old")] == [None, 0]
        storage.finish_run("acme", "run_old", {"status": "budget_exceeded"})
        with pytest.raises(Exception):  # the attempts' foreign key to runs still holds
            storage.add_llm_attempt("acme", {"run_id": "run_gone", "seq": 1, "call_index": 1, "llm_id": "x",
                                             "provider": "openai", "model": "m", "outcome": "ok", "latency_ms": 1,
                                             "started_at": now, "finished_at": now})
        with pytest.raises(Exception):  # and the status check still refuses what is not a status
            storage.finish_run("acme", "run_old", {"status": "bogus"})
    finally:
        storage.close()
