"""run_query with use_docker=True: the agent's code and the tenant's tools run in a hardened container."""

from __future__ import annotations

import json
import socket
import warnings

import pytest

from conftest import API_KEY, CALCULATOR, CALCULATOR_SCRIPT, make_settings
from docker_support import context, docker_core, sandbox, sandbox_image  # noqa: F401 - fixtures
from mt_core import MTCore, SandboxFallbackWarning

WHEREAMI = '''
def whereami() -> str:
    """Reports where this tool runs: host name, user, network interfaces, writable places, environment.
    """
    import json
    import os

    def writable(path):
        try:
            with open(path, "w") as handle:
                handle.write("x")
            return True
        except OSError:
            return False

    status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    return json.dumps({
        "hostname": os.uname().nodename, "uid": os.getuid(), "gid": os.getgid(),
        "interfaces": sorted(os.listdir("/sys/class/net")),
        "cap_eff": status["CapEff"].strip(), "no_new_privs": status["NoNewPrivs"].strip(),
        "root_writable": writable("/escape.txt"), "opt_writable": writable("/opt/mt/escape.txt"),
        "tmp_writable": writable("/tmp/fine.txt"), "environ": dict(os.environ),
    })
'''

WHEREAMI_SCRIPT = ["<code>\ninfo = whereami()\nprint(info)\n</code>", "<code>\nfinal_answer(info)\n</code>"]


def test_tool_and_agent_code_run_in_the_container(tmp_path, sandbox, llm_server, monkeypatch):
    monkeypatch.setenv("MT_TEST_PASSED", "visible")
    monkeypatch.setenv("MT_TEST_HIDDEN", "hidden")
    monkeypatch.setenv("LLM_API_KEY", API_KEY)
    monkeypatch.setenv("DOCKER_ENV_VARS", "MT_TEST_PASSED,LLM_API_KEY")
    settings = make_settings(tmp_path, load_plugins=("mt-docker",))
    acme = MTCore(settings=settings).tenant("acme")
    server = llm_server(WHEREAMI_SCRIPT)
    tool_id = acme.add_tool("whereami", "Reports where the tool runs.", WHEREAMI)
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SandboxFallbackWarning)  # no fallback: Docker is here
        result = acme.run_query([tool_id], llm_id, "Where do you run?")

    assert result.status == "succeeded" and result.executor == "docker"
    assert acme.get_run(result.run_id)["executor"] == "docker"
    info = json.loads(result.output)
    assert info["hostname"] != socket.gethostname()
    assert (info["uid"], info["gid"]) == (65534, 65534)
    assert info["interfaces"] == ["lo"]  # network "none": no route anywhere
    assert info["cap_eff"] == "0000000000000000" and info["no_new_privs"] == "1"
    assert not info["root_writable"] and not info["opt_writable"] and info["tmp_writable"]
    # DOCKER_ENV_VARS: only the listed variables, and never the LLM key even when listed
    assert info["environ"].get("MT_TEST_PASSED") == "visible"
    assert "MT_TEST_HIDDEN" not in info["environ"] and "LLM_API_KEY" not in info["environ"]
    assert API_KEY not in json.dumps(info["environ"])
    # the tool's observation went back to the model from the container
    assert '\\"uid\\": 65534' in json.dumps(server.requests[1]["body"]["messages"])


def test_calculator_end_to_end_in_docker(docker_core, llm_server):
    acme = docker_core.tenant("acme")
    server = llm_server(CALCULATOR_SCRIPT)
    tool_id = acme.add_tool("calculator", "Evaluates arithmetic expressions.", CALCULATOR)
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
    result = acme.run_query([tool_id], llm_id, "What is 25 multiplied by 16?")
    assert str(result) == "400" and result.executor == "docker" and result.status == "succeeded"


def test_tool_calls_in_the_container_are_recorded_and_traced(tmp_path, sandbox, llm_server):
    """The calls the container reports become tool call rows and execute_tool spans, timed where
    the tool ran, under the run's span."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    core = MTCore(settings=make_settings(tmp_path / "home", load_plugins=("mt-docker",)), tracer_provider=provider)
    acme = core.tenant("acme")
    server = llm_server(CALCULATOR_SCRIPT)
    tool_id = acme.add_tool("calculator", "Evaluates arithmetic expressions.", CALCULATOR)
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")

    result = acme.run_query([tool_id], llm_id, "What is 25 multiplied by 16?")

    assert result.executor == "docker"
    [call] = acme.get_run(result.run_id)["tool_calls"]
    assert (call["tool_id"], call["tool_version"], call["name"], call["outcome"]) == (tool_id, "1", "calculator", "ok")
    spans = {span.name: span for span in exporter.get_finished_spans()}
    tool, agent = spans["execute_tool calculator"], spans["invoke_agent"]
    assert tool.parent.span_id == agent.context.span_id and tool.attributes["mt.tool.id"] == tool_id
    assert agent.start_time <= tool.start_time <= tool.end_time <= agent.end_time
    core.close()


def test_a_tool_error_goes_to_the_model_and_the_run_goes_on(docker_core, llm_server):
    acme = docker_core.tenant("acme")
    server = llm_server([
        '<code>\nprint("before")\nprint(calculator(expression="25 * x"))\n</code>',
        '<code>\nfinal_answer("could not compute")\n</code>',
    ])
    tool_id = acme.add_tool("calculator", "Evaluates arithmetic expressions.", CALCULATOR)
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
    result = acme.run_query([tool_id], llm_id, "compute")
    assert str(result) == "could not compute" and result.executor == "docker"
    seen = json.dumps(server.requests[1]["body"]["messages"])
    assert "unsupported expression" in seen and "before" in seen


def test_model_code_runs_in_the_container_and_keeps_state_between_steps(sandbox):
    from mt_docker import DockerExecutor
    from smolagents.default_tools import FinalAnswerTool

    executor = DockerExecutor(context(imports=["os", "socket"]))
    try:
        executor.send_variables({"start": 41, "not_portable": object()})
        executor.send_tools({"final_answer": FinalAnswerTool()})
        first = executor("import os\nx = start + 1\nprint(os.uname().nodename, os.getuid())\nx")
        assert first.output == 42 and not first.is_final_answer
        assert first.logs.split() == [executor.container_id[:12], "65534"]  # docker's hostname = short id
        last = executor("final_answer({'x': x, 'host': os.uname().nodename})")
        assert last.is_final_answer and last.output == {"x": 42, "host": executor.container_id[:12]}
        with pytest.raises(Exception, match="ZeroDivisionError"):
            executor("y = 1 / 0")
        assert executor("x * 2").output == 84  # an error in a step does not lose the state
        assert executor("import datetime\ndatetime.date(2024, 1, 2)").output == "datetime.date(2024, 1, 2)"
    finally:
        executor.cleanup()
    executor.cleanup()  # idempotent


def test_per_tenant_limits_from_options(sandbox):
    from mt_docker import DockerExecutor, SandboxConfigError

    executor = DockerExecutor(context(imports=["pathlib"], options={"memory": "128m", "pids_limit": 32, "cpus": 0.5}))
    try:
        probe = (
            "from pathlib import Path\n"
            "def first(*paths):\n"
            "    for p in paths:\n"
            "        if Path(p).exists():\n"
            "            return Path(p).read_text().strip()\n"
            "[first('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes'),"
            " first('/sys/fs/cgroup/pids.max', '/sys/fs/cgroup/pids/pids.max'),"
            " first('/sys/fs/cgroup/cpu.max', '/sys/fs/cgroup/cpu/cpu.cfs_quota_us')]"
        )
        memory, pids, cpu = executor(probe).output
        assert int(memory) == 128 * 1024 * 1024 and int(pids) == 32 and cpu.split()[0] == "50000"
    finally:
        executor.cleanup()
    with pytest.raises(SandboxConfigError, match="option 'memory'"):
        DockerExecutor(context(options={"memory": "lots"}))
    with pytest.raises(SandboxConfigError, match="never 'host'"):
        DockerExecutor(context(options={"network": "host"}))


def test_tenant_executor_options_reach_that_tenants_containers_only(docker_core, llm_server):
    from mt_core import ValidationError

    acme, globex = docker_core.tenant("acme"), docker_core.tenant("globex")
    with pytest.raises(ValidationError, match=r"executor_options: (docker|local): .*option 'memory'"):
        acme.set_executor_options(memory="lots")
    with pytest.raises(ValidationError, match="never 'host'"):
        acme.set_executor_options(network="host")
    assert acme.set_executor_options(memory="128m") == {"memory": "128m"}
    probe_tool = (
        "def memory_limit() -> str:\n"
        '    """The memory limit of the cgroup this code runs in."""\n'
        "    from pathlib import Path\n"
        "    for path in ('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes'):\n"
        "        if Path(path).exists():\n"
        "            return Path(path).read_text().strip()\n"
        "    return 'unknown'\n"
    )
    probe = "<code>\nfinal_answer(memory_limit())\n</code>"
    server = llm_server([probe])
    answers = {}
    for handle in (acme, globex):
        llm_id = handle.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
        tool_id = handle.add_tool("memory_limit", "Reads the memory limit.", probe_tool)
        result = handle.run_query([tool_id], llm_id, "What is your memory limit?", max_steps=3)
        assert result.executor == "docker"
        answers[handle.name] = int(str(result))
    assert answers == {"acme": 128 * 1024 * 1024, "globex": 256 * 1024 * 1024}
