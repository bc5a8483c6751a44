"""Container lifecycle (warm pool, removal on interrupt and host death), fallback, and image building."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import API_KEY, make_settings, LOCAL_EXECUTOR
from docker_support import (  # noqa: F401 - fixtures
    assert_no_sandbox_left, context, docker_core, labelled_containers, sandbox, sandbox_image,
)
from mt_core import MTCore, RunError, SandboxFallbackWarning, hookimpl
from package_index import local_index  # noqa: F401 - fixture

HOSTNAME_TOOL = '''
def hostname() -> str:
    """The host name of the machine the tool runs on.
    """
    import os

    return os.uname().nodename
'''


class _Recorder:
    """A plugin recording each run's executor (was its container warm? which one?)."""

    def __init__(self) -> None:
        self.executors: list = []

    @hookimpl
    def mt_agent_assembled(self, agent, tenant, run_id):
        self.executors.append(agent.python_executor)


def test_warm_pool_hands_each_run_a_fresh_container(docker_core, llm_server, monkeypatch):
    from mt_docker import pool
    from mt_docker.config import load_config

    monkeypatch.setenv("MT_DOCKER_POOL_SIZE", "1")
    recorder = _Recorder()
    docker_core.plugins.register(recorder, name="recorder")
    acme, other = docker_core.tenant("acme"), docker_core.tenant("other")
    server = llm_server(["<code>\nfinal_answer(hostname())\n</code>"])
    hosts, timings = [], []
    for tenant in (acme, other, acme):
        tool_id = tenant.add_tool("hostname", "Host name.", HOSTNAME_TOOL)
        llm_id = tenant.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
        if recorder.executors:  # let the pool refill, as the time between real runs would
            assert pool.pool_for(None, recorder.executors[-1].image, load_config()).wait_ready(timeout=60)
        started = time.monotonic()
        result = tenant.run_query([tool_id], llm_id, "where?")
        timings.append(time.monotonic() - started)
        hosts.append(result.output)
        tenant.delete_tool(tool_id)
        tenant.delete_llm(llm_id)
    assert [e.warm for e in recorder.executors] == [False, True, True]
    assert len(set(hosts)) == 3  # never reused across runs or tenants
    assert all(e.container_id is None for e in recorder.executors)  # each removed after its run
    print(f"run time: cold {timings[0]:.2f}s, warm {timings[1]:.2f}s / {timings[2]:.2f}s")


def test_keyboard_interrupt_removes_the_container(docker_core, llm_server):
    acme = docker_core.tenant("acme")
    server = llm_server(["<code>\nimport time\ntime.sleep(60)\n</code>"])
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
    timer = threading.Timer(2.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            acme.run_query([], llm_id, "sleep", step_timeout=30)
    finally:
        timer.cancel()
    assert_no_sandbox_left(timeout=5)


KILLED_HOST = """
import sys, time
sys.path[:0] = {paths!r}
from docker_support import context
from mt_docker import DockerExecutor, pool
from mt_docker.config import load_config
executor = DockerExecutor(context())
pool.pool_for(executor.client, executor.image, load_config()).wait_ready()
print(executor.container_id, flush=True)
time.sleep(600)
"""


def test_containers_of_a_killed_host_are_removed_on_next_start(sandbox, monkeypatch):
    from mt_docker import engine, remove_stale

    monkeypatch.setenv("MT_DOCKER_POOL_SIZE", "1")
    here = str(Path(__file__).parent)
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_HOST.format(paths=[here, str(Path(here).parent)])],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        container_id = child.stdout.readline().strip()
        assert container_id, "the child did not start a sandbox"
        owned = [c for c in labelled_containers() if c["Labels"][engine.OWNER_LABEL] == engine.owner_id(child.pid)]
        assert len(owned) == 2  # its run's container and its warm pool's
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert len(labelled_containers()) == 2  # SIGKILL: no chance to clean up
    assert remove_stale(engine.client()) == 2  # what the next process does on its first use
    assert_no_sandbox_left()


def test_fallback_when_the_daemon_is_unreachable(tmp_path, llm_server, monkeypatch):
    dead = tmp_path / "dead.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{dead}")
    core = MTCore(settings=make_settings(tmp_path / "home", load_plugins=("mt-docker",)))
    acme = core.tenant("acme")
    server = llm_server(["<code>\nfinal_answer(6 * 7)\n</code>"])
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
    with pytest.warns(SandboxFallbackWarning) as recorded:
        result = acme.run_query([], llm_id, "compute")
    caught = [w for w in recorded if issubclass(w.category, SandboxFallbackWarning)]
    assert len(caught) == 1, [str(w.message) for w in caught]
    assert str(caught[0].message).startswith(
        f"use_docker=True but the Docker sandbox is unavailable (the Docker daemon is not reachable at unix://{dead}:"
    )
    assert f"running in the {LOCAL_EXECUTOR} executor instead (MT_DOCKER_FALLBACK=error" in str(caught[0].message)
    assert result.output == 42 and result.executor == LOCAL_EXECUTOR
    assert acme.get_run(result.run_id)["executor"] == LOCAL_EXECUTOR


def test_fallback_when_the_base_image_is_missing(sandbox, tmp_path, llm_server, monkeypatch):
    monkeypatch.setenv("DOCKER_IMAGE", "mt-no-such-image:never")
    core = MTCore(settings=make_settings(tmp_path / "home", load_plugins=("mt-docker",)))
    acme = core.tenant("acme")
    server = llm_server(["<code>\nfinal_answer(6 * 7)\n</code>"])
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
    with pytest.warns(SandboxFallbackWarning, match="base image 'mt-no-such-image:never' is not present"):
        result = acme.run_query([], llm_id, "compute")
    assert result.executor == LOCAL_EXECUTOR
    # use_docker=False forces local, without a warning, even with Docker available
    monkeypatch.setenv("DOCKER_IMAGE", sandbox)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SandboxFallbackWarning)
        assert acme.run_query([], llm_id, "compute", use_docker=False).executor == LOCAL_EXECUTOR


def test_sandbox_build_command_rejects_invalid_requirements_first(sandbox, monkeypatch, tmp_path):
    from mt_core.cli import cli

    from mt_docker.plugin import mt_register_commands

    core = MTCore(settings=make_settings(tmp_path / "home", load_plugins=("mt-docker",)))
    mt_register_commands(cli)
    real_host = os.environ.get("DOCKER_HOST")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/never-contacted.sock")
    result = CliRunner().invoke(cli, ["sandbox", "build", "-r", "requests>=2", "-r", "not a requirement!"], obj=core)
    assert result.exit_code == 1
    assert "'not a requirement!' is not a PEP 508 requirement" in result.output
    if real_host is None:  # the real engine again
        monkeypatch.delenv("DOCKER_HOST")
    else:
        monkeypatch.setenv("DOCKER_HOST", real_host)
    result = CliRunner().invoke(cli, ["sandbox", "build"], obj=core)  # the core mt built from --home
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1].startswith("mt-sandbox:")


def test_sandbox_build_without_a_pullable_base_image_says_what_to_set(sandbox, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MT_HOME", "MT_LOAD_PLUGINS")}
    env["DOCKER_IMAGE"] = "mt-no-such-image:never"
    out = subprocess.run([sys.executable, "-m", "mt_core", "--home", str(tmp_path / "home"), "sandbox", "build"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    error = [line for line in out.stderr.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1 and error[0].startswith("Error: base image 'mt-no-such-image:never' is not present and"
                                                   " cannot be pulled")
    assert "DOCKER_IMAGE" in error[0] and "ClickException" not in out.stderr and "Traceback" not in out.stderr


TOOL_WITH_DEPENDENCY = '''
def size_words(n: int) -> str:
    """A byte count in words, using a third-party package installed in the sandbox image.

    Args:
        n: the number of bytes.
    """
    import humanize

    return humanize.naturalsize(n)
'''


def test_tool_dependencies_are_installed_from_host_wheels(docker_core, llm_server):
    acme = docker_core.tenant("acme")
    server = llm_server(["<code>\nfinal_answer(size_words(n=3000000))\n</code>"])
    tool_id = acme.add_tool("size_words", "Sizes in words.", TOOL_WITH_DEPENDENCY, dependencies=["humanize>=4"])
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
    result = acme.run_query([tool_id], llm_id, "3 MB?")
    assert result.output == "3.0 MB" and result.executor == "docker"


def test_a_run_whose_image_build_fails_on_pip_reports_pips_line(docker_core, llm_server, local_index):  # noqa: F811
    acme = docker_core.tenant("acme")
    # installed here, so add_tool accepts it; the sandbox image downloads it from the index, which lacks it
    tool_id = acme.add_tool("size_words", "Sizes in words.", TOOL_WITH_DEPENDENCY, dependencies=["packaging>=20"])
    llm_id = acme.add_llm(base_url=llm_server(["<code>final_answer(1)</code>"]).base_url, api_key=API_KEY, model_name="m")
    with pytest.raises(RunError) as caught:
        acme.run_query([tool_id], llm_id, "3 MB?")
    message = str(caught.value)
    assert "failed: Could not find a version that satisfies the requirement packaging>=20" in message
    assert "\n" not in message and "Collecting" not in message and len(message) < 1000
