"""Bad input everywhere gets a clear error naming the field, and nothing is stored."""

from __future__ import annotations

import pytest

from conftest import API_KEY, CALCULATOR
from mt_core import LLMConfigError, NotFoundError, TenantError, ToolValidationError, ValidationError

HOSTILE_NAMES = ["a/b", "a\\b", "..", "../../etc/passwd", "a\x00b", "x" * 500, "robert'); DROP TABLE tools;--", "é", ""]


def nothing_stored(core):
    acme = core.tenant("acme")
    return acme.get_tools() == [] and acme.get_llms() == [] and acme.get_runs() == []


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_tool_names(core, name):
    with pytest.raises(ToolValidationError, match="^name: "):
        core.tenant("acme").add_tool(name, "A tool.", CALCULATOR)
    assert nothing_stored(core)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_tenant_names(core, name):
    with pytest.raises(TenantError, match="^tenant: "):
        core.tenant(name)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_llm_names(core, name):
    with pytest.raises(LLMConfigError, match="^llm_name: "):
        core.tenant("acme").add_llm(base_url="http://127.0.0.1:9/v1", api_key=API_KEY, model_name="m", llm_name=name)
    assert nothing_stored(core)


def test_sql_metacharacters_are_data_not_sql(core):
    acme = core.tenant("acme")
    text = "'; DROP TABLE tools; -- \" OR 1=1"
    tool_id = acme.add_tool("calculator", text, CALCULATOR)
    assert acme.get_tool(tool_id)["description"] == text
    with pytest.raises(NotFoundError):
        acme.get_tool("' OR '1'='1")
    assert len(acme.get_tools()) == 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("description", "x" * 5000, "description: is 5000 characters long; the limit is 4096"),
        ("description", "bad\x00byte", "description: must not contain NUL bytes"),
        ("description", "\ud800", "description: is not valid UTF-8 text"),
        ("description", 42, "description: must be a string, got int"),
        ("code", "\ud800", "code: is not valid UTF-8 text"),
        ("code", b"\xc3\x28", "code: is not valid UTF-8 text"),
        ("code", "This is English prose, not Python.", "code: line 1: is not valid Python"),
        ("code", "def f(:\n" * 3, "code: line 1: is not valid Python"),
        ("code", "x = 1\n" * 10, "code: defines no tool"),
        ("code", "import sys\nsys.exit(3)\n" + CALCULATOR, "ended the validation process|SystemExit"),
        ("code", "import os\nos._exit(0)\n" + CALCULATOR, "ended the validation process"),
        ("code", "x = [0] * (10 ** 10)\n" + CALCULATOR, "MemoryError"),
        ("code", "(" * 1000 + ")" * 1000, "code: .*(cannot be parsed|too many nested)"),
        ("dependencies", ["--index-url=https://evil.example"], "dependencies: '--index-url=https://evil.example' is a pip option"),
        ("dependencies", ["-e ."], "is a pip option"),
        ("dependencies", ["numpy; os_name =="], "is not a PEP 508 requirement"),
        ("dependencies", ["git+https://example.com/repo.git"], "is not a PEP 508 requirement"),
        ("dependencies", "numpy", "dependencies: must be a list"),
    ],
)
def test_bad_tool_fields(core, field, value, message):
    arguments = {"name": "calculator", "description": "A tool.", "code": CALCULATOR, "dependencies": []}
    arguments[field] = value
    with pytest.raises(ToolValidationError, match=message):
        core.tenant("acme").add_tool(**arguments)
    assert nothing_stored(core)


def test_huge_code_is_rejected_before_anything_runs(core):
    huge = CALCULATOR + "\n# padding\n" * 100_000
    from mt_core import QuotaExceededError

    with pytest.raises(QuotaExceededError, match="max_tool_source_bytes"):
        core.tenant("acme").add_tool("calculator", "A tool.", huge)
    assert nothing_stored(core)


@pytest.mark.parametrize(
    "base_url",
    ["ftp://example.com/v1", "file:///etc/passwd", "javascript:alert(1)", "http://", "127.0.0.1:8000/v1",
     "http://exa mple.com", "", "gopher://127.0.0.1:6379/_SET"],
)
def test_llm_base_urls_must_be_http(core, base_url):
    with pytest.raises(LLMConfigError, match="^base_url: "):
        core.tenant("acme").add_llm(base_url=base_url, api_key=API_KEY, model_name="m")
    assert nothing_stored(core)


def test_bad_run_arguments_name_the_field(core):
    acme = core.tenant("acme")
    llm_id = acme.add_llm(base_url="http://127.0.0.1:9/v1", api_key=API_KEY, model_name="m")
    for kwargs, message in [
        ({"query": "bad\x00"}, "query: must not contain NUL bytes"),
        ({"query": 7}, "query: must be a string"),
        ({"tool_ids": "tool_x"}, "tool_ids: must be a list"),
        ({"max_steps": True}, "max_steps: must be an integer"),
        ({"agent_type": "x"}, "agent_type: "),
    ]:
        arguments = {"tool_ids": [], "llm_id": llm_id, "query": "hi", **kwargs}
        with pytest.raises(ValidationError, match=message):
            acme.run_query(**arguments)
    with pytest.raises(NotFoundError):
        acme.run_query([None], llm_id, "hi")
    assert acme.get_runs() == []
