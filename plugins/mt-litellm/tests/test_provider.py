"""The litellm provider against a real OpenAI-compatible HTTP server on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import mt_litellm
from mt_core.llms import LLMConfig
from mt_core.plugins import Plugins
from mt_core.testing import ScriptedLLMServer

API_KEY = "sk-litellm-test-0123456789"
HI = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


def make_config(base_url: str, api_key: str | None = API_KEY, **options: object) -> LLMConfig:
    return LLMConfig(
        tenant="acme", id="llm_1", name="scripted", provider="litellm", model_name="openai/scripted",
        base_url=base_url, api_key=api_key, options=dict(options), timeout=10.0,
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
