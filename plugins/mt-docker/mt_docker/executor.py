"""``DockerExecutor``: a smolagents ``PythonExecutor`` whose code and tools run in a per-run container."""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
from typing import Any

from smolagents.local_python_executor import CodeOutput, PythonExecutor

from . import engine, images, pool
from .engine import STARTUP_TIMEOUT
from .config import SandboxConfig, load_config
from .errors import SandboxCrashed, SandboxError, SandboxStepError, SandboxStepTimeout

logger = logging.getLogger(__name__)

_live: set[str] = set()
_live_lock = threading.Lock()
_atexit_registered = False


class DockerExecutor(PythonExecutor):
    """Runs one run's code steps and tools in a fresh hardened container, removed by :meth:`cleanup`.

    Args:
        context: the run's :class:`mt_core.executors.ExecutorContext`.
        config: the sandbox configuration; by default from the settings, environment and
            ``context.options``.
    """

    def __init__(self, context: Any, config: SandboxConfig | None = None) -> None:
        self.context = context
        self.config = config or load_config(context.settings, context.options)
        self.timeout = float(context.timeout_seconds)
        self.state: dict[str, Any] = {"_print_outputs": ""}  # smolagents reads a failed step's logs here
        self.container_id: str | None = None
        self.warm = False
        self._channel: Any = None
        self._records = {record["name"]: record for record in context.tools}
        self.client = engine.client()
        requirements, distributions = images.requirements_for(context.tools)
        self.image = images.ensure_image(self.client, self.config.base_image, requirements, distributions)
        started = time.monotonic()
        sandbox, self.warm = pool.acquire(
            self.client, self.image, self.config, {"tenant": context.tenant, "run-id": context.run_id}
        )
        self.container_id, self._channel = sandbox.container_id, sandbox.channel
        _track(self.container_id)
        try:
            self._request({"op": "setup", "authorized_imports": list(context.authorized_imports)},
                          timeout=STARTUP_TIMEOUT, step=False)
        except BaseException:
            self.cleanup()
            raise
        self.startup_seconds = time.monotonic() - started
        logger.info(
            "run %s (tenant %s): container %s from %s (%s) ready in %.2fs", context.run_id, context.tenant,
            self.container_id[:12], self.image, "warm pool" if self.warm else "cold start", self.startup_seconds,
        )

    # -- PythonExecutor ----------------------------------------------------------------------

    def send_tools(self, tools: dict[str, Any]) -> None:
        """Build the run's tools inside the container (tenant source, or the installed package tool)."""
        specs = []
        for name in tools:
            if name == "final_answer":
                continue  # the server always provides smolagents' own final_answer
            record = self._records.get(name)
            if record is None:
                raise SandboxError(f"tool {name!r} cannot run in the Docker sandbox: it is not one of the run's tools")
            if record.get("origin") == "package":
                specs.append({"kind": "package", "name": name, "distribution": record.get("distribution")})
            else:
                specs.append({"kind": "code", "name": name, "description": record.get("description"),
                              "code": record["code"]})
        self._checked(self._request({"op": "tools", "tools": specs}, timeout=self.timeout))

    def send_variables(self, variables: dict[str, Any]) -> None:
        """Send the variables that survive JSON; others are left out (they cannot cross the boundary)."""
        portable = {}
        for name, value in variables.items():
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                logger.debug("variable %s is not JSON-serialisable; not sent to the sandbox", name)
                continue
            portable[name] = value
        if portable:
            self._checked(self._request({"op": "variables", "variables": portable}, timeout=self.timeout))

    def __call__(self, code_action: str) -> CodeOutput:
        reply = self._request({"op": "run", "code": code_action}, timeout=self.timeout)
        self.state["_print_outputs"] = reply.get("logs", "")
        self._checked(reply)
        return CodeOutput(output=reply.get("output"), logs=reply.get("logs", ""),
                          is_final_answer=bool(reply.get("is_final_answer")))

    def cleanup(self) -> None:
        """Remove the container (idempotent). Called by ``agent.cleanup()`` at the end of every run."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        container_id, self.container_id = self.container_id, None
        if container_id is not None:
            engine.remove_container(self.client, container_id)
            _untrack(container_id)

    def __del__(self) -> None:  # a run that never reached cleanup() still loses its container
        try:
            self.cleanup()
        except Exception:  # noqa: BLE001
            pass

    # -- protocol ----------------------------------------------------------------------------

    def _checked(self, reply: dict[str, Any]) -> dict[str, Any]:
        if not reply.get("ok"):
            raise SandboxStepError(reply.get("error") or "the sandbox reported an unknown error")
        return reply

    def _request(self, message: dict[str, Any], *, timeout: float, step: bool = True) -> dict[str, Any]:
        if self._channel is None or self.container_id is None:
            raise SandboxCrashed("the sandbox of this run is gone (a previous step timed out or crashed)")
        deadline = time.monotonic() + timeout
        try:
            self._channel.send(message, deadline)
            return self._channel.receive(deadline)
        except TimeoutError:
            detail = f"exceeded the {timeout:g} s time limit" if step else f"did not start within {timeout:g} s"
            self.cleanup()
            raise SandboxStepTimeout(f"sandbox step {detail}; the container was stopped") from None
        except (EOFError, OSError, ValueError) as exc:
            reason = self._death_reason()
            stderr = self._channel.stderr_tail() if self._channel else ""
            self.cleanup()
            message_text = f"the sandbox container died during the step ({reason})"
            if stderr.strip():
                message_text += f"; last output: {stderr.strip()[-500:]}"
            raise SandboxCrashed(message_text) from exc

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
