"""A package tool (from a pip-installed plugin distribution) runs inside the sandbox too."""

from __future__ import annotations

import os

from conftest import API_KEY, make_settings
from docker_support import sandbox, sandbox_image  # noqa: F401 - fixtures
from mt_core import MTCore
from mt_core.testing import ScriptedLLMServer
from plugin_installs import pip_install, write_distribution

PROBE = '''
from smolagents import tool
from mt_core import hookimpl


@tool
def whoami() -> str:
    """The user id and host name the tool runs as."""
    import os

    return f"{os.getuid()}@{os.uname().nodename}"


@hookimpl
def mt_register_tools(register):
    register(whoami)
'''


def test_a_package_tool_runs_in_the_container(sandbox, tmp_path, monkeypatch):  # noqa: F811
    site = tmp_path / "site"
    pip_install(site, write_distribution(tmp_path / "src", "mt-probe-whoami", "1.0", PROBE))
    site.chmod(0o755)  # the local jail runs as nobody when the tests run as root
    monkeypatch.syspath_prepend(str(site))
    core = MTCore(
        settings=make_settings(tmp_path / "home", load_plugins=("mt-probe-whoami", "mt-docker"))
    )
    acme = core.tenant("acme")
    tool_id = acme.enable_package_tool("whoami")
    script = ["<code>\nanswer = whoami()\nprint(answer)\n</code>", "<code>\nfinal_answer(answer)\n</code>"]
    with ScriptedLLMServer(script=script) as server:
        llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
        in_docker = acme.run_query([tool_id], llm_id, "Who are you?")
        local = acme.run_query([tool_id], llm_id, "Who are you?", use_docker=False)
    assert in_docker.executor == "docker" and in_docker.status == "succeeded"
    uid, host = str(in_docker).split("@")
    assert uid == "65534" and host != os.uname().nodename
    # in the local jail: its own user namespace and host name, never this process
    assert local.executor == "local" and str(local).split("@")[1] == "sandbox"
