"""LLM configurations of tenants: validation against the provider's declared fields, encryption of
API keys at rest, and the decrypted view (:class:`LLMConfig`) a provider factory receives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import LLMConfigError
from .ids import check_id, new_id
from .netguard import NetworkPolicy
from .plugins import Plugins, Provider
from .reuse import reuse_or_conflict
from .secrets import SecretBox, mask
from .storage import LLMRow, Storage, utcnow
from .validation import check_base_url, check_llm_name, check_text, default_llm_name

CORE_FIELDS = ("base_url", "api_key", "model_name")
OPTION_TYPES = (str, int, float, bool)


@dataclass(frozen=True)
class LLMConfig:
    """A stored LLM configuration with its API key decrypted: what a provider factory receives.

    Its ``repr`` masks the key; the plaintext lives only in this object and the model it builds.
    ``timeout`` is the most one call may take: the operator's ``MT_LLM_TIMEOUT``, or less when
    the configuration asked for less.
    ``network_policy`` says where requests to ``base_url`` may connect: give a provider's HTTP
    client ``mt_core.netguard.guarded_http_client(config.network_policy, ...)``, or call
    ``mt_core.netguard.check_url`` before each request when its HTTP stack takes no client.
    """

    tenant: str
    id: str
    name: str
    provider: str
    model_name: str
    base_url: str | None
    api_key: str | None = field(repr=False)
    options: dict[str, Any] = field(default_factory=dict)
    timeout: float = 60.0
    network_policy: NetworkPolicy = field(default_factory=NetworkPolicy)

    def __repr__(self) -> str:
        return (
            f"LLMConfig(tenant={self.tenant!r}, id={self.id!r}, name={self.name!r}, provider={self.provider!r},"
            f" model_name={self.model_name!r}, base_url={self.base_url!r}, api_key={mask(self.api_key)!r})"
        )


def key_context(llm_id: str) -> str:
    """What an LLM configuration's key ciphertext is bound to, besides its tenant."""
    return f"llms:{llm_id}:api_key"


def validate_llm_fields(
    provider: Provider,
    *,
    base_url: str | None,
    api_key: str | None,
    model_name: str | None,
    options: dict[str, Any],
    settings: Any = None,
    network_policy: NetworkPolicy | None = None,
) -> dict[str, Any]:
    """Check the fields of a new configuration against its provider and the operator's bounds;
    return the clean values.

    A ``base_url`` whose host is a literal address (or ``localhost``) that ``network_policy``
    (default: public addresses only) refuses raises :class:`~mt_core.errors.BlockedAddressError`.
    """
    given = {"base_url": base_url, "api_key": api_key, "model_name": model_name, **options}
    for name in provider.required:
        value = given.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise LLMConfigError(name, f"is required by provider {provider.name!r}")
    unknown = sorted(set(options) - set(provider.optional) - set(provider.required))
    if unknown:
        allowed = ", ".join(sorted(set(provider.optional) | set(provider.required) - set(CORE_FIELDS))) or "none"
        raise LLMConfigError(unknown[0], f"is not a field of provider {provider.name!r} (extra fields: {allowed})")
    for name, value in options.items():
        if not isinstance(value, OPTION_TYPES):
            raise LLMConfigError(name, f"must be a string, number or boolean, got {type(value).__name__}")
        if isinstance(value, str):
            check_text(name, value, max_length=4096, allow_empty=True, error=LLMConfigError)
    _check_bounds(options, settings)
    if model_name is not None:
        model_name = check_text("model_name", model_name, max_length=256, error=LLMConfigError)
    if base_url is not None:
        base_url = check_base_url(base_url, network_policy)
    if api_key is not None:
        api_key = check_text("api_key", api_key, max_length=4096, error=LLMConfigError)
        if any(ch.isspace() for ch in api_key):
            raise LLMConfigError("api_key", "must not contain whitespace")
    return {"base_url": base_url, "api_key": api_key, "model_name": model_name or "", "options": dict(options)}


def _check_bounds(options: dict[str, Any], settings: Any) -> None:
    """The operator bounds every option that spends its time or money."""
    limit = float(getattr(settings, "llm_timeout", 60.0))
    if "timeout" in options:
        value = options["timeout"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= limit:
            raise LLMConfigError(
                "timeout", f"must be a number of seconds above 0 and at most {limit:g} (the operator's MT_LLM_TIMEOUT)"
            )
    retries = int(getattr(settings, "max_llm_retries", 5))
    if "max_retries" in options:
        value = options["max_retries"]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= retries:
            raise LLMConfigError(
                "max_retries", f"must be a whole number from 0 to {retries} (the operator's MT_LLM_MAX_RETRIES)"
            )


def public_llm(row: LLMRow) -> dict[str, Any]:
    """How a tenant sees one of its configurations: the key masked."""
    return {
        "id": row["id"], "name": row["name"], "provider": row["provider"], "model_name": row["model_name"],
        "base_url": row["base_url"], "api_key": row["api_key_masked"], "options": row["options"],
        "created_at": row["created_at"],
    }


class LLMs:
    """The LLM configurations of every tenant (each method takes the tenant).

    Args:
        storage: the database.
        plugins: the loaded plugins (the providers).
        secrets: returns the encryption of secrets at rest (made on first need).
        settings: the operator's settings.
        network_policy: where requests to tenant-supplied URLs may connect.
    """

    def __init__(self, storage: Storage, plugins: Plugins, secrets: Callable[[], SecretBox], settings: Any,
                 network_policy: NetworkPolicy | None = None) -> None:
        self.storage = storage
        self.plugins = plugins
        self._secrets = secrets
        self.settings = settings
        self.network_policy = network_policy or NetworkPolicy()

    def provider(self, name: object) -> Provider:
        """An installed provider; :class:`LLMConfigError` naming the installed ones otherwise."""
        entry = self.plugins.providers.get(name) if isinstance(name, str) else None
        if entry is None:
            known = ", ".join(sorted(self.plugins.providers)) or "none"
            raise LLMConfigError("provider", f"{name!r} is not an installed provider (installed: {known})")
        return entry

    def add(self, tenant: str, *, base_url: str | None, api_key: str | None, model_name: str | None,
            llm_name: str | None, provider: str, options: dict[str, Any], max_llms: int, exist_ok: bool = False) -> str:
        """Validate and store a configuration (the key encrypted); return its id (see :mod:`mt_core.reuse`
        for ``exist_ok``)."""
        entry = self.provider(provider)
        clean = validate_llm_fields(entry, base_url=base_url, api_key=api_key, model_name=model_name,
                                    options=options, settings=self.settings, network_policy=self.network_policy)
        name = check_llm_name(llm_name if llm_name is not None else default_llm_name(clean["model_name"] or provider))
        row = next((r for r in self.storage.list_llms(tenant) if r["name"] == name), None)
        given = {"provider": provider, "model_name": clean["model_name"], "base_url": clean["base_url"],
                 "options": clean["options"], "api_key": clean["api_key"]}
        reused = reuse_or_conflict("an LLM configuration", name, row, given, lambda r: self._comparable(tenant, r),
                                   exist_ok)
        if reused is not None:
            return reused
        llm_id = new_id("llm")
        key = clean["api_key"]
        row: LLMRow = {
            "id": llm_id, "name": name, "provider": provider, "model_name": clean["model_name"],
            "base_url": clean["base_url"], "options": clean["options"],
            "api_key_ciphertext": self._secrets().encrypt(key, tenant=tenant, context=key_context(llm_id)) if key else None,
            "api_key_masked": mask(key), "created_at": utcnow(),
        }
        self.storage.add_llm(tenant, row, max_llms=max_llms)
        return llm_id

    def _comparable(self, tenant: str, row: LLMRow) -> dict[str, Any]:
        ciphertext = row["api_key_ciphertext"]
        key = self._secrets().decrypt(ciphertext, tenant=tenant, context=key_context(row["id"])) if ciphertext else None
        return {**row, "api_key": key}

    def get(self, tenant: str, llm_id: object) -> dict[str, Any]:
        """One configuration, key masked."""
        return public_llm(self.storage.get_llm(tenant, check_id(llm_id, "llm")))

    def list(self, tenant: str) -> list[dict[str, Any]]:
        """The tenant's configurations, keys masked, oldest first."""
        return [public_llm(row) for row in self.storage.list_llms(tenant)]

    def delete(self, tenant: str, llm_id: object) -> None:
        """Delete one configuration."""
        self.storage.delete_llm(tenant, check_id(llm_id, "llm"))

    def resolve(self, tenant: str, llm_id: object) -> tuple[LLMConfig, Provider]:
        """The configuration with its key decrypted, and its provider (for a run). Never log it."""
        row = self.storage.get_llm(tenant, check_id(llm_id, "llm"))
        provider = self.plugins.providers.get(row["provider"])
        if provider is None:
            raise LLMConfigError("provider", f"{row['provider']!r} is not installed (see `mt plugins`)")
        ciphertext = row["api_key_ciphertext"]
        api_key = self._secrets().decrypt(ciphertext, tenant=tenant, context=key_context(row["id"])) if ciphertext else None
        options = dict(row["options"])
        timeout = min(float(options.get("timeout", self.settings.llm_timeout)), float(self.settings.llm_timeout))
        config = LLMConfig(
            tenant=tenant, id=row["id"], name=row["name"], provider=row["provider"], model_name=row["model_name"],
            base_url=row["base_url"], api_key=api_key, options=options, timeout=timeout,
            network_policy=self.network_policy,
        )
        return config, provider
