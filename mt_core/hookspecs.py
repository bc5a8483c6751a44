"""The hooks a plugin may implement. Project name and entry-point group: ``mt_core``."""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("mt_core")
hookimpl = pluggy.HookimplMarker("mt_core")


@hookspec
def mt_register_tools(register: Any) -> None:
    """Register package tools. Called once when plugins load.

    Call ``register(tool)`` for each tool: a ``smolagents.Tool`` subclass, an instance, or a
    function decorated with ``@smolagents.tool``. Optional keyword ``name=`` overrides the tool's
    name. Tools land in the global catalog; a tenant must enable one before using it.
    """


@hookspec
def mt_register_llm_providers(register: Any) -> None:
    """Register LLM providers. Called once when plugins load.

    Call ``register(name, factory, fields=..., required=...)``: ``factory(config)`` receives an
    :class:`mt_core.llms.LLMConfig` (with the decrypted key) and returns a ``smolagents.Model``;
    ``required`` lists the configuration fields ``add_llm`` must be given.
    """


@hookspec
def mt_register_executors(register: Any) -> None:
    """Register code executors (sandboxes). Called once when plugins load.

    Call ``register(name, factory, available=None, validate_options=None)``: ``factory(context)``
    receives an :class:`mt_core.executors.ExecutorContext` and returns a
    ``smolagents.PythonExecutor``; ``available(settings)`` returns ``None`` when usable, else the
    reason it is not; ``validate_options(options)`` raises ``ValueError`` for per-tenant options
    this executor would refuse.
    """


@hookspec
def mt_register_commands(cli: Any) -> None:
    """Add subcommands to the ``mt`` command. Called when the CLI starts, with its click group."""


@hookspec
def mt_agent_assembled(agent: Any, tenant: str, run_id: str) -> None:
    """Called after a run's agent is built and before it runs. Return value is ignored.

    ``agent`` is the fresh ``smolagents`` agent of this run only; a plugin may add step callbacks.
    """


@hookspec
def mt_run_finished(run: dict[str, Any], tenant: str) -> None:
    """Called after a run ends, successfully or not, with its stored run record. Return ignored."""
