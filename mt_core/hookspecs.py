"""The hooks a plugin may implement, and the ``register`` callbacks they receive.

Project name and entry-point group: ``mt_core``. The ``register`` callbacks are typed below
(:class:`RegisterTool`, :class:`RegisterLLMProvider`, :class:`RegisterExecutor`); docs/plugins.md
documents the same signatures, and a test keeps the three in step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, Union

import pluggy

if TYPE_CHECKING:
    from .fields import FieldSpec

# How a provider declares its fields: names (any string, number or boolean), or a mapping of
# name -> a type (str, int, float, bool), a tuple of types, a FieldSpec (type, range, choices) or None.
FieldDeclaration = Union[Iterable[str], Mapping[str, Union[type, tuple, "FieldSpec", None]]]

hookspec = pluggy.HookspecMarker("mt_core")
hookimpl = pluggy.HookimplMarker("mt_core")


class RegisterTool(Protocol):
    """``register(tool, *, name=None)``: add a package tool to the catalog.

    ``tool`` is a ``smolagents.Tool`` subclass (built per tenant, with the ``settings`` and
    ``secrets`` its ``__init__`` accepts), an instance, or a function decorated with
    ``@smolagents.tool``. ``name`` overrides the tool's own name.
    """

    def __call__(self, tool: Any, *, name: str | None = None) -> None: ...


class RegisterLLMProvider(Protocol):
    """``register(name, factory, *, required=(), optional=())``: add an LLM provider.

    ``factory(config)`` receives an :class:`mt_core.llms.LLMConfig` (with the decrypted key)
    and returns a ``smolagents.Model`` with its own retries turned off (mt-core's gateway
    retries); ``required`` lists the fields ``add_llm`` must be given, ``optional`` the other
    fields it accepts. Each is a list of names, or a mapping of name -> type (``str``, ``int``,
    ``float``, ``bool``) or :class:`mt_core.fields.FieldSpec` (type, range, choices), so that
    values are checked too.
    """

    def __call__(self, name: str, factory: Callable[[Any], Any], *, required: FieldDeclaration = (),
                 optional: FieldDeclaration = ()) -> None: ...


class RegisterExecutor(Protocol):
    """``register(name, factory, *, available=None, validate_options=None)``: add a code executor.

    ``factory(context)`` receives an :class:`mt_core.executors.ExecutorContext` and returns a
    ``smolagents.PythonExecutor`` that builds the run's tools from ``context.tools`` inside its
    sandbox (a tool-calling agent also calls its ``call_tool(name, arguments)``);
    ``available(settings)`` returns ``None`` when usable, else the reason it is not;
    ``validate_options(options, settings)`` raises ``ValueError`` for per-tenant options it refuses.
    """

    def __call__(self, name: str, factory: Callable[[Any], Any], *,
                 available: Callable[[Any], str | None] | None = None,
                 validate_options: Callable[[dict[str, Any], Any], None] | None = None) -> None: ...


@hookspec
def mt_register_tools(register: RegisterTool) -> None:
    """Register package tools. Called once when plugins load.

    Call ``register(tool)`` for each tool (see :class:`RegisterTool`). Tools land in the global
    catalog; a tenant must enable one before using it. The return value is ignored.
    """


@hookspec
def mt_register_llm_providers(register: RegisterLLMProvider) -> None:
    """Register LLM providers. Called once when plugins load.

    Call ``register(name, factory, required=..., optional=...)`` (see :class:`RegisterLLMProvider`).
    The return value is ignored.
    """


@hookspec
def mt_register_executors(register: RegisterExecutor) -> None:
    """Register code executors (sandboxes). Called once when plugins load.

    Call ``register(name, factory, available=..., validate_options=...)`` (see
    :class:`RegisterExecutor`). The return value is ignored.
    """


@hookspec
def mt_register_commands(cli: Any) -> None:
    """Add subcommands to the ``mt`` command. Called when the CLI starts, with its click group.

    A command reaches the installation the CLI built through click's context object
    (``click.get_current_context().obj``, an :class:`mt_core.MTCore`). The return value is ignored.
    """


@hookspec
def mt_agent_assembled(agent: Any, tenant: str, run_id: str) -> None:
    """Called after a run's agent is built and before it runs. Return value is ignored.

    ``agent`` is the fresh ``smolagents`` agent of this run only; a plugin may add step callbacks.
    """


@hookspec
def mt_run_finished(run: dict[str, Any], tenant: str) -> None:
    """Called after a run ends, successfully or not, with its stored run record. Return ignored."""
