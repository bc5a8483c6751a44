"""The sandbox interface: what an executor factory receives, and how a run picks its executor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .plugins import Executor, Plugins
from .user_warnings import warn

LOCAL = "local"
DOCKER = "docker"


@dataclass
class ExecutorContext:
    """What an executor factory gets to build one run's ``smolagents.PythonExecutor``.

    Args:
        tenant: the tenant the run belongs to.
        run_id: the run's id (label containers and logs with it).
        tools: the run's tool records (id, name, source, dependencies, origin...) as stored.
        authorized_imports: modules the agent's code may import.
        timeout_seconds: the limit for one code step.
        settings: the :class:`~mt_core.config.Settings` in force.
        options: per-tenant executor options (limits, network...).
    """

    tenant: str
    run_id: str
    tools: list[dict[str, Any]]
    authorized_imports: list[str]
    timeout_seconds: float
    settings: Any
    options: dict[str, Any] = field(default_factory=dict)


class ExecutorAbort(BaseException):
    """Raised by an executor to end the run now (its sandbox died, or a step ran out of time).

    A ``BaseException`` on purpose: smolagents turns every ``Exception`` an executor raises into a
    step error and lets the model try again, which would re-run a runaway step. ``run_query``
    catches it and records the run (status ``timeout`` for :class:`StepTimeout`, else ``failed``).
    """


class StepTimeout(ExecutorAbort):
    """A code step ran past ``ExecutorContext.timeout_seconds`` and was stopped from the host."""


class SandboxFallbackWarning(RuntimeWarning):
    """A run asked for the Docker sandbox and ran locally instead; the message says why."""


def choose_executor(plugins: Plugins, use_docker: bool, settings: Any) -> Executor:
    """The Docker executor when asked for and available, else the local one (warning why)."""
    if use_docker:
        docker = plugins.executors.get(DOCKER)
        reason = "no Docker executor plugin is installed" if docker is None else docker.unavailable_reason(settings)
        if docker is not None and reason is None:
            return docker
        warn(
            f"use_docker=True but the Docker sandbox is unavailable ({reason}); running locally. "
            "The local executor is not a security boundary.",
            SandboxFallbackWarning,
        )
    return plugins.executors[LOCAL]
