"""mt-docker: the Docker sandbox for mt-core (executor ``docker``, command ``mt sandbox``).

Importing this package does not import ``docker`` or ``smolagents``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "DockerExecutor": "executor", "SandboxConfig": "config", "load_config": "config",
    "ensure_image": "images", "check_requirements": "images", "shutdown": "pool",
    "SandboxError": "errors", "ImageBuildError": "errors", "SandboxConfigError": "errors",
    "SandboxStepError": "errors", "SandboxStepTimeout": "errors", "SandboxCrashed": "errors",
    "LABEL": "engine", "sandbox_containers": "engine", "remove_stale": "engine",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mt_docker' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"mt_docker.{module}"), name)
    globals()[name] = value
    return value
