"""``DockerExecutor``: a smolagents ``PythonExecutor`` whose code and tools run in a per-run container.

It speaks mt-core's sandbox session protocol (:mod:`mt_core.sandbox.session`, the container's
server) through :class:`mt_core.sandbox.remote.RemoteExecutor`; only the transport is Docker's.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from typing import Any

from mt_core.sandbox.remote import RemoteExecutor

from . import engine, images, pool
from .config import SandboxConfig, load_config
from .engine import STARTUP_TIMEOUT
from .errors import SandboxCrashed, SandboxStepTimeout

logger = logging.getLogger(__name__)

_live: set[str] = set()
_live_lock = threading.Lock()
_atexit_registered = False


class DockerExecutor(RemoteExecutor):
    """Runs one run's code steps and tools in a fresh hardened container, removed by :meth:`cleanup`.

    Args:
        context: the run's :class:`mt_core.executors.ExecutorContext`.
        config: the sandbox configuration; by default from the environment and ``context.options``.
    """

    def __init__(self, context: Any, config: SandboxConfig | None = None) -> None:
        super().__init__(context)
        self.config = config or load_config(context.settings, context.options)
        self.container_id: str | None = None
        self.warm = False
        self._startup = False
        self._channel: Any = None
        self.client = engine.client()
        requirements, distributions = images.requirements_for(context.tools)
        self.image = images.ensure_image(self.client, self.config.base_image, requirements, distributions)
        started = time.monotonic()
        if context.env:  # the run's tool secrets: this container only, never the warm pool
            sandbox, self.warm = engine.start_sandbox(
                self.client, self.image, self.config, {"tenant": context.tenant, "run-id": context.run_id},
                env=dict(context.env),
            ), False
        else:
            sandbox, self.warm = pool.acquire(
                self.client, self.image, self.config, {"tenant": context.tenant, "run-id": context.run_id}
            )
        self.container_id, self._channel = sandbox.container_id, sandbox.channel
        _track(self.container_id)
        try:
            self._setup()
        except BaseException:
            self.cleanup()
            raise
        self.startup_seconds = time.monotonic() - started
        logger.info(
            "run %s (tenant %s): container %s from %s (%s) ready in %.2fs", context.run_id, context.tenant,
            self.container_id[:12], self.image, "warm pool" if self.warm else "cold start", self.startup_seconds,
        )

    def _setup(self) -> None:
        timeout, self.timeout, self._startup = self.timeout, STARTUP_TIMEOUT, True
        try:
            self.start()
        finally:
            self.timeout, self._startup = timeout, False

    # -- transport ---------------------------------------------------------------------------

    def send(self, message: dict[str, Any], deadline: float) -> None:
        self._guarded(lambda: self._channel.send(message, deadline))

    def receive(self, deadline: float) -> dict[str, Any]:
        return self._guarded(lambda: self._channel.receive(deadline))

    def _guarded(self, action: Any) -> Any:
        """One transfer over the container's attach stream; a timeout or a broken stream stops the
        container and ends the run."""
        if self._channel is None or self.container_id is None:
            raise SandboxCrashed("the sandbox of this run is gone (a previous step timed out or crashed)")
        try:
            return action()
        except TimeoutError:
            detail = (f"did not start within {STARTUP_TIMEOUT:g} s" if self._startup
                      else f"exceeded the {self.timeout:g} s time limit")
            self.cleanup()
            raise SandboxStepTimeout(f"sandbox step {detail}; the container was stopped") from None
        except (EOFError, OSError, ValueError) as exc:
            reason = self._death_reason() if not isinstance(exc, ValueError) else str(exc)
            stderr = self._channel.stderr_tail() if self._channel else ""
            self.cleanup()
            message_text = f"the sandbox container died during the step ({reason})"
            if stderr.strip():
                message_text += f"; last output: {stderr.strip()[-500:]}"
            raise SandboxCrashed(message_text) from exc

    def close(self) -> None:
        """Remove the container (idempotent)."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        container_id, self.container_id = self.container_id, None
        if container_id is not None:
            engine.remove_container(self.client, container_id)
            _untrack(container_id)

    def __del__(self) -> None:  # a run that never reached cleanup() still loses its container
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    def _death_reason(self) -> str:
        try:
            state = self.client.api.inspect_container(self.container_id)["State"]
        except Exception:  # noqa: BLE001
            return "container vanished"
        if state.get("OOMKilled"):
            return f"out of memory: the limit is {self.config.memory}"
        if state.get("Running"):
            return "its output stream broke"
        return f"exit code {state.get('ExitCode')}"


def _track(container_id: str) -> None:
    global _atexit_registered
    with _live_lock:
        _live.add(container_id)
        if not _atexit_registered:
            atexit.register(_remove_live)
            _atexit_registered = True


def _untrack(container_id: str) -> None:
    with _live_lock:
        _live.discard(container_id)


def _remove_live() -> None:
    with _live_lock:
        leftover = list(_live)
        _live.clear()
    if leftover:
        docker_client = engine.client()
        for container_id in leftover:
            engine.remove_container(docker_client, container_id)


def build_executor(context: Any) -> DockerExecutor:
    """The ``docker`` executor factory registered with mt-core."""
    return DockerExecutor(context)
