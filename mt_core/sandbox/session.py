"""The process side of a sandbox: one run's tools and code steps, one JSON line per message.

Runs inside a jail or a container, never in the service process. Stdlib, smolagents and
mt-core's ``tool_loader`` only, so the Docker sandbox image ships this file as a plain script.

Requests and their replies (``{"ok": false, "error", "error_type", "line"?, "logs"?}`` on failure):

- ``{"op": "ping"}`` -> ``{"ok": true, "pid", "python"}``
- ``{"op": "setup", "authorized_imports": [...], "max_print_outputs_length": n}``
- ``{"op": "tools", "tools": [spec, ...]}``: build the run's tools; a spec is
  ``{"kind": "code", "name", "description", "code", "entry", "init_kwargs"}`` or
  ``{"kind": "package", "name", "distribution", "entry_point", "init_kwargs"}``
- ``{"op": "variables", "variables": {...}}``
- ``{"op": "run", "code"}`` -> ``{"ok": true, "output", "output_is_repr", "logs", "is_final_answer"}``
- ``{"op": "call", "name", "arguments"}`` -> ``{"ok": true, "output", "output_is_repr"}`` (a tool call
  of a tool-calling agent)
- ``{"op": "validate", "name", "code", "init_kwargs"}`` -> ``{"ok": true, "entry", "kind", "inputs",
  "output_type", "description", "output_schema"}``

A tool spec ``{"kind": "host", "name", "description", "inputs", "output_type"}`` is a tool that runs in
the host (a package tool of a plugin registered in the host process, not importable here): calling
it sends ``{"host_call": {"name", "arguments"}}`` in the middle of a request and reads the host's
answer (``{"ok": true, "output"}`` or ``{"ok": false, "error"}``) before going on.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import traceback
from typing import Any, TextIO

MAX_OUTPUT_CHARS = 65_536  # a value sent back; larger ones are cut (the host caps replies as well)
MAX_ERROR_CHARS = 8_192
MAX_TOOL_CALLS = 1_000  # per reply; more are counted but not itemised


def _loader() -> Any:
    try:
        from mt_core import tool_loader
    except ImportError:  # the Docker image ships the loader as a plain module beside this file
        import mt_tool_loader as tool_loader  # type: ignore[import-not-found,no-redef]
    return tool_loader


class Session:
    """The state of one run: its executor (with tools and variables) across steps."""

    def __init__(self) -> None:
        from smolagents.local_python_executor import LocalPythonExecutor

        self._executor_class = LocalPythonExecutor
        self.executor: Any = None
        self.authorized_imports: list[str] = []
        self.max_print_outputs_length: int | None = None
        self.tools: dict[str, Any] = {}

    def _ensure_executor(self) -> Any:
        if self.executor is None:
            # No timeout here: the host enforces it and kills this process.
            self.executor = self._executor_class(
                additional_authorized_imports=self.authorized_imports,
                max_print_outputs_length=self.max_print_outputs_length,
                timeout_seconds=None,
            )
        return self.executor

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one request."""
        op = request.get("op")
        if op == "ping":
            return {"ok": True, "pid": os.getpid(), "python": platform.python_version()}
        if op == "setup":
            self.authorized_imports = list(request.get("authorized_imports") or [])
            self.max_print_outputs_length = request.get("max_print_outputs_length")
            self.executor = None
            self._ensure_executor()
            return {"ok": True}
        if op == "tools":
            from smolagents.default_tools import FinalAnswerTool

            tools: dict[str, Any] = {"final_answer": FinalAnswerTool()}
            for spec in request.get("tools") or []:
                tools[spec["name"]] = timed(build(spec))
            self.tools = tools
            self._ensure_executor().send_tools(tools)
            return {"ok": True, "tools": sorted(tools)}
        if op == "variables":
            self._ensure_executor().send_variables(dict(request.get("variables") or {}))
            return {"ok": True}
        if op == "run":
            executor = self._ensure_executor()
            if executor.static_tools is None:
                executor.send_tools(self.tools)
            try:
                result = executor(request["code"])
            except Exception as exc:  # noqa: BLE001 - every failure of the step is the model's to see
                return {**failure(exc, str(executor.state.get("_print_outputs", ""))), "tool_calls": drain_tool_calls()}
            output, is_repr = portable(result.output)
            return {
                "ok": True, "output": output, "output_is_repr": is_repr,
                "logs": _cut(str(result.logs)), "is_final_answer": bool(result.is_final_answer),
                "tool_calls": drain_tool_calls(),
            }
        if op == "call":
            tool = self.tools.get(request.get("name"))
            if tool is None:
                return {"ok": False, "error": f"unknown tool {request.get('name')!r}", "error_type": "LookupError"}
            arguments = request.get("arguments")
            try:
                value = call_tool(tool, arguments)
            except Exception as exc:  # noqa: BLE001
                return {**failure(exc), "tool_calls": drain_tool_calls()}
            output, is_repr = portable(value)
            return {"ok": True, "output": output, "output_is_repr": is_repr, "tool_calls": drain_tool_calls()}
        if op == "validate":
            return validate(request)
        return {"ok": False, "error": f"unknown op {op!r}", "error_type": "ProtocolError"}


_channel: tuple[TextIO, TextIO] | None = None  # (requests, replies) of the session being served
_tool_calls: list[dict[str, Any]] = []  # made since the last reply


def timed(tool: Any, sink: list[dict[str, Any]] | None = None) -> Any:
    """A copy of ``tool`` with each call recorded (name, start, duration, outcome) in ``sink``
    (default: for the session's next reply). The copy leaves a shared instance (a package tool
    registered as an instance) as it was."""
    import copy
    import time

    tool = copy.copy(tool)
    forward = tool.forward
    calls = _tool_calls if sink is None else sink

    def recorded_forward(*args: Any, **kwargs: Any) -> Any:
        started, clock = time.time(), time.perf_counter()
        try:
            value = forward(*args, **kwargs)
        except BaseException as exc:
            _record(calls, tool.name, started, time.perf_counter() - clock, f"{type(exc).__name__}: {exc}")
            raise
        _record(calls, tool.name, started, time.perf_counter() - clock, None)
        return value

    tool.forward = recorded_forward
    return tool


def _record(calls: list[dict[str, Any]], name: str, started: float, seconds: float, error: str | None) -> None:
    if len(calls) < MAX_TOOL_CALLS:
        calls.append({"name": name, "started": started, "seconds": round(seconds, 6), "ok": error is None,
                            "error": None if error is None else error[:500]})


def call_tool(tool: Any, arguments: Any) -> Any:
    """Call a smolagents tool as an agent does: keyword arguments from a dict, else one argument."""
    if isinstance(arguments, dict):
        return tool(**arguments, sanitize_inputs_outputs=True)
    return tool(arguments, sanitize_inputs_outputs=True)


def drain_tool_calls(sink: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The tool calls recorded (in ``sink``, default the session's) since the last call, oldest first."""
    source = _tool_calls if sink is None else sink
    calls = list(source)
    source.clear()
    return calls


def host_call(name: str, arguments: Any) -> Any:
    """Call a tool that runs in the host, through the session's channel."""
    if _channel is None:
        raise RuntimeError("no host to call")
    requests, replies = _channel
    replies.write(json.dumps({"host_call": {"name": name, "arguments": arguments}}, default=str) + "\n")
    replies.flush()
    answer = json.loads(requests.readline() or "{}")
    if not answer.get("ok"):
        raise RuntimeError(str(answer.get("error") or "the host tool failed"))
    return answer.get("output")


def host_tool(spec: dict[str, Any]) -> Any:
    """A stand-in for a tool that runs in the host."""
    from smolagents import Tool

    class HostTool(Tool):
        skip_forward_signature_validation = True
        name = spec["name"]
        description = spec.get("description") or spec["name"]
        inputs = spec["inputs"]
        output_type = spec["output_type"]

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            arguments = kwargs if kwargs or not args else dict(zip(self.inputs, args))
            return host_call(self.name, arguments)

    return HostTool()


def build(spec: dict[str, Any]) -> Any:
    """A live tool from its spec: tenant source, a package tool found through mt-core's plugins,
    or a stand-in for a tool that runs in the host."""
    loader = _loader()
    init_kwargs = dict(spec.get("init_kwargs") or {})
    if spec.get("kind") == "host":
        return host_tool(spec)
    if spec.get("kind") == "package":
        from mt_core.plugins import package_tool

        try:
            return package_tool(spec["entry_point"], spec["name"]).build(init_kwargs)
        except ImportError as exc:
            raise LookupError(f"package tool {spec['name']!r} is not installed in this sandbox ({exc})") from None
    tool, _ = loader.build_tool(
        spec["name"], spec.get("description"), spec["code"], f"<tool {spec['name']}>",
        entry=spec.get("entry"), init_kwargs=init_kwargs,
    )
    return tool


def validate(request: dict[str, Any]) -> dict[str, Any]:
    """Build a tool from source as a run would; its metadata, or the error with its line."""
    loader = _loader()
    filename = f"<tool {request['name']}>"
    try:
        tool, candidate = loader.build_tool(
            request["name"], None, request["code"], filename, init_kwargs=dict(request.get("init_kwargs") or {})
        )
        return {"ok": True, **json.loads(json.dumps(loader.describe_tool(tool, candidate), default=str))}
    except BaseException as exc:  # noqa: BLE001 - any failure of tenant code is a validation answer
        if isinstance(exc, KeyboardInterrupt):
            raise
        message = str(exc) if isinstance(exc, loader.ToolSourceError) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, ModuleNotFoundError):
            where = raised_in(exc, filename)
            imports = "module-level imports" if where in (None, "<module>") else f"what {where} imports"
            message += (
                f"; {imports} must be installed where tools run. Declare third-party packages in `dependencies`"
            )
        line = getattr(exc, "line", None) if isinstance(exc, loader.ToolSourceError) else error_line(exc, filename)
        return {"ok": False, "error": message[:MAX_ERROR_CHARS], "error_type": type(exc).__name__, "line": line}


def raised_in(exc: BaseException, filename: str) -> str | None:
    """The function of the tool's source where ``exc`` was raised (``"<module>"`` for its body)."""
    names = [frame.name for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == filename]
    return names[-1] if names else None


def error_line(exc: BaseException, filename: str) -> int | None:
    """The line of the tool's source where ``exc`` was raised, if it was raised there."""
    if isinstance(exc, SyntaxError) and exc.filename == filename:
        return exc.lineno
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == filename]
    return lines[-1] if lines else None


def portable(value: Any) -> tuple[Any, bool]:
    """The value itself when it survives JSON, else its repr (cut to a sane size)."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, OverflowError, RecursionError):
        return _cut(repr(value)), True
    if len(text) > MAX_OUTPUT_CHARS:
        return _cut(repr(value)), True
    return value, False


def _cut(text: str) -> str:
    if len(text) <= MAX_OUTPUT_CHARS:
        return text
    return text[:MAX_OUTPUT_CHARS] + f"... [cut: {len(text) - MAX_OUTPUT_CHARS} more characters]"


def failure(exc: BaseException, logs: str = "") -> dict[str, Any]:
    """The reply for a failed request."""
    return {
        "ok": False, "error": (str(exc) or type(exc).__name__)[:MAX_ERROR_CHARS], "error_type": type(exc).__name__,
        "logs": logs[-MAX_OUTPUT_CHARS:],
    }


def serve(requests: TextIO, replies: TextIO) -> None:
    """Answer requests, one JSON line each, until ``requests`` ends."""
    global _channel
    _channel = (requests, replies)
    session = Session()  # imports smolagents now, before the first request arrives
    for line in requests:
        if not line.strip():
            continue
        try:
            reply = session.handle(json.loads(line))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001
            traceback.print_exc()
            reply = failure(exc)
        try:
            text = json.dumps(reply)
        except (TypeError, ValueError) as exc:
            text = json.dumps(failure(exc))
        replies.write(text + "\n")
        replies.flush()


def main() -> None:
    """Serve on stdin/stdout; whatever tenant code prints to fd 1 goes to stderr instead.

    ``MT_SESSION_MEMORY_BYTES`` caps this process's address space first (unconfined children).
    """
    memory = os.environ.pop("MT_SESSION_MEMORY_BYTES", None)
    if memory:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (int(memory), int(memory)))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    serve(sys.stdin, replies)


if __name__ == "__main__":
    main()
