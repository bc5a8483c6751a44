"""Plugins installed with pip and discovered through entry points, and every hook in-process."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from conftest import API_KEY, CALCULATOR, current_backend, make_settings
from mt_core import ConflictError, MTCore, NotFoundError, ToolUnavailableError, ValidationError, hookimpl
from mt_core.testing import ScriptedLLMServer
from plugin_installs import BROKEN_PLUGINS, EXAMPLE_TOOLS, ROOT, pip_install, write_distribution

pytestmark = pytest.mark.filterwarnings("ignore::mt_core.errors.SandboxFallbackWarning")


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory) -> Path:
    """mt-example-tools (with its dependency humanize) and mt-broken-plugins, really pip-installed."""
    target = tmp_path_factory.mktemp("site-packages")
    pip_install(target, EXAMPLE_TOOLS, BROKEN_PLUGINS)
    pip_install(target, "humanize>=4.0", deps=True)
    target.chmod(0o755)  # the local jail runs as nobody when the tests run as root
    return target


@pytest.fixture
def installed(plugin_site, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_site))
    return plugin_site


def loaded(tmp_path, **overrides) -> MTCore:
    return MTCore(settings=make_settings(tmp_path / "home", **{"load_plugins": None, **overrides}))


def test_installed_plugins_load_and_broken_ones_are_recorded_and_skipped(installed, tmp_path):
    core = loaded(tmp_path)
    infos = {info.name: info for info in core.plugins.plugin_list()}

    assert infos["example_tools"].distribution == "mt-example-tools"
    assert infos["example_tools"].version == "0.1.0"
    assert infos["example_tools"].hooks == ["mt_register_tools"]
    assert "import failed: ImportError: this plugin is broken on purpose" in infos["broken_import"].error
    assert "unknown hook 'mt_register_tool'" in infos["misspelt_hook"].error
    assert "did you mean 'mt_register_tools'?" in infos["misspelt_hook"].error
    assert "hook failed: RuntimeError: hook failed on purpose" in infos["raising_hook"].error
    assert "raising_hook.py" in infos["raising_hook"].error  # points at the plugin's line, not ours
    assert "ShoutTool cannot be instantiated" in infos["invalid_tool"].error
    assert infos["good_tool"].error is None
    # a contested name goes to no one, and both claimants say why
    for name in ("example_tools", "duplicate_tool"):
        assert "tool 'calculator' is registered by duplicate_tool and example_tools" in infos[name].error
    assert "calculator" not in core.plugins.tools
    # everything else keeps working
    assert {"human_size", "unit_converter", "echo_text"} <= set(core.plugins.tools)
    assert {"openai", "local"} <= set(core.plugins.providers) | set(core.plugins.executors)


def test_mt_load_plugins_limits_loading_to_named_distributions(installed, tmp_path):
    only_examples = loaded(tmp_path / "a", load_plugins=("mt_example_tools",))  # normalised like pip does
    assert set(only_examples.plugins.tools) == {"calculator", "human_size", "unit_converter"}
    assert all(info.error is None for info in only_examples.plugins.plugin_list())
    nothing = loaded(tmp_path / "b", load_plugins=())
    assert nothing.plugins.tools == {}
    assert all(info.builtin for info in nothing.plugins.plugin_list())


def test_catalog_records_package_tools_with_their_origin(installed, tmp_path):
    core = loaded(tmp_path, load_plugins=("mt-example-tools",))
    catalog = {tool["name"]: tool for tool in core.package_tools()}
    calculator = catalog["calculator"]
    assert calculator["id"] == "pkg:calculator" and calculator["origin"] == "package"
    assert calculator["plugin"] == "example_tools" and calculator["distribution"] == "mt-example-tools"
    assert calculator["version"] == "0.1.0" and calculator["available"] is True
    assert calculator["inputs"]["expression"]["type"] == "string"
    assert catalog["unit_converter"]["output_type"]
    rows = core.storage.catalog()
    assert len(rows["calculator"]["content_sha256"]) == 64


def test_catalog_refreshes_when_a_distribution_version_changes(tmp_path, monkeypatch):
    source = (
        "from smolagents import tool\nfrom mt_core import hookimpl\n\n"
        "@tool\ndef probe(text: str) -> str:\n"
        '    """Probe {version}.\n\n    Args:\n        text: any text.\n    """\n    return text\n\n'
        "@hookimpl\ndef mt_register_tools(register):\n    register(probe)\n"
    )
    sites = {}
    for version in ("1.0", "2.0"):
        project = write_distribution(tmp_path / f"src-{version}", "mt-probe", version, source.format(version=version))
        sites[version] = tmp_path / f"site-{version}"
        pip_install(sites[version], project)

    home = tmp_path / "home"
    with monkeypatch.context() as patch:
        patch.syspath_prepend(str(sites["1.0"]))
        first = MTCore(settings=make_settings(home, load_plugins=("mt-probe",)))
        master_key = first.settings.master_key
        assert {t["name"]: t["version"] for t in first.package_tools()} == {"probe": "1.0"}
        assert first.tenant("acme").enable_package_tool("probe") == "pkg:probe"
    for name in [m for m in sys.modules if m == "mt_probe"]:
        del sys.modules[name]
    with monkeypatch.context() as patch:
        patch.syspath_prepend(str(sites["2.0"]))
        second = MTCore(settings=make_settings(home, load_plugins=("mt-probe",), master_key=master_key))
        catalog = {t["name"]: t for t in second.package_tools()}
        assert catalog["probe"]["version"] == "2.0"
        assert catalog["probe"]["description"].startswith("Probe 2.0")
        # the tenant's enablement survives the upgrade
        assert [t["id"] for t in second.tenant("acme").get_tools()] == ["pkg:probe"]
    sys.modules.pop("mt_probe", None)
    third = MTCore(settings=make_settings(home, load_plugins=("mt-probe",), master_key=master_key))
    assert [t["available"] for t in third.package_tools()] == [False]  # uninstalled: kept, but unusable
    [listed] = third.tenant("acme").get_tools()  # still listed for the tenant, saying why it cannot run
    assert listed["id"] == "pkg:probe" and listed["available"] is False
    assert listed["unavailable_reason"].startswith("its distribution 'mt-probe' is not installed")
    assert third.tenant("acme").get_tool("pkg:probe")["available"] is False
    llm_id = third.tenant("acme").add_llm(base_url="http://127.0.0.1:9/v1", api_key=API_KEY, model_name="m")
    with pytest.raises(ToolUnavailableError, match="tool 'pkg:probe' is unavailable: its distribution 'mt-probe'"
                       " is not installed"):
        third.tenant("acme").run_query(["pkg:probe"], llm_id, "probe", use_docker=False)
    env = {**os.environ, **current_backend().env(home), "MT_MASTER_KEY": master_key, "MT_LOAD_PLUGINS": "mt-probe"}
    listing = subprocess.run([sys.executable, "-m", "mt_core", "tools", "list", "--tenant", "acme"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0, listing.stderr
    assert "pkg:probe" in listing.stdout
    assert "UNAVAILABLE: its distribution 'mt-probe' is not installed" in listing.stdout


def test_tenant_uses_a_package_tool_only_once_enabled(installed, tmp_path):
    core = loaded(tmp_path, load_plugins=("mt-example-tools",))
    acme, globex = core.tenant("acme"), core.tenant("globex")
    with pytest.raises(NotFoundError, match="tool 'pkg:human_size' not found"):
        acme.get_tool("pkg:human_size")
    assert acme.enable_package_tool("human_size") == "pkg:human_size"
    assert acme.enable_package_tool("human_size") == "pkg:human_size"  # idempotent
    assert acme.get_tool("pkg:human_size")["origin"] == "package"
    own = acme.add_tool("calculator_own", "Own calculator.", CALCULATOR)
    assert [(t["id"], t["origin"]) for t in acme.get_tools()] == [(own, "tenant"), ("pkg:human_size", "package")]
    # another tenant sees nothing of it
    assert globex.get_tools() == []
    with pytest.raises(NotFoundError):
        globex.get_tool("pkg:human_size")
    with pytest.raises(NotFoundError):
        globex.disable_package_tool("human_size")
    with pytest.raises(NotFoundError, match="package tool 'no_such_tool' not found"):
        acme.enable_package_tool("no_such_tool")
    acme.disable_package_tool("human_size")
    assert [t["origin"] for t in acme.get_tools()] == ["tenant"]


def test_run_with_a_package_tool_end_to_end(installed, tmp_path):
    core = loaded(tmp_path, load_plugins=("mt-example-tools",))
    acme, globex = core.tenant("acme"), core.tenant("globex")
    script = [
        '<code>\nsize = human_size(num_bytes=3000000)\nprint(size)\n</code>',
        "<code>\nfinal_answer(size)\n</code>",
    ]
    with ScriptedLLMServer(script=script) as server:
        acme_llm = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
        globex_llm = globex.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
        tool_id = acme.enable_package_tool("human_size")
        result = acme.run_query([tool_id], acme_llm, "How big is 3000000 bytes?")
        assert str(result) == "3.0 MB"
        assert "human_size" in server.requests[0]["body"]["messages"][0]["content"][0]["text"]
        with pytest.raises(NotFoundError, match="pkg:human_size"):
            globex.run_query([tool_id], globex_llm, "How big is 3000000 bytes?")
    assert acme.get_run(result.run_id)["tool_ids"] == ["pkg:human_size"]


def test_a_package_tool_and_an_own_tool_never_share_a_name(installed, tmp_path):
    core = loaded(tmp_path, load_plugins=("mt-example-tools",))
    acme = core.tenant("acme")
    own = acme.add_tool("calculator", "Own calculator.", CALCULATOR)
    with pytest.raises(ConflictError, match=f"this tenant's own tool {own} is named 'calculator', so the package tool"
                       r" 'calculator' \(pkg:calculator\) cannot be enabled beside it"):
        acme.enable_package_tool("calculator")
    assert acme.enable_package_tool("human_size") == "pkg:human_size"
    with pytest.raises(ConflictError, match=r"this tenant has enabled the package tool 'human_size' \(pkg:human_size\)"):
        acme.add_tool("human_size", "Own sizes.", CALCULATOR)
    assert core.tenant("globex").add_tool("human_size", "Own sizes.", CALCULATOR)  # another tenant: free
    # rows written before these checks existed are still refused at run time
    core.storage.enable_package_tool("acme", "calculator", None, None)
    llm = acme.add_llm(base_url="http://127.0.0.1:9/v1", api_key=API_KEY, model_name="m")
    with pytest.raises(ValidationError, match="two tools are named 'calculator'"):
        acme.run_query([own, "pkg:calculator"], llm, "2 + 2?")


def test_example_package_passes_its_own_tests_when_installed(installed):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed), *sys.path])}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE_TOOLS / "tests")],
        cwd=installed, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout


def test_mt_plugins_shows_loaded_and_failed_plugins(installed):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed), *sys.path]),
           **current_backend().env(installed / "home")}
    env.pop("MT_LOAD_PLUGINS", None)
    table = subprocess.run([sys.executable, "-m", "mt_core", "plugins"], env=env, capture_output=True, text=True)
    assert table.returncode == 0, table.stderr
    assert "broken_import" in table.stdout and "this plugin is broken on purpose" in table.stdout
    listing = subprocess.run([sys.executable, "-m", "mt_core", "plugins", "--json"], env=env, capture_output=True, text=True)
    plugins = {p["name"]: p for p in json.loads(listing.stdout)}
    assert plugins["good_tool"]["error"] is None and plugins["good_tool"]["version"] == "0.1.0"
    assert plugins["raising_hook"]["error"].startswith("hook failed: RuntimeError")

    def mt(*args):
        return subprocess.run([sys.executable, "-m", "mt_core", *args], env=env, capture_output=True, text=True)

    catalog = json.loads(mt("tools", "catalog", "--json").stdout)
    assert {"human_size", "echo_text"} <= {tool["name"] for tool in catalog}
    assert mt("tools", "enable", "human_size", "--tenant", "acme").stdout.strip() == "pkg:human_size"
    listed = mt("tools", "list", "--tenant", "acme")
    assert "pkg:human_size" in listed.stdout and "package" in listed.stdout
    assert "(none)" in mt("tools", "list", "--tenant", "globex").stdout
    missing = mt("tools", "disable", "human_size", "--tenant", "globex")
    assert missing.returncode == 1 and "package tool 'human_size' not found" in missing.stderr
    assert mt("tools", "disable", "human_size", "--tenant", "acme").returncode == 0


def test_each_plugin_error_is_printed_once_pointing_at_the_plugins_file(installed, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed), *sys.path])}
    env.pop("MT_LOAD_PLUGINS", None)
    out = subprocess.run([sys.executable, "-m", "mt_core", "--home", str(tmp_path / "home"), "tools", "list"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    for plugin in ("broken_import", "invalid_tool", "misspelt_hook", "raising_hook"):
        assert len([line for line in lines if line.startswith(f"plugin {plugin}: ")]) == 1, out.stderr
    misspelt = next(line for line in lines if line.startswith("plugin misspelt_hook: "))
    source = installed / "mt_broken_plugins" / "misspelt_hook.py"
    line_number = next(i for i, text in enumerate(source.read_text().splitlines(), 1) if "def mt_register_tool(" in text)
    assert misspelt == ("plugin misspelt_hook: invalid hook implementation: unknown hook 'mt_register_tool'"
                        f" (at {source}:{line_number - 1}) (did you mean 'mt_register_tools'?)")
    assert "pluggy" not in out.stderr and "PluginError" not in out.stderr
    listing = subprocess.run([sys.executable, "-m", "mt_core", "--home", str(tmp_path / "home"), "plugins"],
                             env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert listing.stderr == "" and "misspelt_hook.py" in listing.stdout  # the table says it; stderr does not repeat it


def test_discovery_cache_is_used_and_invalidated_by_installs(tmp_path, monkeypatch):
    from mt_core.plugins import discover_entry_points

    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    cache = tmp_path / "cache"
    before = discover_entry_points(cache)
    assert (cache / "entry-points.json").is_file()
    # a valid cache answers without reading metadata: prove it by planting a marker in it
    data = json.loads((cache / "entry-points.json").read_text())
    data["entry_points"].append({"name": "planted", "value": "x", "distribution": "x", "version": "1"})
    (cache / "entry-points.json").write_text(json.dumps(data))
    assert [ep["name"] for ep in discover_entry_points(cache)][-1] == "planted"
    # installing a distribution changes its folder, and the cache is rebuilt
    project = write_distribution(tmp_path / "src", "mt-cache-probe", "1.0", "x = 1\n")
    pip_install(site, project)
    after = discover_entry_points(cache)
    assert "planted" not in [ep["name"] for ep in after]
    assert [ep["name"] for ep in after if ep["distribution"] == "mt-cache-probe"] == ["mt_cache_probe"]
    assert len(after) == len(before) + 1


# -- every hook, with in-process plugins --------------------------------------------------------


class RecordingPlugin:
    """A plugin implementing every hook; what it saw is kept on the instance."""

    def __init__(self):
        self.assembled, self.finished = [], []

    @hookimpl
    def mt_register_tools(self, register):
        from smolagents import tool

        @tool
        def reverse_text(text: str) -> str:
            """Reverses a text.

            Args:
                text: The text to reverse.
            """
            return text[::-1]

        register(reverse_text)

    @hookimpl
    def mt_register_llm_providers(self, register):
        from mt_core.default_plugins.openai_provider import build_model

        def factory(config):
            assert config.api_key == API_KEY  # the provider gets the decrypted key
            assert config.options == {"region": "eu"}
            return build_model(dataclasses.replace(config, options={}))

        register("recording", factory, required=("base_url", "model_name"), optional=("api_key", "region"))

    @hookimpl
    def mt_register_executors(self, register):
        from conftest import JAIL_REASON
        from mt_core.default_plugins.executors import build_in_process, build_jailed

        self.contexts = []

        def factory(context):
            self.contexts.append(context)
            return (build_jailed if JAIL_REASON is None else build_in_process)(context)

        def validate(options, settings):
            if options.get("colour") not in (None, "red"):
                raise ValueError("colour must be red")

        register("docker", factory, available=lambda settings: None, validate_options=validate)

    @hookimpl
    def mt_register_commands(self, cli):
        @cli.command()
        def hello():
            """Say hello."""
            click.echo("hello from a plugin")

    @hookimpl
    def mt_agent_assembled(self, agent, tenant, run_id):
        self.assembled.append((type(agent).__name__, tenant, run_id, sorted(agent.tools)))

    @hookimpl
    def mt_run_finished(self, run, tenant):
        self.finished.append((run["id"], run["status"], tenant))


@pytest.fixture
def recording(core):
    plugin = RecordingPlugin()
    info = core.plugins.register(plugin, name="recording")
    assert info.error is None
    yield core, plugin
    core.plugins.unregister("recording")
    assert "recording" not in core.plugins.providers


def test_every_register_hook_and_lifecycle_hook(recording):
    core, plugin = recording
    acme = core.tenant("acme")
    script = ['<code>\nprint(reverse_text(text="abc"))\nr = reverse_text(text="abc")\n</code>', "<code>\nfinal_answer(r)\n</code>"]
    with ScriptedLLMServer(script=script) as server:
        llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m", provider="recording", region="eu")
        assert acme.get_llm_config(llm_id)["options"] == {"region": "eu"}
        tool_id = acme.enable_package_tool("reverse_text")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the plugin's "docker" executor is available: no fallback warning
            result = acme.run_query([tool_id], llm_id, "Reverse abc")
    assert str(result) == "cba"
    assert result.executor == "docker"  # the executor registered through the hook ran the code
    assert plugin.contexts[0].tenant == "acme" and plugin.contexts[0].run_id == result.run_id
    assert plugin.contexts[0].options == {}
    with pytest.raises(ValidationError, match="executor_options: docker: colour must be red"):
        acme.set_executor_options(colour="blue")
    assert acme.set_executor_options(colour="red") == {"colour": "red"}
    assert core.tenant("globex").executor_options() == {}
    assert plugin.assembled == [("CodeAgent", "acme", result.run_id, ["final_answer", "reverse_text"])]
    assert plugin.finished == [(result.run_id, "succeeded", "acme")]

    from mt_core.cli import cli

    core.plugins.notify("mt_register_commands", cli=cli)
    assert CliRunner().invoke(cli, ["hello"]).output == "hello from a plugin\n"


def test_a_failing_lifecycle_hook_never_breaks_a_run(core, llm_server):
    class Failing:
        @hookimpl
        def mt_run_finished(self, run, tenant):
            raise RuntimeError("observer failed")

    core.plugins.register(Failing(), name="failing")
    try:
        acme = core.tenant("acme")
        server = llm_server(["<code>\nfinal_answer('ok')\n</code>"])
        llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
        assert str(acme.run_query([], llm_id, "say ok")) == "ok"
    finally:
        core.plugins.unregister("failing")


def test_register_callbacks_reject_what_is_not_a_tool(core):
    class NotATool:
        @hookimpl
        def mt_register_tools(self, register):
            register(lambda x: x)

    info = core.plugins.register(NotATool(), name="not-a-tool")
    assert "is not a smolagents Tool" in info.error
    assert "not-a-tool" not in {entry.plugin for entry in core.plugins.tools.values()}
    core.plugins.unregister("not-a-tool")


# -- documentation and tests of every hook -------------------------------------------------------


def _hook_names():
    from mt_core import hookspecs

    return sorted(name for name in dir(hookspecs) if name.startswith("mt_"))


@pytest.mark.parametrize("hook", _hook_names())
def test_every_hook_is_documented_and_tested(hook):
    from mt_core import hookspecs

    assert getattr(hookspecs, hook).__doc__, f"{hook} has no docstring"
    docs = (ROOT / "docs" / "plugins.md").read_text()
    assert f"### `{hook}(" in docs, f"{hook} is not documented in docs/plugins.md"
    tests = "".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    assert f"def {hook}(" in tests, f"no test implements {hook}"


REGISTER_PROTOCOLS = {
    "mt_register_tools": ("RegisterTool", "register_tool"),
    "mt_register_llm_providers": ("RegisterLLMProvider", "register_provider"),
    "mt_register_executors": ("RegisterExecutor", "register_executor"),
}


def _documented_section(hook: str) -> tuple[list[str], str]:
    """The argument names in a hook's heading in docs/plugins.md, and the text of its section."""
    import re

    docs = (ROOT / "docs" / "plugins.md").read_text()
    match = re.search(rf"^### `{hook}\(([^)]*)\)`\n(.*?)(?=^##)", docs, re.MULTILINE | re.DOTALL)
    assert match, f"{hook} is not documented in docs/plugins.md"
    return [name.strip() for name in match.group(1).split(",") if name.strip()], match.group(2)


def _parameters(text: str) -> list[tuple[str, str]]:
    """(name, kind) of each parameter of a signature written as Python, e.g. ``f(a, *, b=None)``."""
    import ast

    function = ast.parse(f"def f({text}): pass").body[0]
    args = function.args
    return ([(a.arg, "positional") for a in args.posonlyargs + args.args]
            + [(a.arg, "keyword") for a in args.kwonlyargs])


def _signature_parameters(function) -> list[tuple[str, str]]:
    parameters = [p for p in inspect.signature(function).parameters.values() if p.name != "self"]
    return [(p.name, "keyword" if p.kind is p.KEYWORD_ONLY else "positional") for p in parameters]


@pytest.mark.parametrize("hook", _hook_names())
def test_the_documented_hook_contract_is_the_real_one(hook):
    """As datasette's documentation test does: the docs name each hook's real arguments, and each
    register callback's documented signature is the typed one in hookspecs and the one plugins get."""
    import re

    from mt_core import hookspecs
    from mt_core.plugins import _Staging

    documented, section = _documented_section(hook)
    assert documented == list(inspect.signature(getattr(hookspecs, hook)).parameters), hook
    if hook in REGISTER_PROTOCOLS:
        protocol, method = REGISTER_PROTOCOLS[hook]
        callback = re.search(r"Callback:\s*`register\(([^`]*)\)`", section)
        assert callback, f"the section of {hook} does not give the register callback's signature"
        written = _parameters(callback.group(1))
        assert written == _signature_parameters(getattr(hookspecs, protocol).__call__), hook
        assert written == _signature_parameters(getattr(_Staging, method)), hook
        assert inspect.signature(getattr(hookspecs, hook)).parameters["register"].annotation in (
            protocol, getattr(hookspecs, protocol))
