"""The process that runs inside a sandbox container: one run's code steps, one JSON line each.

Stdlib and smolagents only; it is copied into the image as a plain script, next to mt-core's
``tool_loader.py``. Requests arrive on stdin, replies leave on the original stdout; anything the
tools or the agent's code print to the real stdout goes to stderr instead, so it can never be
mistaken for a reply.

Requests (one JSON object per line) and their replies:

- ``{"op": "ping"}`` -> ``{"ok": true, "pid": ..., "python": "3.11.2"}``
- ``{"op": "setup", "authorized_imports": [...], "max_print_outputs_length": n}``
- ``{"op": "tools", "tools": [{"kind": "code", "name", "description", "code"} |
  {"kind": "package", "name", "distribution"}]}``
- ``{"op": "variables", "variables": {...}}``
- ``{"op": "run", "code": "..."}`` -> ``{"ok": true, "output": ..., "output_is_repr": bool,
  "logs": "...", "is_final_answer": bool}``

A failed request replies ``{"ok": false, "error": "...", "error_type": "...", "logs": "..."}``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import traceback
from typing import Any

MAX_OUTPUT_CHARS = 1_000_000


def _reply_channel():
    """Keep the real stdout for replies; point fd 1 and ``sys.stdout`` at stderr."""
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return channel


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
            # No in-process timeout: the host enforces it and kills this container.
            self.executor = self._executor_class(
                additional_authorized_imports=self.authorized_imports,
                max_print_outputs_length=self.max_print_outputs_length,
                timeout_seconds=None,
            )
        return self.executor

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
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

            tools = {"final_answer": FinalAnswerTool()}
            for spec in request.get("tools") or []:
                tools[spec["name"]] = _build(spec)
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
            except BaseException as exc:  # noqa: BLE001 - every failure is reported, the process lives on
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                return _failure(exc, str(executor.state.get("_print_outputs", "")))
            output, is_repr = _portable(result.output)
            return {
                "ok": True, "output": output, "output_is_repr": is_repr,
                "logs": str(result.logs), "is_final_answer": bool(result.is_final_answer),
            }
        return {"ok": False, "error": f"unknown op {op!r}", "error_type": "ProtocolError"}


def _build(spec: dict[str, Any]) -> Any:
    """A live tool from its description: tenant source, or a package tool found through mt-core."""
    if spec.get("kind") == "package":
        from mt_core.plugins import Plugins

        plugins = Plugins(allow=[spec["distribution"]] if spec.get("distribution") else None).load()
        entry = plugins.tools.get(spec["name"])
        if entry is None:
            raise LookupError(f"package tool {spec['name']!r} is not installed in the sandbox image")
        return entry.tool
    from mt_tool_loader import build_tool

    return build_tool(spec["name"], spec.get("description"), spec["code"], f"/tools/{spec['name']}.py")


def _portable(value: Any) -> tuple[Any, bool]:
    """The value itself when it survives JSON, else its repr (cut to a sane size)."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, OverflowError, RecursionError):
        return repr(value)[:MAX_OUTPUT_CHARS], True
    if len(text) > MAX_OUTPUT_CHARS:
        return repr(value)[:MAX_OUTPUT_CHARS], True
    return value, False


def _failure(exc: BaseException, logs: str = "") -> dict[str, Any]:
    return {"ok": False, "error": str(exc) or type(exc).__name__, "error_type": type(exc).__name__, "logs": logs}


def main() -> None:
    channel = _reply_channel()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    session = Session()  # imports smolagents now, before the first request arrives
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            reply = session.handle(request)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001
            traceback.print_exc()
            reply = _failure(exc)
        try:
            channel.write(json.dumps(reply) + "\n")
        except (TypeError, ValueError) as exc:
            channel.write(json.dumps(_failure(exc)) + "\n")
        channel.flush()


if __name__ == "__main__":
    main()
