"""Escape attempts, as tenant tool code and as model-generated code: each is stopped, the host untouched."""

from __future__ import annotations

import json
import os
import time

import pytest

from conftest import API_KEY
from docker_support import context, docker_core, sandbox, sandbox_image  # noqa: F401 - fixtures
from mt_core import RunError

STEP_TIMEOUT = 3.0


def tool_source(body: str) -> str:
    """A tool ``attempt()`` whose body is ``body`` (indented), returning a string."""
    indented = "\n".join("    " + line for line in body.strip().splitlines())
    return f'def attempt() -> str:\n    """Tries to escape the sandbox.\n    """\n{indented}\n'


PROBES = '''
import json, os, socket
results = {}
def trying(name, action):
    try:
        results[name] = "allowed: " + str(action())[:200]
    except BaseException as exc:
        results[name] = "blocked: " + str(exc)[:120]
def connect(host, port):
    with socket.create_connection((host, port), timeout=2):
        return "connected"
def write(path):
    return os.write(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644), b"escaped")
def read(path):
    return os.read(os.open(path, os.O_RDONLY), 100)
trying("internet", lambda: connect("1.1.1.1", 53))
trying("dns", lambda: socket.gethostbyname("pypi.org"))
trying("docker_host_gateway", lambda: connect("172.17.0.1", HOST_PORT))
trying("loopback_llm", lambda: connect("127.0.0.1", HOST_PORT))
trying("write_root", lambda: write("/escaped.txt"))
trying("write_host_path", lambda: write(HOST_FILE))
trying("write_venv", lambda: write("/opt/mt/venv/escaped.txt"))
trying("read_host_file", lambda: read(HOST_SECRET))
trying("read_docker_socket", lambda: os.stat("/var/run/docker.sock"))
trying("setuid_root", lambda: os.setuid(0))
def mount():
    status = os.system("mount -t tmpfs none /tmp 2>/dev/null")
    if status != 0:
        raise PermissionError("mount exited with status " + str(status))
    return "mounted"
trying("mount", mount)
return json.dumps(results)
'''


def _probes(tmp_path, port: int) -> tuple[str, str, str]:
    secret = tmp_path / "host-secret.txt"
    secret.write_text("host secret")
    target = tmp_path / "written-from-sandbox.txt"
    return (
        tool_source(PROBES.replace("HOST_PORT", str(port)).replace("HOST_FILE", repr(str(target)))
                    .replace("HOST_SECRET", repr(str(secret)))),
        str(secret), str(target),
    )



def test_escape_attempts_as_tool_code_are_blocked(docker_core, llm_server, tmp_path):
    server = llm_server(["<code>\nfinal_answer(attempt())\n</code>"])
    port = int(server.base_url.rsplit(":", 1)[1].split("/")[0])
    source, secret, target = _probes(tmp_path, port)
    acme = docker_core.tenant("acme")
    tool_id = acme.add_tool("attempt", "Tries to escape.", source)
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
    result = acme.run_query([tool_id], llm_id, "escape")
    assert result.executor == "docker"
    results = json.loads(result.output)
    assert all(outcome.startswith("blocked") for outcome in results.values()), results
    assert open(secret).read() == "host secret" and not os.path.exists(target)
    assert len(server.requests) == 1  # nothing from the sandbox reached the host's LLM server


def test_escape_attempts_as_model_code_are_blocked(sandbox, tmp_path, llm_server):
    """Model code with os and socket authorized (as an operator might, trusting the container)."""
    from mt_docker import DockerExecutor

    server = llm_server(["unused"])
    port = int(server.base_url.rsplit(":", 1)[1].split("/")[0])
    source, secret, target = _probes(tmp_path, port)
    body = PROBES.replace("return json.dumps", "json.dumps").replace("HOST_PORT", str(port))
    body = body.replace("HOST_FILE", repr(target)).replace("HOST_SECRET", repr(secret))
    executor = DockerExecutor(context(imports=["os", "socket", "json"]))
    try:
        results = json.loads(executor(body).output)
    finally:
        executor.cleanup()
    assert all(outcome.startswith("blocked") for outcome in results.values()), results
    assert open(secret).read() == "host secret" and not os.path.exists(target)
    assert server.requests == []


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
