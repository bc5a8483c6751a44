"""The host side of a sandbox session: a smolagents ``PythonExecutor`` whose tools and code run
in another process, and the ``Tool`` stand-ins the agent holds for them.

The host never builds a tenant's tool: an agent is given :class:`RemoteTool` objects made from
the stored metadata (name, description, inputs, output type), which is all smolagents needs to
write its prompt, and every call (from model code or from a tool-calling agent) runs in the
sandbox. Executors differ only in how they reach their session (:meth:`RemoteExecutor.exchange`).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from typing import Any

from smolagents import Tool
from smolagents.local_python_executor import CodeOutput, PythonExecutor

from ..errors import SandboxError

logger = logging.getLogger(__name__)


class SandboxStepError(Exception):
    """A code step or tool call failed inside the sandbox; smolagents shows the message to the model.

    Raised as a subclass named like the exception the sandbox caught (see :func:`step_error`)."""


def step_error(reply: dict[str, Any]) -> SandboxStepError:
    """The error of a failed sandbox request, its class named like the exception raised in the sandbox:
    a tool-calling agent shows the model ``ValueError: ...`` for a tool that raised ``ValueError``, as
    plain smolagents does, rather than ``SandboxStepError: ...``."""
    message = reply.get("error") or "the sandbox reported an unknown error"
    kind = reply.get("error_type")
    if isinstance(kind, str) and kind.isidentifier() and len(kind) <= 64 and kind != SandboxStepError.__name__:
        return _named_step_error(kind)(message)
    return SandboxStepError(message)


@functools.lru_cache(maxsize=256)
def _named_step_error(kind: str) -> type[SandboxStepError]:
    return type(kind, (SandboxStepError,), {"__module__": __name__, "__doc__": SandboxStepError.__doc__})


class RemoteExecutor(PythonExecutor):
    """A ``PythonExecutor`` speaking :mod:`mt_core.sandbox.session` to a sandbox process.

    Subclasses implement :meth:`send` and :meth:`receive` (one message each way within a
    deadline, raising ``ExecutorAbort`` subclasses on timeout or death) and :meth:`close`. Tools
    that run in this process (package tools of in-process plugins) are called back from the
    sandbox in the middle of a request.

    Args:
        context: the run's :class:`~mt_core.executors.ExecutorContext`.
    """

    def __init__(self, context: Any) -> None:
        self.context = context
        self.timeout = float(context.timeout_seconds)
        self.state: dict[str, Any] = {"_print_outputs": ""}  # smolagents reads a failed step's logs here
        self._specs = {spec.name: spec for spec in context.tools}
        self._tools_sent = False
        self._host_tools: dict[str, Any] = {}
        self._host_calls: list[dict[str, Any]] = []

    # -- transport -----------------------------------------------------------------------------

    def send(self, message: dict[str, Any], deadline: float) -> None:
        """Send one message before ``deadline`` (``time.monotonic()``)."""
        raise NotImplementedError

    def receive(self, deadline: float) -> dict[str, Any]:
        """Receive one message before ``deadline``."""
        raise NotImplementedError

    def exchange(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send a request and return its reply, answering the sandbox's calls of host tools meanwhile."""
        deadline = time.monotonic() + timeout
        self.send(message, deadline)
        while True:
            reply = self.receive(deadline)
            call = reply.get("host_call")
            if not isinstance(call, dict):
                self._report_tool_calls(reply.get("tool_calls"))
                return reply
            self.send(self._answer_host_call(call), deadline)

    def _report_tool_calls(self, calls: Any) -> None:
        """Hand the tool calls a reply lists to ``context.on_tool_call``: only well-formed records of
        this run's tools (what the sandbox says is tenant-controlled)."""
        report = getattr(self.context, "on_tool_call", None)
        if report is None or not isinstance(calls, list):
            return
        for call in calls[:1000]:
            if not isinstance(call, dict) or call.get("name") not in self._specs:
                continue
            try:
                record = {"name": str(call["name"]), "started": float(call["started"]),
                          "seconds": max(0.0, float(call["seconds"])), "ok": bool(call["ok"]),
                          "error": None if call.get("ok") else str(call.get("error") or "")[:500]}
            except (KeyError, TypeError, ValueError):
                continue
            try:
                report(record)
            except Exception:  # noqa: BLE001 - a recorder never breaks a run
                logger.debug("tool call recorder failed", exc_info=True)

    def _answer_host_call(self, call: dict[str, Any]) -> dict[str, Any]:
        from .session import failure, portable

        spec = self._specs.get(str(call.get("name")))
        if spec is None or not spec.runs_in_host:
            return {"ok": False, "error": f"{call.get('name')!r} is not a host tool of this run"}
        try:
            value = self.call_host_tool(spec, call.get("arguments"))
        except Exception as exc:  # noqa: BLE001 - the model sees the tool's error
            return failure(exc)
        return {"ok": True, "output": portable(value)[0]}

    def call_host_tool(self, spec: Any, arguments: Any) -> Any:
        """Call a tool that runs in this process (built once per run with its tenant's settings)."""
        from .session import call_tool, drain_tool_calls, timed

        tool = self._host_tools.get(spec.name)
        if tool is None:
            tool = self._host_tools[spec.name] = timed(spec.host_tool.build(dict(spec.init_kwargs)), self._host_calls)
        try:
            return call_tool(tool, arguments)
        finally:
            self._report_tool_calls(drain_tool_calls(self._host_calls))

    def close(self) -> None:
        """Stop the sandbox process (idempotent)."""
        raise NotImplementedError

    # -- the session protocol -----------------------------------------------------------------

    def start(self) -> None:
        """Set the session up: authorized imports and the output cap."""
        self._checked(self.exchange({
            "op": "setup", "authorized_imports": list(self.context.authorized_imports),
            "max_print_outputs_length": self.context.max_print_chars,
        }, timeout=self.timeout))

    def send_tools(self, tools: dict[str, Any]) -> None:
        """Build the run's tools inside the sandbox (from their specs, never from host objects)."""
        specs = []
        for name in tools:
            if name == "final_answer":
                continue  # the session always provides smolagents' own final_answer
            spec = self._specs.get(name)
            if spec is None:
                raise SandboxError(f"tool {name!r} cannot run in the sandbox: it is not one of the run's tools")
            specs.append(spec.wire())
        self._checked(self.exchange({"op": "tools", "tools": specs}, timeout=self.timeout))
        self._tools_sent = True

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
            self._checked(self.exchange({"op": "variables", "variables": portable}, timeout=self.timeout))

    def __call__(self, code_action: str) -> CodeOutput:
        reply = self.exchange({"op": "run", "code": code_action}, timeout=self.timeout)
        self.state["_print_outputs"] = reply.get("logs", "")
        self._checked(reply)
        return CodeOutput(output=reply.get("output"), logs=reply.get("logs", ""),
                          is_final_answer=bool(reply.get("is_final_answer")))

    def call_tool(self, name: str, arguments: Any) -> Any:
        """Call one of the run's tools (for tool-calling agents): in the sandbox, or here for host tools."""
        spec = self._specs.get(name)
        if spec is not None and spec.runs_in_host:
            return self.call_host_tool(spec, arguments)
        if not self._tools_sent:
            self.send_tools({spec_name: None for spec_name in self._specs})
        reply = self._checked(self.exchange({"op": "call", "name": name, "arguments": arguments}, timeout=self.timeout))
        return reply.get("output")

    def cleanup(self) -> None:
        """Stop the sandbox (``agent.cleanup()`` calls this at the end of every run)."""
        self.close()

    def _checked(self, reply: dict[str, Any]) -> dict[str, Any]:
        if not reply.get("ok"):
            raise step_error(reply)
        return reply


class RemoteTool(Tool):
    """What the agent holds for a tool that lives in the sandbox: its metadata, and calls that go there."""

    skip_forward_signature_validation = True

    def __init__(self, spec: Any, executor: RemoteExecutor | None = None) -> None:
        self.name = spec.name
        self.description = spec.description
        self.inputs = json.loads(json.dumps(spec.inputs))
        self.output_type = spec.output_type
        self.output_schema = spec.output_schema
        self.executor = executor
        super().__init__()
        self.is_initialized = True

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.executor is None:
            raise SandboxError(f"tool {self.name!r} has no sandbox to run in")
        arguments: Any = kwargs if kwargs or not args else (args[0] if len(args) == 1 else list(args))
        if args and not kwargs and len(args) <= len(self.inputs) and not isinstance(args[0], dict):
            arguments = dict(zip(self.inputs, args))
        return self.executor.call_tool(self.name, arguments)
