"""Shared fixtures: a real installation on a temporary SQLite file, and scripted LLM servers."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import mt_core
from mt_core import MTCore, Settings
from mt_core.secrets import generate_master_key
from mt_core.testing import CALCULATOR_SCRIPT, ScriptedLLMServer
from mt_core.testing import CALCULATOR_SOURCE as CALCULATOR

API_KEY = "sk-test-0123456789abcdefSECRET"
DOCKER_SKIP_PREFIX = "Docker sandbox tests skipped: "
JAIL_SKIP_PREFIX = "Local jail tests skipped: "


def _jail_reason() -> str | None:
    from mt_core.sandbox.jail import unavailable_reason

    return unavailable_reason()


# Tenant code runs in the local jail, which needs bubblewrap. Where it cannot run (a fresh machine
# without bwrap), the suite still runs, with tenant code in-process (MT_ALLOW_IN_PROCESS's
# executor), and the tests of the jail itself skip, reported in one line. CI installs bubblewrap
# and sets MT_REQUIRE_SANDBOX=1: there a missing jail fails the run.
JAIL_REASON = _jail_reason()
if JAIL_REASON is not None and os.environ.get("MT_REQUIRE_SANDBOX") == "1":
    raise pytest.UsageError(f"MT_REQUIRE_SANDBOX=1 but the local jail cannot run: {JAIL_REASON}")
LOCAL_EXECUTOR = "local" if JAIL_REASON is None else "in-process"
requires_jail = pytest.mark.skipif(JAIL_REASON is not None, reason=f"{JAIL_SKIP_PREFIX}{JAIL_REASON}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Every Docker test skipped for one reason is reported at one place, so ``-ra`` prints one line."""
    outcome = yield
    report = outcome.get_result()
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple) and DOCKER_SKIP_PREFIX in str(longrepr[2]):
        report.longrepr = ("tests/docker/docker_support.py", 1, longrepr[2])
    if report.skipped and isinstance(longrepr, tuple) and JAIL_SKIP_PREFIX in str(longrepr[2]):
        report.longrepr = ("tests/conftest.py", 1, longrepr[2])


# The scripted LLM servers listen on 127.0.0.1, which the SSRF guard refuses unless allowed.
LOOPBACK = ("127.0.0.0/8",)


def make_settings(home: Path, **overrides: object) -> Settings:
    """Hermetic settings: a fixed master key, no third-party plugins unless asked, and LLM
    requests allowed to reach 127.0.0.0/8 (where the scripted servers listen) unless overridden."""
    values: dict[str, object] = {
        "home": home, "master_key": generate_master_key(), "load_plugins": (), "llm_allowed_networks": LOOPBACK,
        "allow_in_process": JAIL_REASON is not None,
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
    return installation.llms.resolve(tenant, llm_id)[0]
