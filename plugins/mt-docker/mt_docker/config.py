"""Sandbox settings: defaults, environment variables and per-tenant options, validated."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from .errors import SandboxConfigError

DEFAULT_IMAGE = "python:3.12-slim"
SANDBOX_USER = "65534:65534"  # nobody:nogroup, present in every Debian-based image
NEVER_PASSED = frozenset({"LLM_API_KEY", "MT_MASTER_KEY"})
_SIZE = re.compile(r"^\d+[bkmg]?$", re.IGNORECASE)

# option name -> environment variable holding its installation-wide default
ENV_NAMES = {
    "memory": "MT_DOCKER_MEMORY",
    "cpus": "MT_DOCKER_CPUS",
    "pids_limit": "MT_DOCKER_PIDS_LIMIT",
    "tmpfs_size": "MT_DOCKER_TMPFS_SIZE",
    "network": "MT_DOCKER_NETWORK",
    "pool_size": "MT_DOCKER_POOL_SIZE",
}


@dataclass(frozen=True)
class SandboxConfig:
    """How one run's container is made.

    Args:
        base_image: the image the sandbox image is built from (``DOCKER_IMAGE``).
        memory: memory limit, swap included (``"256m"``).
        cpus: CPU limit in cores.
        pids_limit: most processes and threads in the container.
        tmpfs_size: size of the writable ``/tmp`` (the root filesystem is read-only).
        network: ``"none"`` (default), or a Docker network name when the tenant may reach out.
        pool_size: warm containers kept ready per distinct configuration (0 disables the pool).
        env: variables passed into the container (only those named in ``DOCKER_ENV_VARS``).
    """

    base_image: str = DEFAULT_IMAGE
    memory: str = "256m"
    cpus: float = 1.0
    pids_limit: int = 64
    tmpfs_size: str = "64m"
    network: str = "none"
    pool_size: int = 1
    env: tuple[tuple[str, str], ...] = ()

    def container_key(self, image: str) -> str:
        """Identifies containers that are interchangeable: same image, limits and environment."""
        fields = {k: v for k, v in asdict(self).items() if k != "pool_size"}
        payload = json.dumps([image, fields], sort_keys=True, default=list)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def load_config(settings: Any = None, options: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None) -> SandboxConfig:
    """The configuration for one run: defaults, then ``MT_DOCKER_*`` variables, then per-tenant options.

    Args:
        settings: mt-core ``Settings`` (unused today; the sandbox reads its own variables).
        options: per-tenant overrides (``ExecutorContext.options``), same names as the fields.
        environ: the environment to read (default ``os.environ``).
    """
    env = os.environ if environ is None else environ
    image = env.get("DOCKER_IMAGE") or DEFAULT_IMAGE
    names = [n.strip() for n in env.get("DOCKER_ENV_VARS", "").split(",") if n.strip()]
    secret = env.get("LLM_API_KEY")
    passed = tuple(
        (name, env[name]) for name in names
        if name in env and name not in NEVER_PASSED and not (secret and env[name] == secret)
    )
    config = SandboxConfig(base_image=image, env=passed)
    for name, variable in ENV_NAMES.items():
        if env.get(variable):
            config = _apply(config, name, env[variable], source=variable)
    for name, value in (options or {}).items():
        if name not in ENV_NAMES:
            raise SandboxConfigError(f"unknown sandbox option {name!r} (known: {', '.join(sorted(ENV_NAMES))})")
        config = _apply(config, name, value, source=f"option {name!r}")
    return config


def _apply(config: SandboxConfig, name: str, value: Any, *, source: str) -> SandboxConfig:
    try:
        if name in ("memory", "tmpfs_size"):
            text = str(value).strip()
            if not _SIZE.match(text) or _bytes(text) < 4 * 1024 * 1024:
                raise ValueError("a size such as 256m or 1g, at least 4m")
            return replace(config, **{name: text.lower()})
        if name == "cpus":
            number = float(value)
            if not 0.01 <= number <= (os.cpu_count() or 1):
                raise ValueError(f"between 0.01 and {os.cpu_count() or 1}")
            return replace(config, cpus=number)
        if name in ("pids_limit", "pool_size"):
            number = int(value)
            low, high = (8, 4096) if name == "pids_limit" else (0, 32)
            if not low <= number <= high or isinstance(value, bool):
                raise ValueError(f"an integer from {low} to {high}")
            return replace(config, **{name: number})
        if name == "network":
            if value is True or str(value).lower() in ("true", "1", "yes", "bridge"):
                return replace(config, network="bridge")
            if value in (False, None) or str(value).lower() in ("false", "0", "no", "none", ""):
                return replace(config, network="none")
            if str(value) in ("host",) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", str(value)):
                raise ValueError("true/false or the name of a Docker network (never 'host')")
            return replace(config, network=str(value))
    except (TypeError, ValueError) as exc:
        raise SandboxConfigError(f"{source}: {value!r} is invalid: must be {exc}") from None
    raise SandboxConfigError(f"unknown sandbox option {name!r}")


def _bytes(size: str) -> int:
    unit = size[-1].lower()
    scale = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
    return int(size[:-1]) * scale[unit] if unit in scale else int(size)
