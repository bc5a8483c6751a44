"""Every error the Docker sandbox raises on purpose."""

from __future__ import annotations

from mt_core.executors import ExecutorAbort, StepTimeout


class SandboxError(Exception):
    """The sandbox could not be prepared (engine, image or container); the message says why."""


class ImageBuildError(SandboxError):
    """The sandbox image could not be built (wheel download or ``docker build`` failed)."""


class SandboxConfigError(SandboxError, ValueError):
    """A sandbox setting or per-tenant option is invalid; the message names it."""


class SandboxStepError(Exception):
    """The agent's code or a tool raised inside the container. Reported to the model as a step error."""


class SandboxStepTimeout(StepTimeout):
    """A code step ran past its time limit; the container was killed and the run ends as ``timeout``."""


class SandboxCrashed(ExecutorAbort):
    """The container died during a step (out of memory, killed); the run ends as ``failed``."""
