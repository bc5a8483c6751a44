"""Every error the Docker sandbox raises on purpose."""

from __future__ import annotations

from mt_core.errors import SandboxCrashed as CoreSandboxCrashed
from mt_core.errors import SandboxError as CoreSandboxError
from mt_core.errors import StepTimeout
from mt_core.sandbox.remote import SandboxStepError

__all__ = ["ImageBuildError", "SandboxConfigError", "SandboxCrashed", "SandboxError", "SandboxStepError",
           "SandboxStepTimeout"]


class SandboxError(CoreSandboxError):
    """The sandbox could not be prepared (engine, image or container); the message says why."""


class ImageBuildError(SandboxError):
    """The sandbox image could not be built (wheel download or ``docker build`` failed)."""


class SandboxConfigError(SandboxError, ValueError):
    """A sandbox setting or per-tenant option is invalid; the message names it."""


class SandboxStepTimeout(StepTimeout):
    """A code step ran past its time limit; the container was killed and the run ends as ``timeout``."""


class SandboxCrashed(CoreSandboxCrashed):
    """The container died during a step (out of memory, killed); the run ends as ``failed``."""
