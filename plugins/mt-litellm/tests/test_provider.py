"""The litellm provider against a real OpenAI-compatible HTTP server on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import mt_litellm
from mt_core.errors import BlockedAddressError
from mt_core.llms import LLMConfig
from mt_core.netguard import NetworkPolicy
from mt_core.plugins import Plugins
from mt_core.testing import FakeDNS, ScriptedLLMServer

API_KEY = "sk-litellm-test-0123456789"
HI = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


# The scripted servers listen on 127.0.0.1, which the SSRF guard refuses unless allowed.
LOOPBACK = NetworkPolicy.from_strings(["127.0.0.0/8"])


def make_config(
    base_url: str | None, api_key: str | None = API_KEY, *, model_name: str = "openai/scripted",
    network_policy: NetworkPolicy = LOOPBACK, **options: object,
) -> LLMConfig:
    return LLMConfig(
        tenant="acme", id="llm_1", name="scripted", provider="litellm", model_name=model_name,
        base_url=base_url, api_key=api_key, options=dict(options), timeout=10.0, network_policy=network_policy,
    )


@pytest.fixture
def server() -> Iterator[ScriptedLLMServer]:
    with ScriptedLLMServer(script=["Hello from the scripted server"]) as llm:
        yield llm


def test_plugin_registers_the_litellm_provider() -> None:
    plugins = Plugins(allow=())
    plugins.register(mt_litellm, name="litellm-under-test")
    provider = plugins.providers["litellm"]
    assert provider.required == ("model_name",)
    assert set(provider.optional) == {"base_url", "api_key", "temperature", "max_tokens", "timeout"}
    assert provider.factory is mt_litellm.build_model


def test_generate_reaches_the_server_with_the_key(server: ScriptedLLMServer) -> None:
    model = mt_litellm.build_model(make_config(server.base_url, temperature=0.25, max_tokens=64))

    message = model.generate(HI)

    assert message.content == "Hello from the scripted server"
    assert message.token_usage is not None and message.token_usage.output_tokens > 0
    [request] = server.requests
    assert request["path"].endswith("/chat/completions")
    assert request["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert request["body"]["model"] == "scripted"
    assert request["body"]["temperature"] == 0.25
    assert request["body"]["max_tokens"] == 64


def test_missing_key_never_falls_back_to_the_environment(
    server: ScriptedLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-operator-secret")
    model = mt_litellm.build_model(make_config(server.base_url, api_key=None))

    model.generate(HI)

    assert server.requests[0]["headers"]["authorization"] == f"Bearer {mt_litellm.PLACEHOLDER_KEY}"


def test_rate_limit_fails_at_once_without_retries() -> None:
    with ScriptedLLMServer(script=[{"status": 429, "content": "slow down"}]) as llm:
        model = mt_litellm.build_model(make_config(llm.base_url))
        started = time.monotonic()
        with pytest.raises(Exception, match="slow down"):
            model.generate(HI)
        assert time.monotonic() - started < 5
        assert len(llm.requests) == 1


def test_timeout_option_bounds_a_slow_call() -> None:
    with ScriptedLLMServer(script=[{"content": "too late", "delay": 5}]) as llm:
        model = mt_litellm.build_model(make_config(llm.base_url, timeout=0.5))
        started = time.monotonic()
        with pytest.raises(Exception, match="(?i)timeout|timed out"):
            model.generate(HI)
        assert time.monotonic() - started < 4


def test_importing_the_plugin_does_not_import_litellm() -> None:
    code = "import sys, mt_litellm; print('litellm' in sys.modules, 'smolagents' in sys.modules)"
    here = Path(mt_litellm.__file__).parent
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=here)
    assert result.stdout.split() == ["False", "False"]


# -- the SSRF guard ----------------------------------------------------------------------------
# Only loopback is ever connected to: refused endpoints are names a fake getaddrinfo answers.


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A socket on 127.0.0.1 that never accepts: connections wait in its backlog."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    yield sock
    sock.close()


def connections(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def blocked_in(exc: BaseException) -> BlockedAddressError | None:
    """The guard's refusal behind ``exc`` (LiteLLM wraps what its SDK call raises)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        if isinstance(current, BlockedAddressError):
            return current
        seen.append(current)
        current = current.__cause__ or current.__context__
    return None


@pytest.mark.parametrize("model_name", ["openai/scripted", "hosted_vllm/scripted"])
def test_a_name_resolving_to_loopback_is_refused_before_any_connection(listener, monkeypatch, model_name):
    dns = FakeDNS({"llm.attacker.test": ["127.0.0.1"]})
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    port = listener.getsockname()[1]
    model = mt_litellm.build_model(
        make_config(f"http://llm.attacker.test:{port}/v1", model_name=model_name, network_policy=NetworkPolicy())
    )
    with pytest.raises(Exception) as caught:
        model.generate(HI)
    blocked = blocked_in(caught.value)
    assert blocked is not None and blocked.address_class == "loopback"
    assert "MT_LLM_ALLOWED_NETWORKS" in str(blocked) and API_KEY not in str(blocked)
    assert connections(listener) == 0


def test_a_provider_default_on_loopback_is_refused(monkeypatch):
    model = mt_litellm.build_model(make_config(None, model_name="ollama_chat/llama3", network_policy=NetworkPolicy()))
    with pytest.raises(BlockedAddressError, match="host 'localhost'.*loopback"):
        model.generate(HI)


def test_the_openai_route_uses_the_pinned_client_redirects_included(listener):
    """The allowed server redirects to a refused address: only the guard's own client checks the
    redirect (LiteLLM's default client would follow it)."""
    port = listener.getsockname()[1]
    location = f"http://127.0.0.1:{port}/v1/chat/completions"
    hits: list[str] = []

    class Redirector(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            hits.append(self.path)
            self.send_response(307)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.2", 0), Redirector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        model = mt_litellm.build_model(make_config(
            f"http://127.0.0.2:{server.server_address[1]}/v1", network_policy=NetworkPolicy.from_strings(["127.0.0.2/32"])
        ))
        with pytest.raises(Exception) as caught:
            model.generate(HI)
    finally:
        server.shutdown()
        server.server_close()
    assert hits == ["/v1/chat/completions"]
    blocked = blocked_in(caught.value)
    assert blocked is not None and blocked.address == "127.0.0.1"
    assert connections(listener) == 0


def test_the_other_route_works_when_loopback_is_allowed(server: ScriptedLLMServer) -> None:
    model = mt_litellm.build_model(make_config(server.base_url, model_name="hosted_vllm/scripted"))
    assert model.generate(HI).content == "Hello from the scripted server"
    assert len(server.requests) == 1


def test_the_guard_pins_httpx_clients_too(listener, monkeypatch):
    """openai SDKs before 3 are built on httpx, not httpx2 (LiteLLM allows them): the guard's
    client for httpx refuses and pins the same way. The second lookup would answer 127.0.0.1."""
    import httpx

    from mt_core.netguard import guarded_http_client

    port = listener.getsockname()[1]
    dns = FakeDNS({"llm.rebind.test": lambda call: ["127.0.0.2"] if call == 1 else ["127.0.0.1"]})
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    with ScriptedLLMServer(script=["pinned"], host="127.0.0.2") as server:
        policy = NetworkPolicy.from_strings(["127.0.0.2/32"])
        with guarded_http_client(policy, timeout=5, library="httpx") as client:
            assert isinstance(client, httpx.Client)
            response = client.post(f"http://llm.rebind.test:{server.port}/v1/chat/completions", json={"model": "m"})
            assert response.json()["choices"][0]["message"]["content"] == "pinned"
        with guarded_http_client(policy, timeout=5, library="httpx") as client:
            with pytest.raises(BlockedAddressError, match="resolves to 127.0.0.1, a loopback address"):
                client.post(f"http://llm.rebind.test:{port}/v1/chat/completions", json={})
    assert dns.calls["llm.rebind.test"] == 2
    assert len(server.requests) == 1
    assert connections(listener) == 0


# -- through mt-core's gateway -------------------------------------------------------------------


def test_the_gateway_retries_litellms_errors_by_type_and_falls_back(tmp_path: Path) -> None:
    """LiteLLM's exceptions subclass the openai SDK's: the gateway retries its 429 and falls back
    from its 401 to the next configuration, and records each attempt."""
    import warnings

    from mt_core import MTCore, Settings
    from mt_core.secrets import generate_master_key
    from mt_core.testing import in_order

    final = '<code>final_answer("done")</code>'
    settings = Settings(home=tmp_path / "home", master_key=generate_master_key(), load_plugins=("mt-litellm",),
                        llm_allowed_networks=("127.0.0.0/8",), llm_backoff=0.02)
    with ScriptedLLMServer(responder=in_order([{"status": 429}, {"status": 401}])) as primary, \
            ScriptedLLMServer(script=[final]) as backup:
        acme = MTCore(settings=settings).tenant("acme")
        backup_id = acme.add_llm(provider="litellm", base_url=backup.base_url, api_key=API_KEY,
                                 model_name="openai/backup", llm_name="backup")
        llm_id = acme.add_llm(provider="litellm", base_url=primary.base_url, api_key=API_KEY,
                              model_name="openai/primary", llm_name="primary", fallbacks=[backup_id])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = acme.run_query([], llm_id, "Say done.", use_docker=False, max_steps=2)
        calls = acme.get_run(result.run_id)["llm_calls"]
    assert str(result) == "done"
    assert [(c["llm_id"], c["outcome"], c["status_code"]) for c in calls] == [
        (llm_id, "retried", 429), (llm_id, "fell_back", 401), (backup_id, "ok", None)]
    assert [c["error_type"] for c in calls[:2]] == ["RateLimitError", "AuthenticationError"]
    assert len(primary.requests) == 2 and backup.requests[0]["body"]["model"] == "backup"
