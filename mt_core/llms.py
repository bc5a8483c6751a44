"""LLM configurations: validation against the provider's declared fields, and the decrypted view
that a provider factory receives to build a ``smolagents.Model``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import LLMConfigError
from .netguard import NetworkPolicy
from .plugins import Provider
from .secrets import mask
from .validation import check_base_url, check_text

CORE_FIELDS = ("base_url", "api_key", "model_name")
OPTION_TYPES = (str, int, float, bool)


@dataclass(frozen=True)
class LLMConfig:
    """A stored LLM configuration with its API key decrypted: what a provider factory receives.

    Its ``repr`` masks the key; the plaintext lives only in this object and the model it builds.
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


def validate_llm_fields(
    provider: Provider,
    *,
    base_url: str | None,
    api_key: str | None,
    model_name: str | None,
    options: dict[str, Any],
    network_policy: NetworkPolicy | None = None,
) -> dict[str, Any]:
    """Check the fields of a new configuration against its provider; return the clean values.

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
    if model_name is not None:
        model_name = check_text("model_name", model_name, max_length=256, error=LLMConfigError)
    if base_url is not None:
        base_url = check_base_url(base_url, network_policy)
    if api_key is not None:
        api_key = check_text("api_key", api_key, max_length=4096, error=LLMConfigError)
        if any(ch.isspace() for ch in api_key):
            raise LLMConfigError("api_key", "must not contain whitespace")
    return {"base_url": base_url, "api_key": api_key, "model_name": model_name or "", "options": dict(options)}
