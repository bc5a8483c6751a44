"""Hook implementations: the ``docker`` executor and the ``mt sandbox`` commands. Imports nothing heavy."""

from __future__ import annotations

from typing import Any

from mt_core.hookspecs import hookimpl


def available() -> str | None:
    """``None`` when the Docker sandbox can run now, else why not (cached for a few seconds).

    The base image is read from ``DOCKER_IMAGE`` in the environment (default ``python:3.12-slim``).
    """
    try:
        from .config import load_config
        from .engine import availability
    except ImportError as exc:  # the docker package is missing
        return f"the Docker executor cannot load: {exc}"
    return availability(load_config().base_image)


def build_executor(context: Any) -> Any:
    """A fresh :class:`mt_docker.executor.DockerExecutor` for one run."""
    from .executor import DockerExecutor

    return DockerExecutor(context)


@hookimpl
def mt_register_executors(register: Any) -> None:
    register("docker", build_executor, available=available)


@hookimpl
def mt_register_commands(cli: Any) -> None:
    from .cli import sandbox

    cli.add_command(sandbox)
