"""Escape attempts, as tenant tool code and as model-generated code: each is stopped, the host untouched."""

from __future__ import annotations

import json
import os
import time

import pytest

from conftest import API_KEY
from docker_support import context, docker_core, sandbox, sandbox_image  # noqa: F401 - fixtures
from escapes import DORMANT_BODY, GENERATOR_ESCAPE, Listener, as_tool, probes
from mt_core import RunError

STEP_TIMEOUT = 3.0


def tool_source(body: str) -> str:
    """A tool ``attempt()`` whose body is ``body`` (indented), returning a string."""
    indented = "\n".join("    " + line for line in body.strip().splitlines())
    return f'def attempt() -> str:\n    """Tries to escape the sandbox.\n    """\n{indented}\n'


@pytest.fixture
def listener():
    opened = Listener()
    yield opened
    opened.close()


def _probes(core, tmp_path, listener) -> str:
    return probes(
        home=core.home, victim="victim", victim_tool_file=core.home / "tools" / "victim" / "x.py",
        host_pid=os.getpid(), listener_port=listener.port, host_file=tmp_path / "written-from-sandbox.txt",
    )


def _assert_blocked(results: dict, tmp_path, listener) -> None:
    for name, outcome in results.items():
        if name != "write_host_file":  # the container's own /tmp takes it; the host's path must not
            assert outcome.startswith("blocked"), (name, outcome)
    assert not (tmp_path / "written-from-sandbox.txt").exists()
    assert listener.accepted == []  # "no network": nothing reached the listener the test opened on the host


def test_escape_attempts_as_tool_code_are_blocked(docker_core, llm_server, tmp_path, listener):
    server = llm_server(["<code>\nfinal_answer(attempt())\n</code>"])
    acme = docker_core.tenant("acme")
    tool_id = acme.add_tool("attempt", "Tries to escape.", as_tool(_probes(docker_core, tmp_path, listener)))
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
    result = acme.run_query([tool_id], llm_id, "escape")
    assert result.executor == "docker"
    _assert_blocked(json.loads(result.output), tmp_path, listener)
    assert len(server.requests) == 1  # nothing from the sandbox reached the host's LLM server


def test_escape_attempts_as_model_code_are_blocked(docker_core, llm_server, tmp_path, listener):
    """Model code escapes smolagents' interpreter (the generator-frame escape) inside the container."""
    code = GENERATOR_ESCAPE + _probes(docker_core, tmp_path, listener) + "\nfinal_answer(json.dumps(results))"
    server = llm_server([f"<code>\n{code}\n</code>"])
    acme = docker_core.tenant("acme")
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
    result = acme.run_query([], llm_id, "escape")
    assert result.executor == "docker"
    _assert_blocked(json.loads(result.output), tmp_path, listener)


def test_a_tool_dormant_while_validated_never_runs_in_the_host(docker_core, llm_server, tmp_path):
    """The module body acts only outside validation; on the Docker path the host never builds the
    tool, so the body runs in the container, out of reach of the host's files and core."""
    marker = tmp_path / "dormant-ran-in-the-host.txt"
    acme = docker_core.tenant("acme")
    tool_id = acme.add_tool("attempt", "Dormant.", DORMANT_BODY.replace("MARKER", repr(str(marker))))
    server = llm_server(["<code>\nfinal_answer(attempt())\n</code>"])
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
    result = acme.run_query([tool_id], llm_id, "go")
    assert result.executor == "docker" and result.output == "ran"
    assert not marker.exists()
    assert docker_core.tenant("victim").get_llms() == []


FLOOD = '''
def flood() -> str:
    """Prints about 100 MB to the container's stdout and stderr."""
    import os

    chunk = b"x" * (1024 * 1024)
    for _ in range(50):
        os.write(1, chunk)
        os.write(2, chunk)
    return "printed"
'''


def test_what_the_container_prints_is_streamed_not_kept(docker_core, llm_server):
    import resource

    acme = docker_core.tenant("acme")
    server = llm_server(["<code>\nfinal_answer(flood())\n</code>"])
    tool_id = acme.add_tool("flood", "Prints a lot.", FLOOD)
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
    acme.run_query([tool_id], llm_id, "warm up")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = acme.run_query([tool_id], llm_id, "flood")
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert result.output == "printed" and result.executor == "docker"
    assert grown < 100 * 1024, f"the service grew by {grown} KiB"


RUNAWAYS = {
    "infinite_loop": ("while True:\n    pass\nreturn 'never'", "timeout", "time limit"),
    "sleep": ("import time\ntime.sleep(600)\nreturn 'never'", "timeout", "time limit"),
    "memory_bomb": ("hog = 'x' * (2 * 1024 ** 3)\nreturn str(len(hog))", "failed", "out of memory"),
    "fork_bomb": (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\nreturn 'never'",
        "timeout", "time limit",
    ),
}


@pytest.mark.parametrize("kind", sorted(RUNAWAYS))
def test_runaway_tool_code_is_stopped_and_the_next_run_works(docker_core, llm_server, kind):
    body, status, message = RUNAWAYS[kind]
    acme = docker_core.tenant("acme")
    server = llm_server(["<code>\nresult = attempt()\nfinal_answer(result)\n</code>"])
    tool_id = acme.add_tool("attempt", "Runs away.", tool_source(body))
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
    started = time.monotonic()
    with pytest.raises(RunError, match=message) as caught:
        acme.run_query([tool_id], llm_id, "run away", step_timeout=STEP_TIMEOUT)
    assert time.monotonic() - started < STEP_TIMEOUT + 15
    assert caught.value.status == status
    record = acme.get_run(caught.value.run_id)
    assert record["status"] == status and record["executor"] == "docker" and message in record["error"]
    # the run ended at once: the model was not asked again after the runaway step
    assert len(server.requests) == 1
    _next_run_works(acme, llm_server)


MODEL_RUNAWAYS = {
    "sleep": ("import time\ntime.sleep(600)", "timeout", "time limit"),
    "busy_loop": ("for i in range(10 ** 12):\n    pass", "timeout", "time limit"),
    "memory_bomb": ("hog = 'x' * (2 * 1024 ** 3)", "failed", "out of memory"),
}


@pytest.mark.parametrize("kind", sorted(MODEL_RUNAWAYS))
def test_runaway_model_code_is_stopped_and_the_next_run_works(docker_core, llm_server, kind):
    code, status, message = MODEL_RUNAWAYS[kind]
    acme = docker_core.tenant("acme")
    server = llm_server([f"<code>\n{code}\n</code>", "<code>\nfinal_answer('too late')\n</code>"])
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
    started = time.monotonic()
    with pytest.raises(RunError, match=message) as caught:
        acme.run_query([], llm_id, "run away", step_timeout=STEP_TIMEOUT)
    assert time.monotonic() - started < STEP_TIMEOUT + 15
    assert caught.value.status == status == acme.get_run(caught.value.run_id)["status"]
    assert len(server.requests) == 1
    _next_run_works(acme, llm_server)


def test_fork_bomb_as_model_code_is_contained(sandbox):
    from mt_docker import DockerExecutor, SandboxStepTimeout

    executor = DockerExecutor(context(imports=["os"], timeout=STEP_TIMEOUT))
    pids_before = len(os.listdir("/proc"))
    try:
        with pytest.raises(SandboxStepTimeout):
            executor("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass")
        assert executor.container_id is None  # killed and removed at the timeout
    finally:
        executor.cleanup()
    assert len(os.listdir("/proc")) < pids_before + 50  # the host's process table was not flooded


def _next_run_works(acme, llm_server) -> None:
    server = llm_server(["<code>\nfinal_answer(6 * 7)\n</code>"])
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m", llm_name="next")
    result = acme.run_query([], llm_id, "fine now")
    assert result.output == 42 and result.status == "succeeded" and result.executor == "docker"
