"""The sandbox interface: what an executor factory receives, and how a run picks its executor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import SandboxUnavailableError
from .plugins import Executor, Plugins
from .user_warnings import warn

LOCAL = "local"
DOCKER = "docker"
DOCKER_DISTRIBUTION = "mt-docker"
FALLBACK_LOCAL, FALLBACK_ERROR = "local", "error"  # MT_DOCKER_FALLBACK


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
    """The Docker executor when asked for and available, else the local one (see :func:`local_fallback`)."""
    if use_docker:
        docker = plugins.executors.get(DOCKER)
        reason = missing_docker_reason(plugins) if docker is None else docker.unavailable_reason(settings)
        if docker is not None and reason is None:
            return docker
        local_fallback(f"the Docker sandbox is unavailable ({reason})", settings)
    return plugins.executors[LOCAL]


def local_fallback(why: str, settings: Any) -> None:
    """A run asked for the Docker sandbox and would run locally because ``why``: warn with a
    :class:`SandboxFallbackWarning`, or raise :class:`SandboxUnavailableError` when the installation
    is fail-closed (``MT_DOCKER_FALLBACK=error``)."""
    if getattr(settings, "docker_fallback", FALLBACK_LOCAL) == FALLBACK_ERROR:
        raise SandboxUnavailableError(
            f"use_docker=True and MT_DOCKER_FALLBACK=error, but {why}; nothing ran. Fix that, or pass"
            " use_docker=False to run this query with the local executor, which is not a security boundary."
        )
    warn(
        f"use_docker=True but {why}; running locally. The local executor is not a security boundary"
        " (MT_DOCKER_FALLBACK=error refuses instead).",
        SandboxFallbackWarning,
    )


def missing_docker_reason(plugins: Plugins) -> str:
    """Why no ``docker`` executor is registered, and which package provides it."""
    from importlib import metadata

    try:
        metadata.distribution(DOCKER_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return (
            f"no Docker executor plugin is installed: install {DOCKER_DISTRIBUTION} with"
            " `pip install ./plugins/mt-docker` from the mt-core repository (`make install` does it)"
        )
    if plugins.allow is not None and DOCKER_DISTRIBUTION not in plugins.allow:
        return f"{DOCKER_DISTRIBUTION} is installed but MT_LOAD_PLUGINS does not name it"
    failed = [info.error for info in plugins.infos.values() if info.distribution == DOCKER_DISTRIBUTION and info.error]
    return f"the {DOCKER_DISTRIBUTION} plugin failed to load: {failed[0]}" if failed else (
        f"{DOCKER_DISTRIBUTION} is installed but registered no executor named {DOCKER!r} (see `mt plugins`)"
    )
