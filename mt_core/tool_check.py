"""Validation of tenant tool code in a child process, so the caller never runs tenant code.

:func:`check_in_child` (parent side) starts ``python -m mt_core.tool_check`` in a new session
with a clean environment, a temporary working directory and a time limit; :func:`main` (child
side) caps its own memory and CPU, builds the tool with smolagents and prints one JSON line:
``{"ok": true, "inputs", "output_type", "description"}`` or ``{"ok": false, "error", "line"}``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
from typing import Any

from .errors import ToolValidationError

CHECK_MEMORY_BYTES = 1536 * 1024 * 1024


def check_in_child(name: str, source: str, *, timeout: float) -> dict[str, Any]:
    """Build the tool in a child process and return its metadata, or raise ToolValidationError."""
    request = json.dumps(
        {"name": name, "source": source, "filename": f"<tool {name}>", "memory": CHECK_MEMORY_BYTES,
         "cpu": int(timeout) + 1}
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        "LANG": "C.UTF-8",
    }
    with tempfile.TemporaryDirectory(prefix="mt-tool-check-") as workdir:
        env["HOME"] = env["TMPDIR"] = workdir
        proc = subprocess.Popen(
            [*sandbox_prefix(workdir), sys.executable, "-s", "-m", "mt_core.tool_check"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=workdir, env=env, start_new_session=True, text=True, encoding="utf-8", errors="replace",
        )
        try:
            stdout, stderr = proc.communicate(request, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise ToolValidationError(
                f"building the tool took longer than {timeout:g} s (does its module body loop or block?)"
            ) from None
        finally:
            _kill_group(proc)
    answer = _last_json_line(stdout)
    if answer is None:
        last = (stderr.strip().splitlines() or [""])[-1][:300]
        raise ToolValidationError(
            f"the tool's module body ended the validation process (exit code {proc.returncode})"
            + (f": {last}" if last else "")
        )
    if not answer.get("ok"):
        raise ToolValidationError(str(answer.get("error")), line=answer.get("line"))
    return answer


def sandbox_prefix(workdir: str) -> list[str]:
    """The bubblewrap command line that confines the check, when ``bwrap`` is installed.

    Inside it the whole filesystem is read-only except the check's own temporary working
    directory (its HOME and TMPDIR), and the check has its own (empty) network, process and IPC
    namespaces, so a
    module body that deletes files or phones home cannot. Without bwrap the check still runs in
    a separate process with memory, CPU and time limits, but with the caller's file access.
    ``MT_TOOL_CHECK_SANDBOX=none`` turns bwrap off.
    """
    bwrap = shutil.which("bwrap")
    if bwrap is None or os.environ.get("MT_TOOL_CHECK_SANDBOX") == "none":
        return []
    return [
        bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
        "--bind", workdir, workdir, "--unshare-all", "--die-with-parent", "--new-session",
        "--cap-drop", "ALL", "--",
    ]


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """Kill the child and anything it started (it leads its own session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _last_json_line(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None


def _limit_self(memory: int, cpu_seconds: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _error_line(exc: BaseException, filename: str) -> int | None:
    if isinstance(exc, SyntaxError) and exc.filename == filename:
        return exc.lineno
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == filename]
    return lines[-1] if lines else None


def main() -> int:
    """Validate one tool from stdin; the answer is on stdout, the exit code is always 0."""
    request = json.loads(sys.stdin.read())
    filename = request["filename"]
    _limit_self(request["memory"], request["cpu"])
    try:
        import smolagents  # noqa: F401 - imported before tenant code runs, under the limits

        from mt_core.tool_loader import build_tool, describe_tool

        tool = build_tool(request["name"], None, request["source"], filename)
        answer = {"ok": True, **describe_tool(tool)}
    except BaseException as exc:  # noqa: BLE001 - any failure of tenant code is a validation answer
        message = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, ModuleNotFoundError):
            message += (
                "; module-level imports must be installed here. Declare third-party packages in"
                " `dependencies` and import them inside the function"
            )
        answer = {"ok": False, "error": message, "line": _error_line(exc, filename)}
    sys.stdout.write("\n" + json.dumps(answer, default=str) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
