"""``mt sandbox``: build the sandbox image, show the sandbox's state, remove leftover containers.

Every command gets the installation the ``mt`` command built from ``--home`` and the environment
as click's context object (``@click.pass_obj``).
"""

from __future__ import annotations

from typing import Any

import click
from mt_core.cli import dump_json, json_option

from .errors import SandboxError


@click.group()
def sandbox() -> None:
    """The Docker sandbox (plugin mt-docker)."""


@sandbox.command()
@click.option("--requirement", "-r", "requirements", multiple=True, help="Extra PEP 508 requirement (repeatable).")
@click.option("--package-tools/--no-package-tools", default=False,
              help="Also install the distributions of every installed package tool.")
@click.option("--force", is_flag=True, help="Rebuild even if an image with the same content exists.")
@click.pass_obj
def build(core: Any, requirements: tuple[str, ...], package_tools: bool, force: bool) -> None:
    """Build the sandbox image from DOCKER_IMAGE (pulled when absent and a registry is reachable)."""
    from . import engine, images
    from .config import load_config

    config = load_config(core.settings)
    try:
        checked = images.check_requirements(requirements)  # invalid strings stop here, before any work
        docker_client = engine.client()
        docker_client.ping()
        _ensure_base(docker_client, config.base_image)
        distributions: list[str] = []
        if package_tools:
            distributions = sorted({t.distribution for t in core.plugins.tools.values() if t.distribution})
        tag = images.ensure_image(docker_client, config.base_image, checked, distributions, force=force)
    except SandboxError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - engine errors, shown as one line
        raise click.ClickException(f"the Docker engine failed: {engine.first_line(exc)}") from None
    engine.forget_availability()
    click.echo(tag)


def _ensure_base(docker_client: Any, image: str) -> None:
    import docker.errors

    from .engine import local_base_image_hint

    try:
        docker_client.images.get(image)
    except docker.errors.ImageNotFound:
        click.echo(f"mt sandbox: pulling {image}", err=True)
        try:
            docker_client.images.pull(image)
        except docker.errors.APIError as exc:
            raise SandboxError(
                f"base image {image!r} is not present and cannot be pulled ({exc.explanation or exc});"
                f" {local_base_image_hint(docker_client)}"
            ) from None


@sandbox.command()
@json_option
@click.pass_obj
def status(core: Any, as_json: bool) -> None:
    """Whether the sandbox is available, its images and its containers."""
    from . import engine, images
    from .config import load_config

    config = load_config(core.settings)
    reason = engine.availability(config.base_image)
    info = {"available": reason is None, "reason": reason, "base_image": config.base_image,
            "docker_host": engine.docker_host(), "images": [], "containers": []}
    if reason is None:
        docker_client = engine.client()
        info["images"] = sorted(tag for image in images.sandbox_images(docker_client) for tag in image.tags)
        info["containers"] = [
            {"id": c["Id"][:12], "state": c["State"], "labels": {k: v for k, v in c["Labels"].items()
                                                               if k.startswith("mt-core.")}}
            for c in engine.sandbox_containers(docker_client)
        ]
    if as_json:
        click.echo(dump_json(info))
        return
    click.echo(f"sandbox: {'available' if reason is None else 'unavailable: ' + reason}")
    click.echo(f"base image: {config.base_image} (engine {info['docker_host']})")
    for tag in info["images"]:
        click.echo(f"image: {tag}")
    click.echo(f"containers: {len(info['containers'])}")


@sandbox.command()
def cleanup() -> None:
    """Remove sandbox containers whose owning process is gone."""
    from . import engine

    try:
        removed = engine.remove_stale(engine.client())
    except Exception as exc:  # noqa: BLE001
        raise click.ClickException(f"the Docker engine failed: {engine.first_line(exc)}") from None
    click.echo(f"removed {removed} stale sandbox container(s)")
