"""Sandbox images: built locally from the base image, everything installed from host-downloaded wheels.

Two layers, each cached by a tag derived from its content:

- the runtime image ``mt-sandbox:<key>``: base image + a venv with smolagents (the host's version)
  + the step server and mt-core's tool loader;
- per distinct set of extra requirements (tool ``dependencies``, package tools' distributions),
  an image ``FROM`` the runtime with those installed.

The container never needs network: the host runs ``pip download --only-binary=:all:`` for the
image's Python version and platform, and the image installs with ``--no-index``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from mt_core.dependencies import relevant_pip_lines

from .errors import ImageBuildError, SandboxConfigError

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]
REPOSITORY = "mt-sandbox"
IMAGE_LABEL = "mt-core.sandbox-image"
LAYOUT_VERSION = "1"  # bump when the Dockerfiles below change
PIP_TIMEOUT = 900

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()
_platforms: dict[str, tuple[str, list[str]]] = {}


def stderr_progress(line: str) -> None:
    """The default progress display: one line per build event on stderr."""
    print(f"mt sandbox: {line}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """Where downloaded wheels are kept between builds (``MT_CACHE_DIR``, else the user cache)."""
    base = os.environ.get("MT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "mt-core"
    )
    return Path(base) / "sandbox-wheels"


def check_requirements(requirements: Iterable[str]) -> list[str]:
    """Validated PEP 508 requirement strings (no URLs, no pip options), normalized and sorted."""
    from packaging.requirements import InvalidRequirement, Requirement

    result = set()
    for item in requirements:
        if not isinstance(item, str) or not item.strip() or item.strip().startswith("-"):
            raise SandboxConfigError(f"{item!r} is not a requirement string")
        try:
            requirement = Requirement(item.strip())
        except InvalidRequirement as exc:
            raise SandboxConfigError(f"{item!r} is not a PEP 508 requirement ({exc})") from None
        if requirement.url:
            raise SandboxConfigError(f"{item!r}: direct URL references are not allowed")
        result.add(str(requirement))
    return sorted(result)


def _source(module: str) -> bytes:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ImageBuildError(f"cannot find the source of {module}")
    return Path(spec.origin).read_bytes()


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _lock_for(key: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def _exists(docker_client: Any, tag: str) -> bool:
    import docker.errors

    try:
        docker_client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def runtime_tag(docker_client: Any, base_image: str) -> str:
    """The tag of the runtime image for ``base_image`` (built or not)."""
    base_id = docker_client.images.get(base_image).id
    return f"{REPOSITORY}:{_key(LAYOUT_VERSION, base_id, metadata.version('smolagents'), _source_digest())}"


def _source_digest() -> str:
    return hashlib.sha256(_source("mt_core.sandbox.session") + _source("mt_core.tool_loader")).hexdigest()


def ensure_image(
    docker_client: Any, base_image: str, requirements: Iterable[str] = (), local_distributions: Iterable[str] = (),
    *, progress: Progress | None = stderr_progress, force: bool = False,
) -> str:
    """The tag of a sandbox image with ``requirements`` installed, building what is missing.

    Args:
        base_image: a local image with ``python3`` (and its ``venv`` module).
        requirements: PEP 508 strings installed from wheels.
        local_distributions: installed distributions to ship as wheels built from their source
            (package tools installed from a directory); they are added to ``requirements`` pinned.
        progress: called with one line per build event (``None`` for silence).
        force: rebuild even when an image with the same content exists.
    """
    import docker.errors

    report = progress or (lambda line: None)
    requirements = check_requirements(requirements)
    try:
        runtime = runtime_tag(docker_client, base_image)
    except docker.errors.ImageNotFound:
        raise ImageBuildError(f"base image {base_image!r} is not present locally") from None
    with _lock_for(runtime):
        if force or not _exists(docker_client, runtime):
            _build_runtime(docker_client, base_image, runtime, report)
    local = sorted(set(local_distributions))
    if not requirements and not local:
        return runtime
    if local and "mt-core" not in local:
        local.append("mt-core")  # package tools are found in the container through mt-core's plugins
    pins = [f"{name}=={metadata.version(name)}" for name in local]
    tag = f"{REPOSITORY}:{_key(LAYOUT_VERSION, runtime, requirements, pins)}"
    with _lock_for(tag):
        if force or not _exists(docker_client, tag):
            _build_extras(docker_client, base_image, runtime, tag, requirements, local, pins, report)
    return tag


def _image_platform(docker_client: Any, base_image: str, report: Progress) -> tuple[str, list[str]]:
    """The base image's Python version and the wheel platform tags it accepts."""
    if base_image in _platforms:
        return _platforms[base_image]
    probe = (
        "import json, platform, sys; "
        "print(json.dumps(['%d.%d' % sys.version_info[:2], platform.machine(), platform.libc_ver()]))"
    )
    try:
        raw = docker_client.containers.run(
            base_image, ["python3", "-c", probe], remove=True, network_mode="none", stdout=True, stderr=True
        )
    except Exception as exc:  # noqa: BLE001
        raise ImageBuildError(f"base image {base_image!r} has no working python3: {exc}") from exc
    version, machine, (libc, libc_version) = json.loads(raw.decode().strip().splitlines()[-1])
    if libc != "glibc":
        raise ImageBuildError(f"base image {base_image!r} uses {libc or 'an unknown libc'}; a glibc image is needed")
    major, minor = (int(x) for x in libc_version.split(".")[:2])
    tags = [f"manylinux_{major}_{m}_{machine}" for m in range(minor, 4, -1)]
    tags += [f"manylinux2014_{machine}", f"manylinux2010_{machine}", f"manylinux1_{machine}"]
    report(f"base image {base_image}: Python {version}, {machine}, glibc {libc_version}")
    _platforms[base_image] = (version, tags)
    return version, tags


def _pip(args: list[str], report: Progress, what: str) -> None:
    command = [sys.executable, "-m", "pip", *args]
    report(f"{what}: pip {' '.join(args[:1])} ...")
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    output: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        line = line.rstrip()
        if line.startswith(("Collecting", "Saved", "Successfully", "Building", "Created wheel")):
            report(f"  {line}")
        output = (output + [line])[-200:]
    if process.wait(timeout=PIP_TIMEOUT) != 0:
        raise ImageBuildError(f"{what} failed: " + "; ".join(relevant_pip_lines("\n".join(output))))


def _download(dest: Path, requirements: list[str], version: str, platforms: list[str],
              find_links: Path | None, report: Progress) -> None:
    args = ["download", "--only-binary=:all:", "--python-version", version, "-d", str(dest)]
    for tag in platforms:
        args += ["--platform", tag]
    if find_links is not None:
        args += ["--find-links", str(find_links)]
    _pip(args + requirements, report, f"downloading wheels for Python {version}")


def _local_wheel(name: str, dest: Path, report: Progress) -> None:
    """Build a wheel of an installed distribution from the directory it was installed from."""
    # The first distribution of that name that pip recorded as installed from a directory: a
    # source checkout on sys.path can carry a bare *.egg-info of the same name that would hide it.
    directs = (dist.read_text("direct_url.json") for dist in metadata.distributions(name=name))
    direct = next((text for text in directs if text), None)
    url = json.loads(direct).get("url", "") if direct else ""
    if not url.startswith("file://"):
        # installed from an index: the wheel is downloaded like any requirement
        return
    path = url[len("file://"):]
    _pip(["wheel", "--no-deps", "-w", str(dest), path], report, f"building a wheel of {name}")


def _docker_build(docker_client: Any, context: Path, tag: str, report: Progress) -> None:
    report(f"docker build {tag}")
    log: list[str] = []
    try:
        for chunk in docker_client.api.build(
            path=str(context), tag=tag, rm=True, forcerm=True, decode=True, labels={IMAGE_LABEL: "1"},
            network_mode="none",
        ):
            if "error" in chunk:
                pip_failed = any(line.startswith("ERROR:") for line in log)  # a RUN pip install step
                said = "; ".join(relevant_pip_lines("\n".join(log))) if pip_failed else ""
                raise ImageBuildError(
                    f"docker build {tag} failed: {chunk['error'].strip()}" + (f" (pip: {said})" if said else "")
                )
            line = str(chunk.get("stream", "")).strip()
            log = (log + line.splitlines())[-200:]
            if line.startswith("Step ") or line.startswith("Successfully"):
                report(f"  {line}")
    except ImageBuildError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ImageBuildError(f"docker build {tag} failed: {exc}") from exc


def _build_runtime(docker_client: Any, base_image: str, tag: str, report: Progress) -> None:
    version, platforms = _image_platform(docker_client, base_image, report)
    wheels = cache_dir() / f"py{version}"
    wheels.mkdir(parents=True, exist_ok=True)
    smolagents = f"smolagents=={metadata.version('smolagents')}"
    _download(wheels, [smolagents], version, platforms, None, report)
    with tempfile.TemporaryDirectory(prefix="mt-sandbox-build-") as tmp:
        context = Path(tmp)
        shutil.copytree(wheels, context / "wheels")
        (context / "server.py").write_bytes(_source("mt_core.sandbox.session"))
        (context / "mt_tool_loader.py").write_bytes(_source("mt_core.tool_loader"))
        (context / "Dockerfile").write_text(
            f"FROM {base_image}\n"
            "COPY wheels /opt/mt/wheels\n"
            "RUN python3 -m venv /opt/mt/venv \\\n"
            f" && /opt/mt/venv/bin/python -m pip install --no-cache-dir --no-index --find-links /opt/mt/wheels '{smolagents}' \\\n"
            " && rm -rf /opt/mt/wheels\n"
            "COPY server.py mt_tool_loader.py /opt/mt/\n"
            "RUN /opt/mt/venv/bin/python -m compileall -q /opt/mt >/dev/null \\\n"
            " && /opt/mt/venv/bin/python -c 'import smolagents.local_python_executor, smolagents.default_tools'\n"
            "WORKDIR /tmp\n"
        )
        _docker_build(docker_client, context, tag, report)
    report(f"built {tag}")


def _build_extras(docker_client: Any, base_image: str, runtime: str, tag: str, requirements: list[str],
                  local: list[str], pins: list[str], report: Progress) -> None:
    version, platforms = _image_platform(docker_client, base_image, report)
    with tempfile.TemporaryDirectory(prefix="mt-sandbox-build-") as tmp:
        context = Path(tmp)
        wheels = context / "wheels"
        wheels.mkdir()
        for name in local:
            _local_wheel(name, wheels, report)
        _download(wheels, requirements + pins, version, platforms, wheels, report)
        quoted = " ".join(f"'{r}'" for r in requirements + pins)
        (context / "Dockerfile").write_text(
            f"FROM {runtime}\n"
            "COPY wheels /opt/mt/wheels\n"
            f"RUN /opt/mt/venv/bin/python -m pip install --no-cache-dir --no-index --find-links /opt/mt/wheels {quoted} \\\n"
            " && rm -rf /opt/mt/wheels\n"
        )
        _docker_build(docker_client, context, tag, report)
    report(f"built {tag}")


def sandbox_images(docker_client: Any) -> list[Any]:
    """Every sandbox image on the engine."""
    return docker_client.images.list(filters={"label": IMAGE_LABEL})


def requirements_for(tools: Iterable[Any]) -> tuple[list[str], list[str]]:
    """The extra requirements of a run's tools (``ToolSpec``) and the package distributions to install."""
    requirements: list[str] = []
    distributions: list[str] = []
    for spec in tools:
        requirements += list(spec.dependencies or ())
        if spec.origin == "package" and spec.distribution:
            distributions.append(spec.distribution)
    return check_requirements(requirements), sorted(set(distributions))

