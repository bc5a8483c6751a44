"""The built-in executors: ``local`` (the jail) and ``in-process`` (an operator's opt-in).

``local`` runs a run's code and tools in a process of the local jail (:mod:`mt_core.sandbox.jail`).
``in-process`` runs them in this process with smolagents' ``LocalPythonExecutor``, which is not a
security boundary: it exists for single-tenant installations that set ``MT_ALLOW_IN_PROCESS=1``
where no jail can run, and runs record it as their executor.
"""

from __future__ import annotations

from typing import Any

from mt_core.hookspecs import hookimpl


def jail_unavailable(settings: Any = None) -> str | None:
    """Why the local jail cannot run here, or ``None``."""
    from mt_core.sandbox.jail import unavailable_reason

    return unavailable_reason()


def validate_jail_options(options: dict[str, Any], settings: Any = None) -> None:
    """Raise ``ValueError`` for per-tenant options the jail refuses (see :func:`jail_limits`)."""
    from mt_core.sandbox.limits import jail_limits

    jail_limits(settings, options)


def build_jailed(context: Any) -> Any:
    """A jailed executor for one run."""
    from mt_core.sandbox.jail import jail_for_settings

    jail = jail_for_settings(context.settings, context.sandbox_modules)
    jail.warm()  # the first run of a process boots the jail: let it boot while this process imports smolagents
    from mt_core.sandbox.local import JailedExecutor

    return JailedExecutor(context, jail)


def build_in_process(context: Any) -> Any:
    """An in-process executor for one run (the operator opted in)."""
    from mt_core.sandbox.local import InProcessExecutor

    return InProcessExecutor(context)


def in_process_unavailable(settings: Any = None) -> str | None:
    """In-process execution is available only when the operator allowed it."""
    if settings is not None and getattr(settings, "allow_in_process", False):
        return None
    return "in-process execution of tenant code is off (MT_ALLOW_IN_PROCESS=1 turns it on, single-tenant only)"


@hookimpl
def mt_register_executors(register: Any) -> None:
    register("local", build_jailed, available=jail_unavailable, validate_options=validate_jail_options)
    register("in-process", build_in_process, available=in_process_unavailable)
