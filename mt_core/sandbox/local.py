"""The executors of this machine: the jailed one (the default) and the in-process one (opt-in),
and tool validation, which runs in the same jail as runs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from typing import Any

from smolagents.local_python_executor import CodeOutput, LocalPythonExecutor, PythonExecutor

from ..errors import ExecutorAbort, SandboxCrashed, SandboxError, StepTimeout
from .jail import Jail, JailedProcess, JailLimits, hidden_paths, jail_for_settings
from .limits import jail_limits
from .remote import RemoteExecutor, SandboxStepError


def open_jailed(settings: Any, modules: tuple[str, ...], limits: JailLimits, env: dict[str, str]) -> JailedProcess:
    """A confined session process of the jail for ``settings``."""
    return jail_for_settings(settings, modules).spawn(limits, env)


class JailedExecutor(RemoteExecutor):
    """One run's code and tools in a process of the local jail, killed at the end of the run.

    Args:
        context: the run's :class:`~mt_core.executors.ExecutorContext`.
        jail: the jail of the run's installation (default: looked up from the context).
    """

    def __init__(self, context: Any, jail: Jail | None = None) -> None:
        super().__init__(context)
        limits = jail_limits(context.settings, context.options)
        jail = jail or jail_for_settings(context.settings, context.sandbox_modules)
        self.process = jail.spawn(limits, dict(context.env))
        try:
            self.start()
        except BaseException:
            self.close()
            raise

    def send(self, message: dict[str, Any], deadline: float) -> None:
        self.process.guarded(self.process.send, message, deadline, limit=self.timeout)

    def receive(self, deadline: float) -> dict[str, Any]:
        return self.process.guarded(self.process.receive, deadline, limit=self.timeout)

    def close(self) -> None:
        self.process.kill(wait=False)


class InProcessExecutor(PythonExecutor):
    """smolagents' ``LocalPythonExecutor`` in this process, building the run's tools here.

    Not a security boundary; used only when the operator set ``MT_ALLOW_IN_PROCESS=1`` and no jail
    can run. Tool secrets reach class tools as ``__init__`` arguments but not as environment
    variables (this process's environment is shared by every tenant).
    """

    def __init__(self, context: Any) -> None:
        self.context = context
        self.inner = LocalPythonExecutor(
            additional_authorized_imports=list(context.authorized_imports),
            max_print_outputs_length=context.max_print_chars,
            timeout_seconds=max(1, int(context.timeout_seconds)),
        )
        self.state = self.inner.state
        self._specs = {spec.name: spec for spec in context.tools}
        self._built: dict[str, Any] | None = None
        self._calls: list[dict[str, Any]] = []

    def _tools(self) -> dict[str, Any]:
        if self._built is None:
            from .session import build, timed

            self._built = {
                name: timed(spec.host_tool.build(dict(spec.init_kwargs)) if spec.runs_in_host else build(spec.wire()),
                            self._calls)
                for name, spec in self._specs.items()
            }
        return self._built

    def send_tools(self, tools: dict[str, Any]) -> None:
        from smolagents.default_tools import FinalAnswerTool

        built = self._tools()
        self.inner.send_tools({"final_answer": FinalAnswerTool(), **{n: built[n] for n in tools if n in built}})

    def send_variables(self, variables: dict[str, Any]) -> None:
        self.inner.send_variables(variables)

    def __call__(self, code_action: str) -> CodeOutput:
        try:
            return self.inner(code_action)
        finally:
            self._report()

    def call_tool(self, name: str, arguments: Any) -> Any:
        from .session import call_tool

        tool = self._tools()[name]
        try:
            return call_tool(tool, arguments)
        finally:
            self._report()

    def _report(self) -> None:
        from .session import drain_tool_calls

        calls = drain_tool_calls(self._calls)
        report = self.context.on_tool_call
        for call in calls:
            if report is not None and call["name"] in self._specs:
                report(call)

    def cleanup(self) -> None:
        self._built = None


def open_unconfined(limits: JailLimits, env: dict[str, str]) -> JailedProcess:
    """A session in a plain child process (in-process installations validate tools there, so a
    module body that loops or crashes cannot take the service with it). Not a security boundary."""
    host, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
                   "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), **env,
                   "MT_SESSION_MEMORY_BYTES": str(limits.memory_bytes + (512 << 20))}
    process = subprocess.Popen(
        [sys.executable, "-s", "-m", "mt_core.sandbox.session"], stdin=child, stdout=child,
        stderr=subprocess.DEVNULL, env=environment, start_new_session=True,
    )
    child.close()
    return _GroupProcess(host, process)


class _GroupProcess(JailedProcess):
    """An unconfined child; killed with its whole process group."""

    def __init__(self, sock: socket.socket, process: subprocess.Popen[bytes]) -> None:
        super().__init__(sock, process.pid, None)
        self.popen = process

    def kill(self) -> None:
        if self.killed:
            return
        self.killed = True
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.sock.close()
        self.popen.wait()


def validate_source(settings: Any, *, name: str, code: str, init_kwargs: dict[str, Any], env: dict[str, str],
                    modules: tuple[str, ...], timeout: float, confined: bool) -> dict[str, Any]:
    """Build a tool from ``code`` in a fresh sandbox process, as a run would; the session's answer
    (``ok`` with metadata, or ``error`` and ``line``). The process and all it started are gone on return."""
    limits = jail_limits(settings)
    process = open_jailed(settings, modules, limits, env) if confined else open_unconfined(limits, env)
    try:
        return process.exchange({"op": "validate", "name": name, "code": code, "init_kwargs": init_kwargs}, timeout)
    except StepTimeout:
        return {"ok": False, "error": f"building the tool took longer than {timeout:g} s (does its module body loop"
                " or block?)", "line": None}
    except SandboxCrashed as exc:
        return {"ok": False, "error": f"the tool's module body ended the validation process: {exc}", "line": None}
    finally:
        process.kill()


__all__ = ["ExecutorAbort", "InProcessExecutor", "JailedExecutor", "SandboxError", "SandboxStepError",
           "hidden_paths", "open_jailed", "validate_source"]
