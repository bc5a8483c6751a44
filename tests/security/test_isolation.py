"""Isolation by construction: every public function and every `mt` command, called with another
tenant's ids, answers exactly as for ids that never existed."""

from __future__ import annotations

import inspect
import json
import os
import statistics
import subprocess
import sys
import time

import pytest

import mt_core
from mt_core import api
from conftest import API_KEY, CALCULATOR, CALCULATOR_SCRIPT, current_backend

pytestmark = pytest.mark.filterwarnings("ignore::mt_core.errors.SandboxFallbackWarning")

ID_ARGUMENTS = {"tool_id": "tool", "llm_id": "llm", "run_id": "run"}


@pytest.fixture
def victim(default_core, llm_server):
    """Tenant "victim" with a tool, an LLM and a run; "attacker" exists with nothing of its own."""
    server = llm_server(CALCULATOR_SCRIPT)
    ids = {
        "tool": mt_core.add_tool("calculator", "Evaluates arithmetic.", CALCULATOR, tenant="victim"),
        "llm": mt_core.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m", tenant="victim"),
    }
    ids["run"] = mt_core.run_query([ids["tool"]], ids["llm"], "What is 25 multiplied by 16?", tenant="victim").run_id
    mt_core.get_tools(tenant="attacker")
    return ids


def _public_functions_taking_ids():
    for name in api.__all__ if hasattr(api, "__all__") else dir(api):
        function = getattr(api, name)
        if inspect.isfunction(function) and function.__module__ == api.__name__:
            parameters = inspect.signature(function).parameters
            if any(p in ID_ARGUMENTS for p in parameters) or "tool_ids" in parameters:
                yield name


def _call(name, ids, tenant):
    function = getattr(api, name)
    parameters = inspect.signature(function).parameters
    arguments = {}
    for parameter in parameters:
        if parameter in ID_ARGUMENTS:
            arguments[parameter] = ids[ID_ARGUMENTS[parameter]]
        elif parameter == "tool_ids":
            arguments[parameter] = [ids["tool"]]
        elif parameter == "query":
            arguments[parameter] = "What is 25 multiplied by 16?"
    if "llm_id" in parameters and "tool_ids" in parameters:
        arguments["llm_id"] = ids["llm"]
    return function(**arguments, tenant=tenant)


def test_the_walk_covers_every_id_taking_function():
    assert set(_public_functions_taking_ids()) == {
        "get_tool", "delete_tool", "get_llm_config", "delete_llm", "get_run", "run_query", "update_tool",
        "get_tool_versions", "update_llm",
    }


@pytest.mark.parametrize("name", sorted(_public_functions_taking_ids()))
def test_every_public_function_treats_foreign_ids_as_missing(victim, name):
    missing = {kind: value[:-8] + "deadbeef" for kind, value in victim.items()}
    with pytest.raises(mt_core.NotFoundError) as foreign_error:
        _call(name, victim, "attacker")
    with pytest.raises(mt_core.NotFoundError) as missing_error:
        _call(name, missing, "attacker")
    # the same words, only the echoed id differs
    assert str(foreign_error.value).replace(victim[foreign_error.value.kind], "ID") == str(
        missing_error.value
    ).replace(missing[missing_error.value.kind], "ID")
    # and the victim still has everything
    assert mt_core.get_tool(victim["tool"], tenant="victim")["name"] == "calculator"
    assert mt_core.get_llm_config(victim["llm"], tenant="victim")["id"] == victim["llm"]
    assert mt_core.get_run(victim["run"], tenant="victim")["status"] == "succeeded"


def test_another_tenants_llm_cannot_be_a_fallback(victim, llm_server):
    """A fallback id of another tenant is not found, in the same words as one that never existed,
    at add_llm and at update_llm; nothing is stored."""
    server = llm_server(CALCULATOR_SCRIPT)
    missing = victim["llm"][:-8] + "deadbeef"
    messages = []
    for fallback in (victim["llm"], missing):
        with pytest.raises(mt_core.NotFoundError) as caught:
            mt_core.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m", fallbacks=[fallback],
                            tenant="attacker")
        messages.append(str(caught.value).replace(fallback, "ID"))
    assert messages[0] == messages[1] == "llm 'ID' not found"
    assert mt_core.get_llms(tenant="attacker") == []
    own = mt_core.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m", tenant="attacker")
    with pytest.raises(mt_core.NotFoundError, match="^llm '.*' not found$"):
        mt_core.update_llm(own, fallbacks=[victim["llm"]], tenant="attacker")
    assert mt_core.get_llm_config(own, tenant="attacker")["fallbacks"] == []


def test_foreign_and_missing_ids_take_the_same_time(victim):
    """Both are one indexed lookup on (tenant_id, id); medians of interleaved samples agree."""
    handle = mt_core.tenant("attacker")
    missing = victim["tool"][:-8] + "deadbeef"
    timings = {"foreign": [], "missing": []}
    for _ in range(300):
        for label, tool_id in (("foreign", victim["tool"]), ("missing", missing)):
            started = time.perf_counter()
            with pytest.raises(mt_core.NotFoundError):
                handle.get_tool(tool_id)
            timings[label].append(time.perf_counter() - started)
    foreign, absent = statistics.median(timings["foreign"]), statistics.median(timings["missing"])
    assert abs(foreign - absent) < max(0.25 * min(foreign, absent), 50e-6), (foreign, absent)


MT_COMMANDS = [
    ("tools", "show", "{tool}"), ("tools", "delete", "{tool}"), ("llms", "show", "{llm}"),
    ("llms", "delete", "{llm}"), ("runs", "show", "{run}"), ("tools", "disable", "calculator"),
]


@pytest.mark.parametrize("command", MT_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_every_mt_command_treats_foreign_ids_as_missing(victim, default_core, command):
    env = {**os.environ, **current_backend().env(default_core.home), "MT_LOAD_PLUGINS": ""}
    args = [part.format(**victim) for part in command]
    out = subprocess.run(
        [sys.executable, "-m", "mt_core", *args, "--tenant", "attacker"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 1
    assert out.stderr.startswith("Error: ") and out.stderr.rstrip().endswith("not found")
    assert "Traceback" not in out.stderr
    listing = subprocess.run(
        [sys.executable, "-m", "mt_core", "tools", "list", "--json", "--tenant", "attacker"],
        env=env, capture_output=True, text=True,
    )
    assert json.loads(listing.stdout) == []
    assert mt_core.get_tool(victim["tool"], tenant="victim")  # untouched
