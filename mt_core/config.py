"""Settings read from the environment (and a ``.env`` file) on first use, never at import."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ValidationError

DEFAULT_DOCKER_IMAGE = "python:3.12-slim"
DOCKER_FALLBACKS = ("local", "error")


def _split_list(value: str | None) -> list[str]:
    """Split a comma-separated environment value into its non-empty, stripped items."""
    return [item.strip() for item in (value or "").split(",") if item.strip()]


@dataclass(frozen=True)
class Settings:
    """What mt-core reads from its environment.

    Args:
        home: the data directory (SQLite database, tool files, key file). ``MT_HOME``, default ``./.mt``.
        home_is_default: True when ``home`` is the default ``./.mt`` because ``MT_HOME`` is unset
            (creating it then warns: it depends on the current directory).
        master_key: base64 of 32 bytes used to derive per-tenant encryption keys. ``MT_MASTER_KEY``;
            when unset a key file is generated under ``home``.
        previous_master_keys: keys still accepted for reading during a rotation.
            ``MT_MASTER_KEY_PREVIOUS`` (comma-separated).
        load_plugins: distribution names allowed to load, or ``None`` for all. ``MT_LOAD_PLUGINS``
            (an empty value loads none).
        llm_api_key, model_name, api_base_url: the default LLM of ``example.py`` and ``test.py``.
        docker_image: base image of the Docker sandbox. ``DOCKER_IMAGE``.
        docker_env_vars: names of the variables passed into the sandbox. ``DOCKER_ENV_VARS``.
        docker_fallback: what a run with ``use_docker=True`` does when the Docker sandbox cannot be
            used: ``"local"`` runs it with the local executor and a warning, ``"error"`` refuses
            with :class:`~mt_core.errors.SandboxUnavailableError` (fail-closed). ``MT_DOCKER_FALLBACK``.
        llm_timeout: seconds one LLM request may take. ``MT_LLM_TIMEOUT``, default 60.
        tool_check_timeout: seconds the validation of a tool's source may take.
            ``MT_TOOL_CHECK_TIMEOUT``, default 30.
        tool_dependency_timeout: seconds ``add_tool`` may spend resolving a dependency that is not
            installed from the package index. ``MT_TOOL_DEPENDENCY_TIMEOUT``, default 60.
    """

    home: Path = field(default_factory=lambda: Path(".mt"))
    home_is_default: bool = field(default=False, repr=False, compare=False)
    master_key: str | None = field(default=None, repr=False)
    previous_master_keys: tuple[str, ...] = field(default=(), repr=False)
    load_plugins: tuple[str, ...] | None = None
    llm_api_key: str | None = field(default=None, repr=False)
    model_name: str | None = None
    api_base_url: str | None = None
    docker_image: str = DEFAULT_DOCKER_IMAGE
    docker_env_vars: tuple[str, ...] = ()
    docker_fallback: str = "local"
    llm_timeout: float = 60.0
    tool_check_timeout: float = 30.0
    tool_dependency_timeout: float = 60.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", Path(self.home))
        if self.load_plugins is not None:
            object.__setattr__(self, "load_plugins", tuple(self.load_plugins))
        if self.docker_fallback not in DOCKER_FALLBACKS:
            raise ValidationError(
                "MT_DOCKER_FALLBACK", f"{self.docker_fallback!r} is not one of {', '.join(DOCKER_FALLBACKS)}"
            )

    @classmethod
    def from_env(cls, *, dotenv: bool = True, **overrides: object) -> "Settings":
        """Build settings from ``os.environ`` (after loading ``.env`` from the working directory)."""
        if dotenv:
            from dotenv import find_dotenv, load_dotenv

            load_dotenv(find_dotenv(usecwd=True), override=False)
        env = os.environ
        load = env.get("MT_LOAD_PLUGINS")
        values: dict[str, object] = {
            "home": Path(env.get("MT_HOME") or ".mt"),
            "home_is_default": not env.get("MT_HOME") and overrides.get("home") is None,
            "master_key": env.get("MT_MASTER_KEY") or None,
            "previous_master_keys": tuple(_split_list(env.get("MT_MASTER_KEY_PREVIOUS"))),
            "load_plugins": None if load is None else tuple(_split_list(load)),
            "llm_api_key": env.get("LLM_API_KEY") or None,
            "model_name": env.get("MODEL_NAME") or None,
            "api_base_url": env.get("API_BASE_URL") or None,
            "docker_image": env.get("DOCKER_IMAGE") or DEFAULT_DOCKER_IMAGE,
            "docker_env_vars": tuple(_split_list(env.get("DOCKER_ENV_VARS"))),
            "docker_fallback": (env.get("MT_DOCKER_FALLBACK") or "local").strip().lower(),
            "llm_timeout": float(env.get("MT_LLM_TIMEOUT") or 60.0),
            "tool_check_timeout": float(env.get("MT_TOOL_CHECK_TIMEOUT") or 30.0),
            "tool_dependency_timeout": float(env.get("MT_TOOL_DEPENDENCY_TIMEOUT") or 60.0),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
