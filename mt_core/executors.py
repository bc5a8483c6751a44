"""Code executors: what a sandbox receives for one run, and how a run picks its sandbox.

Tenant code runs in a sandbox, never in this process: the Docker sandbox when a run asks for it
and it is available, else the local jail (:mod:`mt_core.sandbox.jail`). Where neither can run,
tenant code is refused, unless the operator opted in to in-process execution for a
single-tenant installation (``MT_ALLOW_IN_PROCESS=1``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import SandboxFallbackWarning, SandboxUnavailableError, ValidationError
from .plugins import Executor, Plugins
from .user_warnings import warn

LOCAL = "local"
DOCKER = "docker"
IN_PROCESS = "in-process"
DOCKER_DISTRIBUTION = "mt-docker"
FALLBACK_LOCAL, FALLBACK_ERROR = "local", "error"  # MT_DOCKER_FALLBACK


@dataclass(frozen=True)
class ToolSpec:
    """One tool of a run: how a sandbox builds it, and what the agent's prompt shows of it.

    Args:
        id: the id the run was given (``tool_...`` or ``pkg:<name>``).
        name: the tool's name in the agent.
        description: its description in the agent.
        origin: ``"tenant"`` (source stored for the tenant) or ``"package"`` (an installed plugin's).
        inputs, output_type, output_schema: as smolagents' ``Tool`` has them.
        source: the tenant tool's source.
        entry: the definition of the source that is the tool.
        version: the tool's version (a number for tenant tools, the distribution's version for packages).
        dependencies: PEP 508 requirements of a tenant tool.
        distribution: the distribution of a package tool.
        entry_point: the plugin (``module:attr``) that registers a package tool; ``None`` for a
            plugin registered in this process, whose tools then run here (``host_tool``).
        host_tool: that plugin's registration (a ``PackageTool``), built per run in this process.
        init_kwargs: keyword arguments for a class tool's ``__init__`` (its tenant's settings).
        env: environment variables of the sandbox process that runs the tool (its tenant's secrets).
    """

    id: str
    name: str
    description: str
    origin: str
    inputs: dict[str, Any]
    output_type: str
    output_schema: dict[str, Any] | None = None
    source: str | None = None
    entry: str | None = None
    version: int | str | None = None
    dependencies: tuple[str, ...] = ()
    distribution: str | None = None
    entry_point: str | None = None
    host_tool: Any = field(default=None, repr=False, compare=False)
    init_kwargs: dict[str, Any] = field(default_factory=dict, repr=False)
    env: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def runs_in_host(self) -> bool:
        """Whether this tool runs in this process: a package tool of an in-process plugin."""
        return self.origin == "package" and self.entry_point is None and self.host_tool is not None

    def wire(self) -> dict[str, Any]:
        """The spec as the sandbox session reads it."""
        if self.runs_in_host:
            return {"kind": "host", "name": self.name, "description": self.description, "inputs": self.inputs,
                    "output_type": self.output_type}
        if self.origin == "package":
            return {"kind": "package", "name": self.name, "distribution": self.distribution,
                    "entry_point": self.entry_point, "init_kwargs": dict(self.init_kwargs)}
        return {"kind": "code", "name": self.name, "description": self.description, "code": self.source,
                "entry": self.entry, "init_kwargs": dict(self.init_kwargs)}


@dataclass(frozen=True)
class ExecutorContext:
    """What an executor factory gets to build one run's ``smolagents.PythonExecutor``.

    Args:
        tenant: the tenant the run belongs to.
        run_id: the run's id (label containers and logs with it).
        tools: the run's tools, as :class:`ToolSpec`.
        authorized_imports: modules the agent's code may import.
        timeout_seconds: the limit for one code step (or tool call).
        settings: the :class:`~mt_core.config.Settings` in force.
        options: per-tenant executor options (limits, network...).
        env: environment variables for the sandbox process (the tools' secrets and the operator's
            allow-listed variables); nothing else of this process's environment.
        max_print_chars: how much of what a step prints is kept for the model.
        sandbox_modules: top-level modules of the installed plugins (a sandbox that shares this
            machine's Python, like the local jail, makes them importable for package tools).
        on_tool_call: called with each tool call the sandbox reports (``name``, ``started`` Unix
            time, ``seconds``, ``ok``, ``error``), for usage records and traces; may be ``None``.
    """

    tenant: str
    run_id: str
    tools: tuple[ToolSpec, ...]
    authorized_imports: tuple[str, ...]
    timeout_seconds: float
    settings: Any
    options: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict, repr=False)
    max_print_chars: int = 50_000
    sandbox_modules: tuple[str, ...] = ()
    on_tool_call: Any = field(default=None, repr=False, compare=False)


def choose_executor(plugins: Plugins, use_docker: bool, settings: Any) -> Executor:
    """The executor of a run: Docker when asked for and available, else the local jail (see
    :func:`docker_fallback`), else in-process when the operator allowed it, else
    :class:`SandboxUnavailableError`."""
    if use_docker:
        docker = plugins.executors.get(DOCKER)
        reason = missing_docker_reason(plugins) if docker is None else docker.unavailable_reason(settings)
        if docker is not None and reason is None:
            return docker
        local = local_executor(plugins, settings)
        docker_fallback(f"the Docker sandbox is unavailable ({reason})", local.name, settings)
        return local
    return local_executor(plugins, settings)


def docker_fallback(why: str, local: str, settings: Any) -> None:
    """A run asked for the Docker sandbox and would run in the ``local`` executor because ``why``:
    warn with a :class:`SandboxFallbackWarning`, or raise :class:`SandboxUnavailableError` when the
    installation is fail-closed (``MT_DOCKER_FALLBACK=error``)."""
    if getattr(settings, "docker_fallback", FALLBACK_LOCAL) == FALLBACK_ERROR:
        raise SandboxUnavailableError(
            f"use_docker=True and MT_DOCKER_FALLBACK=error, but {why}; nothing ran. Fix that, or pass"
            f" use_docker=False to run this query in the {local} executor."
        )
    warn(f"use_docker=True but {why}; running in the {local} executor instead"
         " (MT_DOCKER_FALLBACK=error refuses instead).", SandboxFallbackWarning)


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


def local_executor(plugins: Plugins, settings: Any) -> Executor:
    """The local jail, or in-process execution when the jail cannot run and the operator allowed it."""
    jail = plugins.executors[LOCAL]
    reason = jail.unavailable_reason(settings)
    if reason is None:
        return jail
    in_process = plugins.executors[IN_PROCESS]
    if in_process.unavailable_reason(settings) is None:  # the operator allowed it (MT_ALLOW_IN_PROCESS=1)
        return in_process
    raise SandboxUnavailableError(f"tenant code cannot run: {reason}")


def check_executor_options(plugins: Plugins, options: dict[str, Any], settings: Any) -> dict[str, Any]:
    """Validate per-tenant executor options with every executor that checks them; the clean options."""
    merged = {name: value for name, value in options.items() if value is not None}
    for name, value in merged.items():
        if not isinstance(value, (str, int, float, bool)):
            raise ValidationError(name, f"must be a string, number or boolean, got {type(value).__name__}")
    for executor in plugins.executors.values():
        if executor.validate_options is not None:
            try:
                executor.validate_options(merged, settings)
            except ValueError as exc:
                raise ValidationError("executor_options", f"{executor.name}: {exc}") from None
    return merged
