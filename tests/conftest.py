"""Shared fixtures: a real installation on a temporary SQLite file, and scripted LLM servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import mt_core
from mt_core import MTCore, Settings
from mt_core.secrets import generate_master_key
from mt_core.testing import CALCULATOR_SCRIPT, ScriptedLLMServer
from mt_core.testing import CALCULATOR_SOURCE as CALCULATOR

API_KEY = "sk-test-0123456789abcdefSECRET"


# The scripted LLM servers listen on 127.0.0.1, which the SSRF guard refuses unless allowed.
LOOPBACK = ("127.0.0.0/8",)


def make_settings(home: Path, **overrides: object) -> Settings:
    """Hermetic settings: a fixed master key, no third-party plugins unless asked, and LLM
    requests allowed to reach 127.0.0.0/8 (where the scripted servers listen) unless overridden."""
    values: dict[str, object] = {
        "home": home, "master_key": generate_master_key(), "load_plugins": (), "llm_allowed_networks": LOOPBACK,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def core(tmp_path: Path) -> Iterator[MTCore]:
    """An installation on a fresh data directory."""
    installation = MTCore(settings=make_settings(tmp_path / "home"))
    yield installation
    installation.close()


@pytest.fixture
def default_core(tmp_path: Path) -> Iterator[MTCore]:
    """The installation behind the module-level functions (``mt_core.add_tool`` ...)."""
    installation = mt_core.configure(settings=make_settings(tmp_path / "home"))
    yield installation
    installation.close()


@pytest.fixture
def llm_server() -> Iterator[Callable[..., ScriptedLLMServer]]:
    """Start scripted OpenAI-compatible servers on 127.0.0.1; all stopped after the test."""
    servers: list[ScriptedLLMServer] = []

    def start(script: list | None = None, **kwargs: object) -> ScriptedLLMServer:
        server = ScriptedLLMServer(script, **kwargs).start()  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def calculator_setup(core: MTCore, llm_server: Callable[..., ScriptedLLMServer]):
    """Tenant ``acme`` with the calculator tool and an LLM on a scripted server."""
    acme = core.tenant("acme")
    server = llm_server(CALCULATOR_SCRIPT)
    tool_id = acme.add_tool("calculator", "Evaluates arithmetic expressions.", CALCULATOR)
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="scripted-model", llm_name="llama-model")
    return acme, server, tool_id, llm_id


def decrypted(core, tenant: str, llm_id: str):
    """The stored LLM configuration with its key decrypted, as a run gets it (``core`` may be the
    ``mt_core`` module, for its default installation)."""
    installation = core.get_core() if hasattr(core, "get_core") else core
    return installation.llms.resolve(tenant, llm_id).primary
