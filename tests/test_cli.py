"""The ``mt`` command, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import API_KEY, CALCULATOR, current_backend


def mt(*args: str, home) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **current_backend().env(home), "MT_LOAD_PLUGINS": ""}
    return subprocess.run([sys.executable, "-m", "mt_core", *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def populated(core):
    acme = core.tenant("acme")
    acme.add_tool("calculator", "Evaluates arithmetic.", CALCULATOR)
    acme.add_llm(base_url="http://127.0.0.1:9/v1", api_key=API_KEY, model_name="m", llm_name="gpt")
    return core


def test_plugins_lists_the_default_plugins(tmp_path):
    out = mt("plugins", "--json", home=tmp_path)
    assert out.returncode == 0, out.stderr
    names = {p["name"]: p for p in json.loads(out.stdout)}
    assert names["mt_core.default_plugins.openai_provider"]["hooks"] == ["mt_register_llm_providers"]
    assert names["mt_core.default_plugins.executors"]["error"] is None


def test_tools_and_llms_lists_are_scoped_and_masked(populated):
    out = mt("tools", "list", "--tenant", "acme", home=populated.home)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split() == ["id", "name", "origin", "output_type", "description"]
    assert "calculator" in out.stdout
    assert "(none)" in mt("tools", "list", "--tenant", "globex", home=populated.home).stdout
    llms = mt("llms", "list", "--tenant", "acme", "--json", home=populated.home)
    assert json.loads(llms.stdout)[0]["api_key"] == "sk-te…ET"
    assert API_KEY not in llms.stdout + llms.stderr


def test_bad_tenant_is_a_clean_error(tmp_path):
    out = mt("tools", "list", "--tenant", "../etc", home=tmp_path)
    assert out.returncode == 1
    assert "Error: tenant: '../etc' is not a valid tenant name" in out.stderr
    assert "Traceback" not in out.stderr


def test_keys_generate(tmp_path):
    out = mt("keys", "generate", home=tmp_path)
    assert out.returncode == 0 and len(out.stdout.strip()) == 44


def mt_in(cwd, *args: str, **env_overrides: str) -> subprocess.CompletedProcess[str]:
    """``mt ARGS`` started in ``cwd`` with the environment of a user who set nothing (no MT_HOME)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MT_") or k == "MT_CACHE_DIR"}
    env.update(env_overrides)
    return subprocess.run([sys.executable, "-m", "mt_core", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_home_option_is_applied_before_anything_is_written(tmp_path):
    cwd, home = tmp_path / "cwd", tmp_path / "chosen"
    cwd.mkdir()
    out = mt_in(cwd, "--home", str(home), "plugins")
    assert out.returncode == 0, out.stderr
    assert list(cwd.iterdir()) == []  # no ./.mt/cache in the current directory
    assert not home.exists()  # listing plugins creates no data directory
    home.mkdir()
    assert mt_in(cwd, f"--home={home}", "plugins", "--json").returncode == 0
    assert (home / "cache" / "entry-points.json").is_file() and list(cwd.iterdir()) == []


def test_creating_the_default_home_warns_once_in_one_line(tmp_path):
    out = mt_in(tmp_path, "tools", "list")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / ".mt" / "mt.db").is_file()
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines == [f"Warning: MT_HOME is not set: created the data directory {tmp_path / '.mt'} in the current"
                     " directory. A script started from another directory uses another one; set MT_HOME to one"
                     " absolute path to keep a single store."]
    assert mt_in(tmp_path, "tools", "list").stderr == ""  # it exists now: no warning


def test_help_texts_are_plain_and_json_flags_say_the_same(tmp_path):
    from mt_core.cli import cli

    limits_help = mt_in(tmp_path, "--home", str(tmp_path / "h"), "limits", "set", "--help")
    assert limits_help.returncode == 0 and "``" not in limits_help.stdout
    assert "mt limits set --tenant acme max_tools=50 runs_per_minute=10" in limits_help.stdout
    try:
        from mt_docker.plugin import mt_register_commands
    except ImportError:
        pass
    else:
        mt_register_commands(cli)  # the plugin's listing commands follow the same wording

    def walk(command):
        yield command
        for sub in getattr(command, "commands", {}).values():
            yield from walk(sub)

    helps = [param.help for command in walk(cli) for param in command.params if "--json" in getattr(param, "opts", ())]
    assert len(helps) >= 5 and set(helps) == {"Print JSON."}


def test_show_prints_non_ascii_as_is(populated):
    llm_id = populated.tenant("acme").get_llms()[0]["id"]
    out = mt("llms", "show", llm_id, "--tenant", "acme", home=populated.home)
    assert out.returncode == 0, out.stderr
    assert '"api_key": "sk-te…ET"' in out.stdout and "\\u2026" not in out.stdout


def test_plugin_command_errors_name_no_python_class(tmp_path):
    pytest.importorskip("mt_docker")
    out = mt_in(tmp_path, "--home", str(tmp_path / "h"), "sandbox", "cleanup",
                DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock")
    assert out.returncode == 1
    assert out.stderr.startswith("Error: the Docker engine failed: ")
    assert "Exception" not in out.stderr and "Traceback" not in out.stderr
    status = mt_in(tmp_path, "--home", str(tmp_path / "h"), "sandbox", "status",
                   DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock")
    assert status.returncode == 0 and status.stdout.startswith("sandbox: unavailable: the Docker daemon is not reachable")
    assert "Error(" not in status.stdout and "Exception" not in status.stdout
