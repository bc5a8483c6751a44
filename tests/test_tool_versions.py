"""Tool versions, per-tenant settings and secrets: what a tool author and a tenant see."""

from __future__ import annotations

import json
import logging

import pytest

from conftest import API_KEY, CALCULATOR, requires_jail, raw_sql
from mt_core import NotFoundError, ToolValidationError

GREETER_V1 = '''
from smolagents import tool


@tool
def greet(name: str) -> str:
    """Greets someone.

    Args:
        name: who to greet.
    """
    return "Hello, " + name
'''
GREETER_V2 = GREETER_V1.replace('"Hello, "', '"Good morning, "')

SETTINGS_TOOL = '''
import os

from smolagents import Tool


class Configured(Tool):
    name = "configured"
    description = "Reports its settings and whether its secret is set."
    inputs = {}
    output_type = "string"

    def __init__(self, greeting: str = "hi", punctuation: str = ".", WEATHER_API_KEY: str | None = None):
        super().__init__()
        self.greeting, self.punctuation = greeting, punctuation
        self.key_length = len(WEATHER_API_KEY or "")

    def forward(self) -> str:
        import json
        import os

        return json.dumps({"greeting": self.greeting + self.punctuation, "init_key_length": self.key_length,
                           "env_key_length": len(os.environ.get("WEATHER_API_KEY", ""))})
'''
SECRET = "wk-acme-0123456789-SECRET"


def run_tool(tenant, llm_server, tool_ref, call, **kwargs):
    server = llm_server([f"<code>\nfinal_answer({call})\n</code>"])
    llm_id = tenant.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m", exist_ok=True,
                            llm_name=f"m-{len(tenant.get_llms())}")
    return tenant.run_query([tool_ref], llm_id, "go", use_docker=False, **kwargs)


def test_update_stores_a_new_immutable_version_and_runs_use_the_latest_or_a_pinned_one(core, llm_server):
    acme = core.tenant("acme")
    tool_id = acme.add_tool("greet", None, GREETER_V1)
    first = acme.get_tool(tool_id)
    assert first["version"] == first["latest_version"] == 1 and first["description"] == "Greets someone."
    assert acme.update_tool(tool_id, code=GREETER_V2) == 2
    latest, old = acme.get_tool(tool_id), acme.get_tool(tool_id, version=1)
    assert latest["version"] == 2 and "Good morning" in latest["code"] and latest["latest_version"] == 2
    assert old["version"] == 1 and old["code"] == GREETER_V1 and old["latest_version"] == 2
    versions = acme.get_tool_versions(tool_id)
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[0]["source_sha256"] != versions[1]["source_sha256"]
    assert (core.home / "tools" / "acme" / f"{tool_id}.py").read_text() == GREETER_V2  # the latest, written out

    latest_run = run_tool(acme, llm_server, tool_id, 'greet(name="Ada")')
    pinned_run = run_tool(acme, llm_server, f"{tool_id}@1", 'greet(name="Ada")')
    assert (latest_run.output, pinned_run.output) == ("Good morning, Ada", "Hello, Ada")
    assert acme.get_run(latest_run.run_id)["tool_versions"] == {tool_id: 2}
    assert acme.get_run(pinned_run.run_id)["tool_versions"] == {tool_id: 1} == pinned_run.tool_versions
    assert acme.get_run(pinned_run.run_id)["tool_ids"] == [f"{tool_id}@1"]

    with pytest.raises(NotFoundError, match=f"tool version '{tool_id}@7' not found"):
        acme.get_tool(tool_id, version=7)
    with pytest.raises(NotFoundError):
        run_tool(acme, llm_server, f"{tool_id}@7", 'greet(name="Ada")')


def test_an_update_that_does_not_validate_stores_nothing(core):
    acme = core.tenant("acme")
    tool_id = acme.add_tool("greet", None, GREETER_V1)
    with pytest.raises(ToolValidationError, match="RuntimeError: broken"):
        acme.update_tool(tool_id, code="raise RuntimeError('broken')\n" + GREETER_V1)
    assert [v["version"] for v in acme.get_tool_versions(tool_id)] == [1]
    assert acme.update_tool(tool_id, description="Says hello.") == 2
    assert acme.get_tool(tool_id)["description"] == "Says hello." and acme.get_tool(tool_id)["code"] == GREETER_V1


def test_versions_are_isolated_between_tenants(core):
    acme, globex = core.tenant("acme"), core.tenant("globex")
    tool_id = acme.add_tool("greet", None, GREETER_V1)
    acme.update_tool(tool_id, code=GREETER_V2)
    for attempt in (
        lambda: globex.get_tool(tool_id), lambda: globex.get_tool(tool_id, version=1),
        lambda: globex.get_tool_versions(tool_id), lambda: globex.update_tool(tool_id, code=GREETER_V1),
        lambda: globex.delete_tool(tool_id),
    ):
        with pytest.raises(NotFoundError, match=f"^tool '{tool_id}' not found$"):
            attempt()
    assert [v["version"] for v in acme.get_tool_versions(tool_id)] == [1, 2]
    acme.delete_tool(tool_id)  # every version goes
    with pytest.raises(NotFoundError):
        acme.get_tool(tool_id, version=1)


@requires_jail  # in-process tools cannot have environment variables of their own
def test_settings_and_secrets_reach_the_tool_and_nobody_else(core, llm_server, caplog):
    caplog.set_level(logging.DEBUG)
    acme, globex = core.tenant("acme"), core.tenant("globex")
    tool_id = acme.add_tool("configured", None, SETTINGS_TOOL, settings={"greeting": "hello", "punctuation": "!"},
                            secrets={"WEATHER_API_KEY": SECRET})
    shown = acme.get_tool(tool_id)
    assert shown["settings"] == {"greeting": "hello", "punctuation": "!"}
    assert shown["secrets"] == {"WEATHER_API_KEY": "wk-ac…ET"}
    result = run_tool(acme, llm_server, tool_id, "configured()")
    assert json.loads(result.output) == {"greeting": "hello!", "init_key_length": len(SECRET),
                                         "env_key_length": len(SECRET)}

    # the same source for another tenant, without settings or secrets: defaults, no key
    theirs = globex.add_tool("configured", None, SETTINGS_TOOL)
    result = run_tool(globex, llm_server, theirs, "configured()")
    assert json.loads(result.output) == {"greeting": "hi.", "init_key_length": 0, "env_key_length": 0}

    # a new version keeps the secret unless given; the old version runs with the tool's current secret
    acme.update_tool(tool_id, settings={"greeting": "hey"})
    assert json.loads(run_tool(acme, llm_server, tool_id, "configured()").output)["greeting"] == "hey."
    assert json.loads(run_tool(acme, llm_server, f"{tool_id}@1", "configured()").output)["init_key_length"] == len(SECRET)

    stored = json.dumps([raw_sql(core, f"SELECT * FROM {table}") for table in ("tool_versions", "tool_secrets", "runs")])
    seen = {
        "database": stored, "logs": caplog.text,
        "records": repr(acme.get_runs()) + repr(globex.get_runs()), "tools": repr(acme.get_tools()),
        "tool": repr(acme.get_tool(tool_id)), "versions": repr(acme.get_tool_versions(tool_id)),
    }
    for where, text in seen.items():
        assert SECRET not in text and SECRET[5:-2] not in text, f"the tool secret leaked into {where}"


@requires_jail
def test_a_tool_error_never_shows_its_secret(core):
    leaky = "import os\nraise RuntimeError('key is ' + os.environ['WEATHER_API_KEY'])\n" + CALCULATOR
    with pytest.raises(ToolValidationError) as caught:
        core.tenant("acme").add_tool("calculator", "Leaks.", leaky, secrets={"WEATHER_API_KEY": SECRET})
    assert SECRET not in str(caught.value) and "[REDACTED]" in str(caught.value)


@pytest.mark.parametrize(("secrets", "message"), [
    ({"PATH": "x"}, "'PATH' is reserved"), ({"LD_PRELOAD": "x"}, "is reserved"), ({"1BAD": "x"}, "not an environment"),
    ({"OK": 5}, r"secrets\['OK'\]: must be a string"), ("KEY=x", "must be a dict"),
])
def test_bad_secrets_and_settings_are_refused(core, secrets, message):
    with pytest.raises(ToolValidationError, match=message):
        core.tenant("acme").add_tool("calculator", "A tool.", CALCULATOR, secrets=secrets)
    with pytest.raises(ToolValidationError, match="settings: 'not-an-identifier' is not a valid keyword"):
        core.tenant("acme").add_tool("calculator", "A tool.", CALCULATOR, settings={"not-an-identifier": 1})
    assert core.tenant("acme").get_tools() == []


def test_secrets_are_bound_to_their_tenant_and_tool(core):
    acme = core.tenant("acme")
    first = acme.add_tool("configured", None, SETTINGS_TOOL, secrets={"WEATHER_API_KEY": SECRET})
    second = acme.add_tool("other", None, SETTINGS_TOOL.replace('name = "configured"', 'name = "other"'),
                           secrets={"WEATHER_API_KEY": "wk-other-0000000000000"})
    [(sealed,)] = raw_sql(core, "SELECT ciphertext FROM tool_secrets WHERE tool_id = ?", (first,))
    raw_sql(core, "UPDATE tool_secrets SET ciphertext = ? WHERE tool_id = ?", (sealed, second))
    from mt_core import SecretError

    with pytest.raises(SecretError, match="does not decrypt for this tenant and row"):
        acme.core.tools.resolve("acme", [second])


def test_mt_tools_versions_and_show_a_version(core):
    from click.testing import CliRunner

    from mt_core.cli import cli

    acme = core.tenant("acme")
    tool_id = acme.add_tool("greet", None, GREETER_V1)
    acme.update_tool(tool_id, code=GREETER_V2)
    runner = CliRunner()
    listed = runner.invoke(cli, ["tools", "versions", tool_id, "--tenant", "acme", "--json"], obj=core)
    assert listed.exit_code == 0, listed.output
    assert [v["version"] for v in json.loads(listed.output)] == [1, 2]
    shown = runner.invoke(cli, ["tools", "show", tool_id, "--version", "1", "--tenant", "acme"], obj=core)
    assert json.loads(shown.output)["code"] == GREETER_V1
    foreign = runner.invoke(cli, ["tools", "versions", tool_id, "--tenant", "globex"], obj=core)
    assert foreign.exit_code != 0 and "not found" in str(foreign.exception or foreign.output)
