"""Fixtures of the Docker sandbox tests: a real engine, the sandbox image built once per session.

Without a usable engine the tests skip with the reason; with ``MT_REQUIRE_DOCKER=1`` (CI) they
fail instead. The base image is ``DOCKER_IMAGE`` (default ``python:3.12-slim``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import make_settings
from mt_core import MTCore

REQUIRED = os.environ.get("MT_REQUIRE_DOCKER") == "1"


def unavailable(reason: str) -> None:
    """Skip, or fail when Docker is required."""
    if REQUIRED:
        pytest.fail(f"MT_REQUIRE_DOCKER=1 but the Docker sandbox is unavailable: {reason}", pytrace=False)
    pytest.skip(f"Docker sandbox unavailable: {reason}")


@pytest.fixture(scope="session")
def sandbox_image() -> str:
    """The base image, with the sandbox runtime image built from it (once; cached by content)."""
    try:
        from mt_docker import engine, images
        from mt_docker.config import load_config
        from mt_docker.plugin import available
    except ImportError as exc:
        unavailable(f"the mt-docker plugin is not installed ({exc})")
    reason = available()
    if reason is not None:
        unavailable(reason)
    base = load_config().base_image
    started = time.monotonic()
    images.ensure_image(engine.client(), base)
    print(f"sandbox runtime image ready in {time.monotonic() - started:.1f}s")
    return base


def labelled_containers() -> list[dict[str, Any]]:
    from mt_docker import engine

    return engine.sandbox_containers()


def assert_no_sandbox_left(timeout: float = 10.0) -> None:
    """No labelled sandbox container exists (waits briefly for removals in flight)."""
    deadline = time.monotonic() + timeout
    while labelled_containers() and time.monotonic() < deadline:
        time.sleep(0.1)
    left = labelled_containers()
    assert not left, f"sandbox containers left behind: {[(c['Id'][:12], c['State'], c['Labels']) for c in left]}"


@pytest.fixture
def sandbox(sandbox_image: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A clean engine for one test (pool disabled unless the test enables it); checked clean after."""
    from mt_docker import pool

    monkeypatch.setenv("DOCKER_IMAGE", sandbox_image)
    monkeypatch.setenv("MT_DOCKER_POOL_SIZE", "0")
    assert_no_sandbox_left()
    yield sandbox_image
    pool.shutdown()
    assert_no_sandbox_left()


@pytest.fixture
def docker_core(tmp_path: Path, sandbox: str) -> Iterator[MTCore]:
    """An installation with the mt-docker plugin loaded, on a fresh SQLite file."""
    installation = MTCore(settings=make_settings(tmp_path / "home", load_plugins=("mt-docker",)))
    yield installation
    installation.close()


def context(tenant: str = "acme", *, tools: list[Any] | None = None, imports: list[str] | None = None,
            timeout: float = 10.0, settings: Any = None, options: dict[str, Any] | None = None,
            env: dict[str, str] | None = None) -> Any:
    """An ``ExecutorContext`` as run_query builds it, for tests that drive the executor directly."""
    from mt_core.executors import ExecutorContext
    from mt_core.ids import new_id

    return ExecutorContext(
        tenant=tenant, run_id=new_id("run"), tools=tuple(tools or ()), authorized_imports=tuple(imports or ()),
        timeout_seconds=timeout, settings=settings, options=dict(options or {}), env=dict(env or {}),
    )
