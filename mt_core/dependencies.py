"""Tool dependencies, checked when a tool is added: installed in this environment, or resolvable
from the configured package index (``pip download`` of a wheel, with a timeout). A dependency that
does not exist is refused by ``add_tool`` rather than at the first Docker run."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from .errors import ToolValidationError

MAX_PIP_LINE = 300


def check_resolvable(requirements: list[str], *, timeout: float) -> None:
    """Refuse with :class:`ToolValidationError` the first requirement that is neither installed here
    (a version within its specifier) nor downloadable as a wheel from the configured index."""
    from packaging.requirements import Requirement

    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue  # not for this environment; the sandbox image's pip applies it there
        if installed_satisfies(requirement):
            continue
        problem = pip_download_problem(text, timeout=timeout)
        if problem is not None:
            raise ToolValidationError(
                f"{text!r} is not installed here and cannot be resolved from the package index: {problem}",
                field="dependencies",
            )


def installed_satisfies(requirement: object) -> bool:
    """Whether a distribution installed in this environment satisfies ``requirement`` (a packaging Requirement)."""
    from importlib import metadata

    try:
        version = metadata.version(requirement.name)  # type: ignore[attr-defined]
    except metadata.PackageNotFoundError:
        return False
    return requirement.specifier.contains(version, prereleases=True)  # type: ignore[attr-defined]


def pip_download_problem(requirement: str, *, timeout: float) -> str | None:
    """``None`` when pip can download a wheel of ``requirement`` (no dependencies) from the index that
    pip is configured with (``PIP_INDEX_URL``, pip.conf), else pip's relevant line."""
    with tempfile.TemporaryDirectory(prefix="mt-dependency-check-") as folder:
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input",
            "--disable-pip-version-check", "--progress-bar", "off", "-d", folder, requirement,
        ]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
            )
        except subprocess.TimeoutExpired:
            return (
                f"pip had no answer within {timeout:g} s (is the package index reachable? the limit is"
                " MT_TOOL_DEPENDENCY_TIMEOUT)"
            )
    if done.returncode == 0:
        return None
    return relevant_pip_lines(done.stdout + "\n" + done.stderr, limit=1)[0]


def relevant_pip_lines(output: str, *, limit: int = 3) -> list[str]:
    """The lines of pip's output that say what failed (its ``ERROR:`` lines, else its last lines),
    without the ``ERROR:`` prefix, each at most a few hundred characters."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line[len("ERROR:"):].strip() for line in lines if line.startswith("ERROR:")]
    chosen = errors[:limit] if errors else lines[-limit:] or ["pip failed without saying why"]
    return [line if len(line) <= MAX_PIP_LINE else line[: MAX_PIP_LINE - 1] + "…" for line in chosen]
