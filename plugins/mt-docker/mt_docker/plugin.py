"""Hook implementations: the ``docker`` executor and the ``mt sandbox`` commands. Imports nothing heavy."""

from __future__ import annotations

from typing import Any

from mt_core.hookspecs import hookimpl


def available(settings: Any = None) -> str | None:
    """``None`` when the Docker sandbox can run now, else why not (cached for a few seconds).

    The base image is ``DOCKER_IMAGE`` (default ``python:3.12-slim``).
    """
    try:
        from .config import load_config
        from .engine import availability
    except ImportError as exc:  # the docker package is missing
        return f"the Docker executor cannot load: {exc}"
    return availability(load_config(settings).base_image)


def validate_options(options: dict[str, Any], settings: Any = None) -> None:
    """Raise ``ValueError`` (a ``SandboxConfigError``) naming a per-tenant option the sandbox refuses."""
    from .config import load_config

    load_config(settings, options=options, environ={})


def build_executor(context: Any) -> Any:
    """A fresh :class:`mt_docker.executor.DockerExecutor` for one run."""
    from .executor import DockerExecutor

    return DockerExecutor(context)


@hookimpl
def mt_register_executors(register: Any) -> None:
    register("docker", build_executor, available=available, validate_options=validate_options)


@hookimpl
def mt_register_commands(cli: Any) -> None:
    from .cli import sandbox

    cli.add_command(sandbox)
