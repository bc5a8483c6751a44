"""Tenant B can neither read, list, run, change nor learn of tenant A's tools, LLMs and runs."""

from __future__ import annotations

import pytest

import mt_core
from conftest import API_KEY, CALCULATOR, CALCULATOR_SCRIPT, decrypted
from mt_core import NotFoundError, TenantError

pytestmark = pytest.mark.filterwarnings("ignore::mt_core.errors.SandboxFallbackWarning")


@pytest.fixture
def tenant_a(default_core, llm_server):
    """Tenant A with a tool, an LLM and a finished run, created through the module-level API."""
    server = llm_server(CALCULATOR_SCRIPT)
    tool_id = mt_core.add_tool("calculator", "Evaluates arithmetic.", CALCULATOR, tenant="tenant-a")
    llm_id = mt_core.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m", tenant="tenant-a")
    result = mt_core.run_query([tool_id], llm_id, "What is 25 multiplied by 16?", tenant="tenant-a")
    assert str(result) == "400"
    return {"tool": tool_id, "llm": llm_id, "run": result.run_id, "server": server}


def _message(call):
    with pytest.raises(NotFoundError) as caught:
        call()
    return str(caught.value)


@pytest.mark.parametrize(
    "attempt",
    [
        lambda ids: mt_core.get_tool(ids["tool"], tenant="tenant-b"),
        lambda ids: mt_core.delete_tool(ids["tool"], tenant="tenant-b"),
        lambda ids: mt_core.get_llm_config(ids["llm"], tenant="tenant-b"),
        lambda ids: mt_core.delete_llm(ids["llm"], tenant="tenant-b"),
        lambda ids: mt_core.get_run(ids["run"], tenant="tenant-b"),
        lambda ids: mt_core.tenant("tenant-b").get_tool(ids["tool"]),
        lambda ids: mt_core.tenant("tenant-b").delete_tool(ids["tool"]),
        lambda ids: mt_core.tenant("tenant-b").get_llm_config(ids["llm"]),
        lambda ids: mt_core.tenant("tenant-b").delete_llm(ids["llm"]),
        lambda ids: decrypted(mt_core, "tenant-b", ids["llm"]),
        lambda ids: mt_core.tenant("tenant-b").get_run(ids["run"]),
    ],
)
def test_foreign_ids_behave_exactly_like_missing_ids(tenant_a, attempt):
    foreign = _message(lambda: attempt(tenant_a))
    missing = _message(lambda: attempt({k: v.replace(v[-6:], "000000") for k, v in tenant_a.items() if k != "server"}))
    # same class and the same words; only the id echoed back differs
    assert foreign.split("'")[0] == missing.split("'")[0]
    assert foreign.endswith("not found") and missing.endswith("not found")


def test_b_cannot_run_with_a_tool_or_llm_of_a(tenant_a, llm_server):
    server_b = llm_server(CALCULATOR_SCRIPT)
    b_tool = mt_core.add_tool("calculator", "B's own calculator.", CALCULATOR, tenant="tenant-b")
    b_llm = mt_core.add_llm(base_url=server_b.base_url, api_key="sk-b-key-0123456789", model_name="m", tenant="tenant-b")
    requests_before = len(tenant_a["server"].requests)
    with pytest.raises(NotFoundError, match="tool"):
        mt_core.run_query([tenant_a["tool"]], b_llm, "What is 25 multiplied by 16?", tenant="tenant-b")
    with pytest.raises(NotFoundError, match="llm"):
        mt_core.run_query([b_tool], tenant_a["llm"], "What is 25 multiplied by 16?", tenant="tenant-b")
    # A's LLM endpoint was never called with B's query, and B has no run records of those calls
    assert len(tenant_a["server"].requests) == requests_before
    assert mt_core.get_runs(tenant="tenant-b") == []


def test_lists_are_scoped_and_a_keeps_everything(tenant_a):
    assert mt_core.get_tools(tenant="tenant-b") == []
    assert mt_core.get_llms(tenant="tenant-b") == []
    assert mt_core.get_runs(tenant="tenant-b") == []
    assert [t["id"] for t in mt_core.get_tools(tenant="tenant-a")] == [tenant_a["tool"]]
    assert [llm["id"] for llm in mt_core.get_llms(tenant="tenant-a")] == [tenant_a["llm"]]
    assert [r["id"] for r in mt_core.get_runs(tenant="tenant-a")] == [tenant_a["run"]]
    assert mt_core.get_tool(tenant_a["tool"], tenant="tenant-a")["name"] == "calculator"


def test_default_tenant_is_separate_too(tenant_a):
    assert mt_core.get_tools() == []
    with pytest.raises(NotFoundError):
        mt_core.get_tool(tenant_a["tool"])


def test_same_names_in_two_tenants_do_not_collide(tenant_a):
    b_tool = mt_core.add_tool("calculator", "Another calculator.", CALCULATOR, tenant="tenant-b")
    assert b_tool != tenant_a["tool"]
    assert mt_core.get_tool(tenant_a["tool"], tenant="tenant-a")["description"] == "Evaluates arithmetic."


@pytest.mark.parametrize("bad", ["", "../acme", "a/b", "a\x00b", "x" * 65, " acme", "acme..x", None, 7])
def test_invalid_tenant_names_are_rejected(default_core, bad):
    with pytest.raises(TenantError, match="tenant: "):
        mt_core.get_tools(tenant=bad)
