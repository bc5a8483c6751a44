"""MT_DOCKER_FALLBACK: a run that asked for the Docker sandbox falls back with a warning, or, fail-closed, refuses."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata

import pytest

from conftest import API_KEY, CALCULATOR, make_settings, LOCAL_EXECUTOR
from mt_core import MTCore, SandboxFallbackWarning, SandboxUnavailableError, Settings, ValidationError
from mt_core.secrets import generate_master_key

REFUSE = '''
import sys
from mt_core import SandboxUnavailableError, add_llm, run_query
llm_id = add_llm(base_url="http://127.0.0.1:9/v1", api_key="sk-0123456789abcdef", model_name="m")
try:
    run_query([], llm_id, "hello")
except SandboxUnavailableError as exc:
    print(exc)
    sys.exit(3)
'''


def test_fail_closed_is_an_error_that_says_which_package_to_install(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MT_")}
    env.update(MT_HOME=str(tmp_path / "home"), MT_DOCKER_FALLBACK="error", MT_LOAD_PLUGINS="",
               MT_MASTER_KEY=generate_master_key(), MT_LLM_ALLOWED_NETWORKS="127.0.0.0/8")
    out = subprocess.run([sys.executable, "-c", REFUSE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 3, out.stdout + out.stderr
    assert out.stdout.startswith("use_docker=True and MT_DOCKER_FALLBACK=error, but the Docker sandbox is unavailable (")
    assert "nothing ran" in out.stdout and "use_docker=False" in out.stdout
    try:
        metadata.distribution("mt-docker")
    except metadata.PackageNotFoundError:
        assert "pip install ./plugins/mt-docker" in out.stdout and "make install" in out.stdout
    else:  # installed by `make install`, but this environment allowed no plugin to load
        assert "mt-docker is installed but MT_LOAD_PLUGINS does not name it" in out.stdout


def test_without_the_plugin_the_error_names_the_package(tmp_path, llm_server, monkeypatch):
    real = metadata.distribution

    def without_mt_docker(name):
        if name == "mt-docker":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "distribution", without_mt_docker)
    core = MTCore(settings=make_settings(tmp_path / "home", docker_fallback="error"))
    acme = core.tenant("acme")
    llm_id = acme.add_llm(base_url=llm_server(["<code>final_answer(1)</code>"]).base_url, api_key=API_KEY, model_name="m")
    tool_id = acme.add_tool("calculator", "Evaluates arithmetic.", CALCULATOR)
    for agent_type in ("code", "tool_calling"):  # tool-calling agents use the sandbox too: refused alike
        with pytest.raises(SandboxUnavailableError):
            acme.run_query([tool_id], llm_id, "1?", agent_type=agent_type)
    with pytest.raises(SandboxUnavailableError, match=r"install mt-docker with `pip install \./plugins/mt-docker`"
                       r" from the mt-core repository \(`make install` does it\)"):
        acme.run_query([tool_id], llm_id, "1?")
    assert acme.get_runs() == []  # refused before anything ran or was recorded
    assert str(acme.run_query([tool_id], llm_id, "1?", use_docker=False)) == "1"  # an explicit local run works


def test_default_falls_back_with_a_warning_that_names_the_setting(core, llm_server):
    acme = core.tenant("acme")
    llm_id = acme.add_llm(base_url=llm_server(["<code>final_answer(1)</code>"]).base_url, api_key=API_KEY, model_name="m")
    with pytest.warns(SandboxFallbackWarning, match=rf"running in the {LOCAL_EXECUTOR} executor instead"
                       r" \(MT_DOCKER_FALLBACK=error refuses instead\)"):
        assert acme.run_query([], llm_id, "1?").executor == LOCAL_EXECUTOR


def test_the_setting_is_read_and_checked(monkeypatch):
    monkeypatch.setenv("MT_DOCKER_FALLBACK", "Error")
    assert Settings.from_env(dotenv=False).docker_fallback == "error"
    monkeypatch.setenv("MT_DOCKER_FALLBACK", "maybe")
    with pytest.raises(ValidationError, match="MT_DOCKER_FALLBACK: 'maybe' is not one of local, error"):
        Settings.from_env(dotenv=False)
