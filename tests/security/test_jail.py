"""The local jail against a hostile tenant: tool code, model code (after escaping smolagents'
interpreter) and tool validation try to reach the host's core, keys, database, files, processes
and network. Each attempt fails, the other tenant's data is intact, and the host keeps working."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import API_KEY, CALCULATOR, CALCULATOR_SCRIPT, make_settings, requires_jail
from escapes import DORMANT_BODY, GENERATOR_ESCAPE, Listener, as_tool, probes, processes_with
from mt_core import MTCore, QuotaExceededError, RunError, ToolValidationError

pytestmark = [pytest.mark.filterwarnings("ignore::mt_core.errors.SandboxFallbackWarning"), requires_jail]

VICTIM_KEY = "sk-victim-0123456789abcdefSECRET"
STEP_TIMEOUT = 3.0
# probes that succeed inside the sandbox but must leave no trace on the host
INSIDE_ONLY = {"write_host_file"}


@pytest.fixture
def victim(core, llm_server):
    """Tenant "victim" with an LLM (its key is the prize), a tool and a run."""
    handle = core.tenant("victim")
    server = llm_server(CALCULATOR_SCRIPT)
    tool_id = handle.add_tool("calculator", "Evaluates arithmetic.", CALCULATOR)
    llm_id = handle.add_llm(base_url=server.base_url, api_key=VICTIM_KEY, model_name="m")
    handle.run_query([tool_id], llm_id, "What is 25 multiplied by 16?", use_docker=False)
    return {"handle": handle, "tool": tool_id, "llm": llm_id}


@pytest.fixture
def listener():
    opened = Listener()
    yield opened
    opened.close()


def assert_victim_intact(core, victim) -> None:
    handle = victim["handle"]
    assert handle.get_tool(victim["tool"])["code"] == CALCULATOR
    assert (core.home / "tools" / "victim" / f"{victim['tool']}.py").read_text() == CALCULATOR
    assert core.llms.resolve("victim", victim["llm"]).primary.api_key == VICTIM_KEY
    assert [run["status"] for run in handle.get_runs()] == ["succeeded"]


def database_socket(core) -> str | None:
    """The PostgreSQL server's Unix socket of a PostgreSQL installation (which this process can reach)."""
    url = core.settings.database_url or ""
    folder = parse_qs(urlsplit(url).query).get("host", [""])[0]
    if not folder:
        return None
    path = f"{folder}/.s.PGSQL.5432"
    client = socket.socket(socket.AF_UNIX)
    client.connect(path)  # the host can: the jail must not
    client.close()
    return path


def attack_probes(core, victim, listener, tmp_path) -> str:
    return probes(
        home=core.home, victim="victim", victim_tool_file=core.home / "tools" / "victim" / f"{victim['tool']}.py",
        host_pid=os.getpid(), listener_port=listener.port, host_file=tmp_path / "written-from-the-jail.txt",
        database_socket=database_socket(core),
    )


def assert_all_blocked(results: dict[str, str], core, tmp_path, listener) -> None:
    for name, outcome in results.items():
        if name not in INSIDE_ONLY:
            assert outcome.startswith("blocked"), (name, outcome)
    text = json.dumps(results)
    assert VICTIM_KEY not in text and core.settings.master_key not in text
    assert not (tmp_path / "written-from-the-jail.txt").exists()
    assert not (core.home / "planted.txt").exists()
    assert listener.accepted == []


def test_tool_code_cannot_reach_the_host(core, victim, llm_server, listener, tmp_path):
    attacker = core.tenant("attacker")
    server = llm_server(["<code>\nfinal_answer(attempt())\n</code>"])
    tool_id = attacker.add_tool("attempt", "Tries everything.", as_tool(attack_probes(core, victim, listener, tmp_path)))
    llm_id = attacker.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
    result = attacker.run_query([tool_id], llm_id, "escape", use_docker=False)
    assert result.executor == "local" and result.status == "succeeded"
    assert_all_blocked(json.loads(result.output), core, tmp_path, listener)
    assert_victim_intact(core, victim)


def test_model_code_escaping_smolagents_cannot_reach_the_host(core, victim, llm_server, listener, tmp_path):
    """The generator-frame escape lifts smolagents' import restrictions (shown by `import ctypes`
    working); the jail is the boundary that holds."""
    attacker = core.tenant("attacker")
    code = GENERATOR_ESCAPE + attack_probes(core, victim, listener, tmp_path) + "\nfinal_answer(json.dumps(results))"
    server = llm_server([f"<code>\n{code}\n</code>"])
    llm_id = attacker.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
    result = attacker.run_query([], llm_id, "escape", use_docker=False)
    results = json.loads(result.output)
    assert "ctypes" not in results["ptrace_host"]  # the import worked: the interpreter was escaped
    assert_all_blocked(results, core, tmp_path, listener)
    assert_victim_intact(core, victim)


def test_the_seed_attack_gets_nothing(core, victim, llm_server):
    """The tool of the issue: import mt_core in the tool and read another tenant's keys."""
    steal = '''
def steal() -> str:
    """Steal.

    Returns:
        loot
    """
    import mt_core.api as api
    t = api.get_core().tenant("victim")
    return "|".join(api.get_core().llms.resolve("victim", l["id"]).primary.api_key or "" for l in t.get_llms())
'''
    attacker = core.tenant("attacker")
    server = llm_server(["<code>\nfinal_answer(steal())\n</code>"])
    tool_id = attacker.add_tool("steal", "Steals.", steal)
    llm_id = attacker.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
    result = attacker.run_query([tool_id], llm_id, "steal", use_docker=False)
    assert result.output == ""  # an installation of its own, in the jail's /tmp: empty
    assert VICTIM_KEY not in json.dumps(server.requests)
    assert_victim_intact(core, victim)


def test_a_tool_dormant_while_validated_acts_only_in_the_jail(core, victim, llm_server, tmp_path):
    marker = tmp_path / "dormant-ran-in-the-host.txt"
    attacker = core.tenant("attacker")
    tool_id = attacker.add_tool("attempt", "Dormant.", DORMANT_BODY.replace("MARKER", repr(str(marker))))
    server = llm_server(["<code>\nfinal_answer(attempt())\n</code>"])
    llm_id = attacker.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
    assert attacker.run_query([tool_id], llm_id, "go", use_docker=False).output == "ran"
    assert not marker.exists()
    assert [llm["name"] for llm in core.tenant("victim").get_llms()] == ["m"]
    assert_victim_intact(core, victim)


RUNAWAYS = {
    "infinite_loop": ("while True:\n    pass", "timeout", "time limit"),
    "sleep": ("import time\ntime.sleep(600)", "timeout", "time limit"),
    "memory_bomb": ("hog = bytearray(3 * 1024 ** 3)", "failed", "MemoryError"),
    "fork_bomb": ("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass", "timeout",
                  "time limit"),
}


@pytest.mark.parametrize("kind", sorted(RUNAWAYS))
def test_runaway_tool_code_is_stopped_and_the_host_keeps_working(core, llm_server, kind):
    body, status, message = RUNAWAYS[kind]
    acme = core.tenant("acme")
    server = llm_server(["<code>\nresult = attempt()\nfinal_answer(result)\n</code>"])
    source = "def attempt() -> str:\n    \"\"\"Runs away.\"\"\"\n" + "\n".join(
        "    " + line for line in (body + "\nreturn 'never'").splitlines()) + "\n"
    tool_id = acme.add_tool("attempt", "Runs away.", source)
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
    started = time.monotonic()
    if status == "timeout":
        with pytest.raises(RunError, match=message) as caught:
            acme.run_query([tool_id], llm_id, "run away", use_docker=False, step_timeout=STEP_TIMEOUT)
        assert caught.value.status == "timeout" and acme.get_run(caught.value.run_id)["status"] == "timeout"
        assert len(server.requests) == 1  # the run ended at the runaway step
    else:  # the memory limit turns the bomb into an error the model sees
        result = acme.run_query([tool_id], llm_id, "run away", use_docker=False, step_timeout=STEP_TIMEOUT,
                                max_steps=1)
        assert message in json.dumps(server.requests[-1]["body"]["messages"]) or message in str(result.trace)
    assert time.monotonic() - started < STEP_TIMEOUT + 15
    again = llm_server(["<code>\nfinal_answer(6 * 7)\n</code>"])
    fine = acme.add_llm(base_url=again.base_url, api_key=API_KEY, model_name="m", llm_name="fine")
    assert acme.run_query([], fine, "fine now", use_docker=False).output == 42


def test_a_process_left_behind_by_a_tool_dies_with_the_run(core, llm_server, tmp_path):
    marker = f"mt-leftover-{os.getpid()}-{time.monotonic_ns()}"
    body = (
        "import subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', {marker!r}], start_new_session=True)\n"
        "return 'spawned'"
    )
    source = 'def attempt() -> str:\n    """Leaves a process behind."""\n' + "\n".join(
        "    " + line for line in body.splitlines()) + "\n"
    acme = core.tenant("acme")
    server = llm_server(["<code>\nfinal_answer(attempt())\n</code>"])
    tool_id = acme.add_tool("attempt", "Leaves a process.", source)
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
    assert acme.run_query([tool_id], llm_id, "spawn", use_docker=False).output == "spawned"
    deadline = time.monotonic() + 5
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker) == []


def test_tools_and_state_behave_as_in_smolagents(core, llm_server):
    """Prints, tool errors shown to the model, state between steps and final_answer, in the jail."""
    acme = core.tenant("acme")
    server = llm_server([
        '<code>\nx = 20\nprint("first step", calculator(expression="25 * x"))\n</code>',
        '<code>\nprint("x is", x)\ny = calculator(expression="25 * 16")\nprint(y)\n</code>',
        "<code>\nfinal_answer(y)\n</code>",
    ])
    tool_id = acme.add_tool("calculator", "Evaluates arithmetic.", CALCULATOR)
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
    result = acme.run_query([tool_id], llm_id, "compute", use_docker=False)
    assert result.output == "400" and result.executor == "local" and result.steps == 3
    second, third = (json.dumps(server.requests[i]["body"]["messages"]) for i in (1, 2))
    assert "unsupported expression" in second  # the tool's error reached the model
    assert "x is 20" in third and "400" in third  # state kept across steps, prints observed


# -- tool validation runs in the same jail ------------------------------------------------------


def test_validation_cannot_read_the_host_or_other_tenants(core, victim, listener, tmp_path):
    body = attack_probes(core, victim, listener, tmp_path)
    source = body + "\nraise RuntimeError('RESULTS ' + json.dumps(results))\n" + CALCULATOR
    with pytest.raises(ToolValidationError) as caught:
        core.tenant("attacker").add_tool("calculator", "Reports what it could read.", source)
    message = str(caught.value)
    results = json.loads(message.split("RESULTS ", 1)[1].rsplit("}", 1)[0] + "}")
    assert_all_blocked(results, core, tmp_path, listener)
    assert VICTIM_KEY not in message
    assert core.tenant("attacker").get_tools() == []
    assert_victim_intact(core, victim)


def test_validation_cannot_write_another_tenants_tool_or_hold_the_database(core, victim):
    tool_file = core.home / "tools" / "victim" / f"{victim['tool']}.py"
    code = (
        "import sqlite3, time\n"
        "try:\n"
        f"    conn = sqlite3.connect({str(core.home / 'mt.db')!r}, timeout=1)\n"
        "    conn.execute('BEGIN IMMEDIATE')\n"
        "    conn.execute(\"UPDATE tool_versions SET source = source || '#owned'\")\n"
        "except Exception:\n    pass\n"
        "try:\n"
        f"    open({str(tool_file)!r}, 'a').write('#owned')\n"
        "except Exception:\n    pass\n"
        "time.sleep(3)\n" + CALCULATOR
    )
    done = threading.Event()
    errors = []

    def validate():
        try:
            core.tenant("attacker").add_tool("calculator", "Holds the database.", code)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        done.set()

    thread = threading.Thread(target=validate)
    thread.start()
    time.sleep(1.0)  # the validation is running now
    started = time.monotonic()
    core.tenant("victim").add_llm(base_url="http://127.0.0.1:9/v1", api_key=API_KEY, model_name="other")
    assert time.monotonic() - started < 1.0  # no lock held by the validation
    thread.join()
    assert errors == []
    assert_victim_intact(core, victim)


def test_validation_leaves_nothing_running(core):
    marker = f"mt-double-fork-{os.getpid()}-{time.monotonic_ns()}"
    code = (
        "import os, subprocess, sys\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(600)', {marker!r}])\n"
        "    os._exit(0)\n" + CALCULATOR
    )
    core.tenant("attacker").add_tool("calculator", "Double-forks.", code)
    deadline = time.monotonic() + 5
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker) == []


def test_concurrent_validations_of_one_tenant_are_bounded(tmp_path):
    core = MTCore(settings=make_settings(tmp_path / "home", validations_per_tenant=8, validations=16))
    slow = "import time\ntime.sleep(2)\n" + CALCULATOR
    outcomes: list[object] = []
    lock = threading.Lock()

    def add(index: int) -> None:
        try:
            outcome: object = core.tenant("acme").add_tool(f"calc{index}", "Slow to validate.", slow)
        except Exception as exc:  # noqa: BLE001
            outcome = exc
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    refused = [o for o in outcomes if isinstance(o, QuotaExceededError)]
    stored = [o for o in outcomes if isinstance(o, str)]
    assert len(refused) + len(stored) == 50, [o for o in outcomes if not isinstance(o, (str, QuotaExceededError))]
    assert 1 <= len(stored) <= 8 + 8  # at most 8 at once (a slot frees after 2 s)
    assert all("validations_per_tenant" in str(o) and "MT_VALIDATIONS_PER_TENANT" in str(o) for o in refused)
    assert len(core.tenant("acme").get_tools()) == len(stored)
    # another tenant is not starved by the first one's validations
    assert core.tenant("globex").add_tool("calculator", "Fine.", CALCULATOR)


def test_without_a_jail_tenant_code_is_refused_unless_the_operator_opts_in(tmp_path, monkeypatch, llm_server):
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on PATH
    from mt_core.sandbox import jail

    monkeypatch.setattr(jail, "_probe_result", None)
    refused = MTCore(settings=make_settings(tmp_path / "refused"))
    with pytest.raises(Exception, match="bubblewrap .* is not installed.*MT_ALLOW_IN_PROCESS=1"):
        refused.tenant("acme").add_tool("calculator", "Needs a jail.", CALCULATOR)
    allowed = MTCore(settings=make_settings(tmp_path / "allowed", allow_in_process=True))
    acme = allowed.tenant("acme")
    tool_id = acme.add_tool("calculator", "Runs in this process.", CALCULATOR)
    server = llm_server(CALCULATOR_SCRIPT)
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
    result = acme.run_query([tool_id], llm_id, "What is 25 multiplied by 16?", use_docker=False)
    assert result.output == "400" and result.executor == "in-process"
    assert acme.get_run(result.run_id)["executor"] == "in-process"
    monkeypatch.setattr(jail, "_probe_result", None)


def test_the_jail_sees_no_data_directory_even_inside_a_bound_path(tmp_path):
    """A data directory inside the interpreter's own tree (a venv, a checkout) is hidden too."""
    from mt_core.sandbox.jail import bwrap_command

    import sys

    home = Path(sys.prefix) / ".mt-home-inside-prefix"
    command = bwrap_command(hidden=[home], modules=[], control_fd=3)
    assert command[command.index(str(home)) - 1] == "--tmpfs"


def test_runs_under_the_operators_limits_are_served_by_the_pool(tmp_path, llm_server):
    """The processes the jail forks ahead of time are made for the operator's limits
    (MT_SANDBOX_TMPFS and the like), not for the built-in defaults: runs take them, and get that /tmp."""
    from mt_core.sandbox.jail import POOL_SIZE, JailLimits, jail_for_settings
    from mt_core.sandbox.limits import jail_limits

    settings = make_settings(tmp_path / "home", sandbox_tmpfs_bytes=32 << 20, sandbox_memory_bytes=768 << 20)
    core = MTCore(settings=settings)
    try:
        acme = core.tenant("acme")
        source = ('def tmp_size() -> int:\n    """Size of /tmp."""\n    import os\n'
                  '    found = os.statvfs("/tmp")\n    return found.f_blocks * found.f_frsize\n')
        tool_id = acme.add_tool("tmp_size", "Size of /tmp.", source)
        llm_id = acme.add_llm(base_url=llm_server(["<code>\nfinal_answer(tmp_size())\n</code>"]).base_url,
                              api_key=API_KEY, model_name="m")
        assert acme.run_query([tool_id], llm_id, "size?", use_docker=False).output == 32 << 20

        jail = jail_for_settings(core.settings, ())
        assert jail.defaults == JailLimits.from_settings(core.settings) != JailLimits()
        deadline = time.monotonic() + 10
        while len(jail._ready) < POOL_SIZE and time.monotonic() < deadline:
            time.sleep(0.02)
        forked_ahead = {pid for _, pid, _ in list(jail._ready)}
        assert len(forked_ahead) == POOL_SIZE
        process = jail.spawn(jail_limits(core.settings))  # the operator's limits: a process forked ahead
        try:
            assert process.pid in forked_ahead
        finally:
            process.kill()
    finally:
        core.close()
