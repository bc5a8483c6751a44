"""Tenant limits: exceeding any gives QuotaExceededError and writes nothing."""

from __future__ import annotations

import threading

import pytest

from conftest import API_KEY, CALCULATOR
from mt_core import QuotaExceededError, ValidationError

pytestmark = pytest.mark.filterwarnings("ignore::mt_core.errors.SandboxFallbackWarning")


def test_defaults_and_overrides(core):
    acme = core.tenant("acme")
    assert acme.limits().max_tools == 1000
    assert acme.set_limits(max_tools=3).max_tools == 3
    assert core.tenant("globex").limits().max_tools == 1000  # per tenant
    assert acme.set_limits(max_tools=None).max_tools == 1000
    with pytest.raises(ValidationError, match="max_toolz: is not a limit"):
        acme.set_limits(max_toolz=1)
    with pytest.raises(ValidationError, match="max_tools: must be a positive integer"):
        acme.set_limits(max_tools=0)


def test_max_tools(core):
    acme = core.tenant("acme")
    acme.set_limits(max_tools=1)
    acme.add_tool("calculator", "Evaluates arithmetic.", CALCULATOR)
    with pytest.raises(QuotaExceededError, match="max_tools: the number of tools would be 2; this tenant's limit is 1"):
        acme.add_tool("calculator2", "Evaluates arithmetic.", CALCULATOR)
    assert [t["name"] for t in acme.get_tools()] == ["calculator"]
    assert len(list((core.home / "tools" / "acme").iterdir())) == 1


def test_max_llms(core):
    acme = core.tenant("acme")
    acme.set_limits(max_llms=1)
    acme.add_llm(base_url="http://127.0.0.1:9/v1", api_key=API_KEY, model_name="a")
    with pytest.raises(QuotaExceededError, match="max_llms"):
        acme.add_llm(base_url="http://127.0.0.1:9/v1", api_key=API_KEY, model_name="b")
    assert len(acme.get_llms()) == 1


def test_max_tool_source_bytes(core):
    acme = core.tenant("acme")
    acme.set_limits(max_tool_source_bytes=100)
    with pytest.raises(QuotaExceededError, match="max_tool_source_bytes"):
        acme.add_tool("calculator", "Evaluates arithmetic.", CALCULATOR)
    assert acme.get_tools() == []


def test_query_length_and_steps(core, llm_server):
    acme = core.tenant("acme")
    llm_id = acme.add_llm(base_url=llm_server(["<code>final_answer('ok')</code>"]).base_url, api_key=API_KEY, model_name="m")
    acme.set_limits(max_query_length=10, max_steps=3)
    with pytest.raises(QuotaExceededError, match="max_query_length: the query's length would be 11"):
        acme.run_query([], llm_id, "x" * 11)
    with pytest.raises(QuotaExceededError, match="max_steps: the run's max_steps would be 4"):
        acme.run_query([], llm_id, "hi", max_steps=4)
    assert acme.get_runs() == []
    assert str(acme.run_query([], llm_id, "hi", max_steps=3)) == "ok"


def test_runs_per_minute(core, llm_server):
    acme = core.tenant("acme")
    llm_id = acme.add_llm(base_url=llm_server(["<code>final_answer('ok')</code>"]).base_url, api_key=API_KEY, model_name="m")
    acme.set_limits(runs_per_minute=2)
    acme.run_query([], llm_id, "one")
    acme.run_query([], llm_id, "two")
    with pytest.raises(QuotaExceededError, match="runs_per_minute: the runs started in the last minute would be 3"):
        acme.run_query([], llm_id, "three")
    assert len(acme.get_runs()) == 2
    # another tenant is not starved by acme's use
    globex = core.tenant("globex")
    other = globex.add_llm(base_url=llm_server(["<code>final_answer('ok')</code>"]).base_url, api_key=API_KEY, model_name="m")
    assert str(globex.run_query([], other, "one")) == "ok"


def test_max_concurrent_runs(core, llm_server):
    acme = core.tenant("acme")
    slow = acme.add_llm(
        base_url=llm_server([{"content": "<code>final_answer('slow')</code>", "delay": 1.5}]).base_url,
        api_key=API_KEY, model_name="m",
    )
    acme.set_limits(max_concurrent_runs=1)
    results = []
    first = threading.Thread(target=lambda: results.append(str(acme.run_query([], slow, "first"))))
    first.start()
    while not acme.get_runs():  # the first run is recorded as running
        pass
    with pytest.raises(QuotaExceededError, match="max_concurrent_runs: the runs in progress would be 2"):
        acme.run_query([], slow, "second")
    first.join()
    assert results == ["slow"]
    assert str(acme.run_query([], slow, "third")) == "slow"  # the slot is free again
