"""Settings read from the environment (and a ``.env`` file) on first use, never at import.

These are the operator's: every tenant option is checked against them, and a tenant can only
lower what they allow (see docs/security.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from .errors import ValidationError

HOUR = 3600.0
DOCKER_FALLBACKS = ("local", "error")
DATABASE_SCHEMES = ("sqlite:///", "postgresql://", "postgres://")


def _split_list(value: str | None) -> list[str]:
    """Split a comma-separated environment value into its non-empty, stripped items."""
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    """What mt-core reads from its environment (variable names in parentheses).

    Args:
        home: the data directory: database, tool files, key file (``MT_HOME``, default ``./.mt``).
        home_is_default: True when ``home`` is the default ``./.mt`` because ``MT_HOME`` is unset
            (creating it then warns: it depends on the current directory).
        database_url: where the database is (``MT_DATABASE_URL``): unset for ``<home>/mt.db``,
            ``sqlite:///path`` (``sqlite:////abs/path``) for another SQLite file, or
            ``postgresql://user:password@host:port/dbname`` for PostgreSQL (the ``postgres`` extra).
        master_key: base64 of 32 bytes from which per-tenant encryption keys are derived
            (``MT_MASTER_KEY``); when unset a key file is generated under ``home``.
        previous_master_keys: keys still accepted for reading during a rotation (``MT_MASTER_KEY_PREVIOUS``).
        load_plugins: distributions allowed to load, or ``None`` for all (``MT_LOAD_PLUGINS``; empty loads none).
        llm_timeout: the longest one LLM call may take, in seconds, across its retries and its whole
            fallback chain; a tenant's ``timeout`` may only lower one attempt's (``MT_LLM_TIMEOUT``, 60).
        max_llm_retries: the most retries a tenant's LLM configuration may ask for (``MT_LLM_MAX_RETRIES``, 5).
        llm_backoff: the first wait before retrying an LLM request, in seconds; it doubles with
            each retry, with jitter (``MT_LLM_BACKOFF``, 0.5).
        llm_retry_after_max: the longest ``Retry-After`` a provider may ask for and still be
            waited for; a longer one moves the call to the next configuration (``MT_LLM_RETRY_AFTER_MAX``, 30).
        llm_breaker_failures: failures of one LLM configuration within ``llm_breaker_window``
            that open its circuit breaker (``MT_LLM_BREAKER_FAILURES``, 5).
        llm_breaker_window: seconds in which those failures are counted (``MT_LLM_BREAKER_WINDOW``, 60).
        llm_breaker_cooldown: seconds an open breaker skips its configuration before one trial
            call is let through (``MT_LLM_BREAKER_COOLDOWN``, 30).
        llm_cache_max_entries: cached LLM responses kept per tenant; the oldest go first
            (``MT_LLM_CACHE_MAX_ENTRIES``, 1000).
        max_step_timeout: the longest ``step_timeout`` a run may ask for (``MT_MAX_STEP_TIMEOUT``, 3600).
        max_steps: the most ``max_steps`` a run may ask for (``MT_MAX_STEPS``, 100).
        tool_check_timeout: seconds the validation of a tool may take (``MT_TOOL_CHECK_TIMEOUT``, 30).
        tool_dependency_timeout: seconds ``add_tool`` may spend resolving a dependency that is not
            installed from the package index (``MT_TOOL_DEPENDENCY_TIMEOUT``, 60).
        validations_per_tenant: tool validations one tenant may run at once (``MT_VALIDATIONS_PER_TENANT``, 8).
        validations: tool validations this process runs at once (``MT_VALIDATIONS``, 16).
        allow_in_process: run tenant code in this process when no jail can run
            (``MT_ALLOW_IN_PROCESS``; single-tenant installations only).
        docker_fallback: what a run with ``use_docker=True`` does when the Docker sandbox cannot be
            used: ``"local"`` runs it in the local jail with a warning, ``"error"`` refuses with
            :class:`~mt_core.errors.SandboxUnavailableError` (fail-closed) (``MT_DOCKER_FALLBACK``, ``local``).
        sandbox_memory_bytes: memory of one jailed run or validation (``MT_SANDBOX_MEMORY``, ``1g``).
        sandbox_pids: processes and threads of one jailed run (``MT_SANDBOX_PIDS``, 64).
        sandbox_tmpfs_bytes: size of a jailed run's ``/tmp`` (``MT_SANDBOX_TMPFS``, ``64m``).
        sandbox_env_vars: variables of this process passed into every jailed run (``MT_SANDBOX_ENV_VARS``).
        llm_allowed_networks: CIDRs that requests to tenant-supplied URLs (an LLM's ``base_url``)
            may reach besides public addresses, e.g. ``("127.0.0.1/32",)`` for a local Ollama
            (``MT_LLM_ALLOWED_NETWORKS``, comma-separated; none by default). See ``mt_core.netguard``.
    """

    home: Path = field(default_factory=lambda: Path(".mt"))
    home_is_default: bool = False
    database_url: str | None = field(default=None, repr=False)
    master_key: str | None = field(default=None, repr=False)
    previous_master_keys: tuple[str, ...] = field(default=(), repr=False)
    load_plugins: tuple[str, ...] | None = None
    llm_timeout: float = 60.0
    max_llm_retries: int = 5
    llm_backoff: float = 0.5
    llm_retry_after_max: float = 30.0
    llm_breaker_failures: int = 5
    llm_breaker_window: float = 60.0
    llm_breaker_cooldown: float = 30.0
    llm_cache_max_entries: int = 1000
    max_step_timeout: float = HOUR
    max_steps: int = 100
    tool_check_timeout: float = 30.0
    tool_dependency_timeout: float = 60.0
    validations_per_tenant: int = 8
    validations: int = 16
    allow_in_process: bool = False
    docker_fallback: str = "local"
    sandbox_memory_bytes: int = 1 << 30
    sandbox_pids: int = 64
    sandbox_tmpfs_bytes: int = 64 << 20
    sandbox_env_vars: tuple[str, ...] = ()
    llm_allowed_networks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", Path(self.home))
        if self.database_url is not None and not str(self.database_url).startswith(DATABASE_SCHEMES):
            raise ValidationError("database_url", "must start with sqlite:/// or postgresql:// (MT_DATABASE_URL)")
        if self.load_plugins is not None:
            object.__setattr__(self, "load_plugins", tuple(self.load_plugins))
        if self.docker_fallback not in DOCKER_FALLBACKS:
            raise ValidationError(
                "MT_DOCKER_FALLBACK", f"{self.docker_fallback!r} is not one of {', '.join(DOCKER_FALLBACKS)}"
            )
        for name in ("llm_timeout", "max_step_timeout", "tool_check_timeout", "tool_dependency_timeout",
                     "llm_breaker_window", "llm_breaker_cooldown"):
            if not 0 < float(getattr(self, name)) <= 24 * HOUR:
                raise ValidationError(name, f"must be a number of seconds above 0 (got {getattr(self, name)!r})")
        for name in ("llm_backoff", "llm_retry_after_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= HOUR:
                raise ValidationError(name, f"must be a number of seconds from 0 to {HOUR:g} (got {value!r})")
        for name in ("max_llm_retries", "max_steps", "validations_per_tenant", "validations", "sandbox_pids",
                     "llm_breaker_failures", "llm_cache_max_entries"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "max_llm_retries" else 1):
                raise ValidationError(name, f"must be a positive integer (got {value!r})")
        if isinstance(self.llm_allowed_networks, str):
            object.__setattr__(self, "llm_allowed_networks", tuple(_split_list(self.llm_allowed_networks)))
        networks = tuple(self.llm_allowed_networks)
        object.__setattr__(self, "llm_allowed_networks", networks)
        if networks:  # a malformed item is an error naming the variable and the item, now, not at the first run
            from .netguard import ALLOWED_NETWORKS_VARIABLE, parse_networks

            parse_networks(networks, ALLOWED_NETWORKS_VARIABLE)

    @property
    def database(self) -> str:
        """The database location :func:`~mt_core.storage.open_storage` takes: the URL, or ``<home>/mt.db``."""
        return self.database_url or str(self.home / "mt.db")

    @property
    def database_path(self) -> Path | None:
        """The SQLite database file, or ``None`` on PostgreSQL (what the local jail must not see)."""
        if self.database_url is None:
            return self.home / "mt.db"
        if self.database_url.startswith("sqlite:///"):
            return Path(self.database_url[len("sqlite:///"):])
        return None

    @classmethod
    def names(cls) -> list[str]:
        """The names of all settings."""
        return [f.name for f in fields(cls)]

    @classmethod
    def from_env(cls, *, dotenv: bool = True, **overrides: object) -> "Settings":
        """Build settings from ``os.environ`` (after loading ``.env`` from the working directory)."""
        from .sandbox.limits import parse_size

        if dotenv:
            from dotenv import find_dotenv, load_dotenv

            load_dotenv(find_dotenv(usecwd=True), override=False)
        env = os.environ
        load = env.get("MT_LOAD_PLUGINS")

        def number(name: str, default: float, kind: type = float) -> object:
            raw = env.get(name)
            if not raw:
                return default
            try:
                return kind(raw)
            except ValueError:
                raise ValidationError(name, f"{raw!r} is not a number") from None

        def size(name: str, default: int) -> int:
            raw = env.get(name)
            try:
                return parse_size(raw) if raw else default
            except ValueError as exc:
                raise ValidationError(name, str(exc)) from None

        values: dict[str, object] = {
            "home": Path(env.get("MT_HOME") or ".mt"),
            "home_is_default": not env.get("MT_HOME") and overrides.get("home") is None,
            "database_url": env.get("MT_DATABASE_URL") or None,
            "master_key": env.get("MT_MASTER_KEY") or None,
            "previous_master_keys": tuple(_split_list(env.get("MT_MASTER_KEY_PREVIOUS"))),
            "load_plugins": None if load is None else tuple(_split_list(load)),
            "llm_timeout": number("MT_LLM_TIMEOUT", 60.0),
            "max_llm_retries": number("MT_LLM_MAX_RETRIES", 5, int),
            "llm_backoff": number("MT_LLM_BACKOFF", 0.5),
            "llm_retry_after_max": number("MT_LLM_RETRY_AFTER_MAX", 30.0),
            "llm_breaker_failures": number("MT_LLM_BREAKER_FAILURES", 5, int),
            "llm_breaker_window": number("MT_LLM_BREAKER_WINDOW", 60.0),
            "llm_breaker_cooldown": number("MT_LLM_BREAKER_COOLDOWN", 30.0),
            "llm_cache_max_entries": number("MT_LLM_CACHE_MAX_ENTRIES", 1000, int),
            "max_step_timeout": number("MT_MAX_STEP_TIMEOUT", HOUR),
            "max_steps": number("MT_MAX_STEPS", 100, int),
            "tool_check_timeout": number("MT_TOOL_CHECK_TIMEOUT", 30.0),
            "tool_dependency_timeout": number("MT_TOOL_DEPENDENCY_TIMEOUT", 60.0),
            "validations_per_tenant": number("MT_VALIDATIONS_PER_TENANT", 8, int),
            "validations": number("MT_VALIDATIONS", 16, int),
            "allow_in_process": _flag(env.get("MT_ALLOW_IN_PROCESS")),
            "docker_fallback": (env.get("MT_DOCKER_FALLBACK") or "local").strip().lower(),
            "sandbox_memory_bytes": size("MT_SANDBOX_MEMORY", 1 << 30),
            "sandbox_pids": number("MT_SANDBOX_PIDS", 64, int),
            "sandbox_tmpfs_bytes": size("MT_SANDBOX_TMPFS", 64 << 20),
            "sandbox_env_vars": tuple(_split_list(env.get("MT_SANDBOX_ENV_VARS"))),
            "llm_allowed_networks": tuple(_split_list(env.get("MT_LLM_ALLOWED_NETWORKS"))),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
