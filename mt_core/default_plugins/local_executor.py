"""The ``local`` executor: smolagents' ``LocalPythonExecutor`` in this process.

Not a security boundary, and its timeout does not stop a runaway step (see docs/security.md).
"""

from __future__ import annotations

from typing import Any

from mt_core.hookspecs import hookimpl


def build_executor(context: Any) -> Any:
    """A fresh ``LocalPythonExecutor`` for one run."""
    from smolagents.local_python_executor import LocalPythonExecutor

    return LocalPythonExecutor(
        additional_authorized_imports=list(context.authorized_imports),
        timeout_seconds=max(1, int(context.timeout_seconds)),
    )


@hookimpl
def mt_register_executors(register: Any) -> None:
    register("local", build_executor)
