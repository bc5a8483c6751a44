"""The operator bounds every option a tenant controls: LLM timeouts and retries, step timeouts and
steps, the size of what a run stores and of what a sandbox prints. Each attack is a tenant's own
call through the public API; each must fail with an error naming the bound, or be cut."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import API_KEY, make_settings, requires_jail
from mt_core import LLMConfigError, MTCore, RunError, ValidationError

pytestmark = pytest.mark.filterwarnings("ignore::mt_core.errors.SandboxFallbackWarning")


class SilentListener:
    """Accepts connections on 127.0.0.1 and never answers (a provider that hangs)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_a_tenant_timeout_may_only_lower_the_operators(tmp_path):
    core = MTCore(settings=make_settings(tmp_path / "home", llm_timeout=1.0))
    acme = core.tenant("acme")
    with pytest.raises(LLMConfigError, match=r"timeout: must be a number above 0 and at most 1 seconds"
                                             r" \(the operator's MT_LLM_TIMEOUT\), got 25"):
        acme.add_llm(base_url="http://127.0.0.1:9/v1", api_key=API_KEY, model_name="m", timeout=25)
    assert acme.get_llms() == []
    listener = SilentListener()
    try:
        llm_id = acme.add_llm(base_url=f"http://127.0.0.1:{listener.port}/v1", api_key=API_KEY, model_name="m",
                              max_retries=0)
        started = time.monotonic()
        with pytest.raises(RunError) as caught:
            acme.run_query([], llm_id, "hello", use_docker=False)
        assert time.monotonic() - started < 6  # one call: at most MT_LLM_TIMEOUT, not the tenant's 25 s
        assert caught.value.status == "timeout"
    finally:
        listener.close()


def test_retries_steps_and_step_timeouts_are_capped(tmp_path, llm_server):
    core = MTCore(settings=make_settings(tmp_path / "home", max_llm_retries=5, max_steps=30, max_step_timeout=120))
    acme = core.tenant("acme")
    with pytest.raises(LLMConfigError, match=r"max_retries: must be a whole number from 0 to 5 \(the operator's"
                                             r" MT_LLM_MAX_RETRIES\)"):
        acme.add_llm(base_url="http://127.0.0.1:9/v1", api_key=API_KEY, model_name="m", max_retries=1000)
    llm_id = acme.add_llm(base_url=llm_server(["<code>final_answer(1)</code>"]).base_url, api_key=API_KEY,
                          model_name="m")
    acme.set_limits(max_steps=1000)  # a tenant limit cannot lift the operator's bound either
    with pytest.raises(ValidationError, match=r"step_timeout: .* at most 120 \(the operator's MT_MAX_STEP_TIMEOUT\)"):
        acme.run_query([], llm_id, "hi", step_timeout=10**7)
    with pytest.raises(ValidationError, match=r"max_steps: must be an integer from 1 to 30 \(the operator's MT_MAX_STEPS\)"):
        acme.run_query([], llm_id, "hi", max_steps=31)
    assert acme.get_runs() == []


def test_a_huge_error_body_is_stored_cut_with_a_marker(core, llm_server):
    acme = core.tenant("acme")
    body = json.dumps({"error": {"message": "x" * (5 * 1024 * 1024), "type": "server_error"}})
    server = llm_server([{"status": 400, "raw": body}])
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m", max_retries=0)
    with pytest.raises(RunError) as caught:
        acme.run_query([], llm_id, "hello", use_docker=False)
    error = acme.get_run(caught.value.run_id)["error"]
    # the provider's message is quoted up to a few hundred characters, then cut with a marker
    assert "BadRequestError: Error code: 400 - xxxx" in error and "x…" in error
    assert len(error) < 1024 and len(str(caught.value)) < 1024
    assert acme.get_run(caught.value.run_id)["llm_calls"][0]["error"].endswith("x…")


PRINTER = '''
def flood() -> str:
    """Prints about 150 MB, through print and straight to the process's stdout and stderr."""
    import os

    chunk = "x" * (1024 * 1024)
    for _ in range(50):
        print(chunk)
        os.write(1, chunk.encode())
        os.write(2, chunk.encode())
    return "printed"
'''

MEASURE = r'''
import json, resource, sys, warnings
sys.path[:0] = {paths!r}
warnings.simplefilter("ignore")
from conftest import make_settings, API_KEY
from mt_core import MTCore
from mt_core.testing import ScriptedLLMServer
from pathlib import Path
core = MTCore(settings=make_settings(Path({home!r})))
acme = core.tenant("acme")
tool_id = acme.add_tool("flood", "Prints a lot.", {source!r})
with ScriptedLLMServer(["<code>\nfinal_answer(flood())\n</code>"]) as server:
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
    acme.run_query([], llm_id, "warm up", use_docker=False)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = acme.run_query([tool_id], llm_id, "flood", use_docker=False)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"output": str(result), "growth_kib": after - before,
                   "observation": len(json.dumps(server.requests[-1]))}}))
'''


@requires_jail
def test_what_sandboxed_code_prints_does_not_grow_the_service(tmp_path):
    """150 MB printed by tenant code: the service's peak memory grows by far less than 100 MB."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = MEASURE.format(paths=[here], home=str(tmp_path / "home"), source=PRINTER)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["output"] == "printed"
    assert report["growth_kib"] < 100 * 1024, report
    assert report["observation"] < 1024 * 1024  # the model sees a cut version, not 50 MB
