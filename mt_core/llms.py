"""LLM configurations of tenants: validation against the provider's declared fields, encryption of
API keys at rest, and the decrypted view (:class:`LLMConfig`) a provider factory receives."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import LLMConfigError, NotFoundError
from .fallbacks import MAX_CHAIN, chain_order, check_fallback_list
from .fields import ANY, FieldSpec, check_values, did_you_mean
from .ids import check_id, new_id
from .netguard import NetworkPolicy
from .plugins import Plugins, Provider
from .prices import check_prices
from .reuse import reuse_or_conflict
from .secrets import SecretBox, key_context, mask
from .storage import LLMRow, Storage, utcnow
from .tools import UNSET
from .validation import check_base_url, check_llm_name, check_text, default_llm_name

logger = logging.getLogger(__name__)

CORE_FIELDS = ("base_url", "api_key", "model_name")
# Fields of every configuration whatever its provider: the gateway's, not sent to the provider.
GATEWAY_FIELDS = ("timeout", "max_retries", "cache_ttl")
DEFAULT_MAX_RETRIES = 2
MAX_CACHE_TTL = 30 * 24 * 3600.0


def gateway_fields(settings: Any) -> dict[str, FieldSpec]:
    """The specs of :data:`GATEWAY_FIELDS`, bounded by the operator's settings."""
    limit = float(getattr(settings, "llm_timeout", 60.0))
    retries = int(getattr(settings, "max_llm_retries", 5))
    return {
        "timeout": FieldSpec(float, minimum=0, maximum=limit, exclusive_minimum=True,
                             note="seconds (the operator's MT_LLM_TIMEOUT)", description="most seconds one attempt may take"),
        "max_retries": FieldSpec(int, minimum=0, maximum=retries, note="(the operator's MT_LLM_MAX_RETRIES)",
                                 description=f"retries of a failed request (default {DEFAULT_MAX_RETRIES})"),
        "cache_ttl": FieldSpec(float, minimum=0, maximum=MAX_CACHE_TTL, exclusive_minimum=True, note="seconds",
                               description="cache deterministic replies this long (off by default)"),
    }


@dataclass(frozen=True)
class LLMConfig:
    """A stored LLM configuration with its API key decrypted: what a provider factory receives.

    Its ``repr`` masks the key; the plaintext lives only in this object and the model it builds.
    ``options`` are the provider's fields. ``timeout`` is the most one attempt may take: the
    operator's ``MT_LLM_TIMEOUT``, or less when the configuration asked for less (the gateway
    may give an attempt less still: what is left of the call's deadline).
    ``max_retries`` and ``cache_ttl`` are the gateway's (retries of a failed request; seconds a
    deterministic reply is cached, None when off). ``prices`` are the configuration's own prices
    (:mod:`mt_core.prices`), None to use genai-prices'.
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
    max_retries: int = DEFAULT_MAX_RETRIES
    cache_ttl: float | None = None
    prices: dict[str, float] | None = None

    def __repr__(self) -> str:
        return (
            f"LLMConfig(tenant={self.tenant!r}, id={self.id!r}, name={self.name!r}, provider={self.provider!r},"
            f" model_name={self.model_name!r}, base_url={self.base_url!r}, api_key={mask(self.api_key)!r})"
        )

    def describe(self) -> str:
        """``llm_… 'name' (openai model m at https://…)``: how errors name the configuration."""
        where = f" at {self.base_url}" if self.base_url else ""
        return f"{self.id} {self.name!r} ({self.provider} model {self.model_name}{where})"


@dataclass(frozen=True)
class ChainLink:
    """One configuration of a fallback chain with the provider that builds its model."""

    config: LLMConfig
    provider: Provider


@dataclass(frozen=True)
class LLMChain:
    """The configurations one LLM call tries, in order: the one a run names, then its fallbacks."""

    links: tuple[ChainLink, ...]

    @property
    def primary(self) -> LLMConfig:
        """The configuration the run named."""
        return self.links[0].config

    @property
    def configs(self) -> tuple[LLMConfig, ...]:
        """Every configuration, in order."""
        return tuple(link.config for link in self.links)

    def secrets(self) -> list[str]:
        """The API keys of the chain (to redact from anything stored or shown)."""
        return [config.api_key for config in self.configs if config.api_key]

    def __iter__(self) -> Iterator[ChainLink]:
        return iter(self.links)

    def __len__(self) -> int:
        return len(self.links)


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
    """Check the fields of a configuration against its provider's declared names and types and
    the operator's bounds; return the clean values.

    Every refused value is named in one :class:`~mt_core.errors.LLMConfigError`; a misspelt name
    gets a "did you mean". A ``base_url`` whose host is a literal address (or ``localhost``) that
    ``network_policy`` (default: public addresses only) refuses raises
    :class:`~mt_core.errors.BlockedAddressError`.
    """
    given = {"base_url": base_url, "api_key": api_key, "model_name": model_name, **options}
    for name in provider.required:
        value = given.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise LLMConfigError(name, f"is required by provider {provider.name!r}")
    specs = {**{name: provider.fields.get(name, ANY) for name in (*provider.required, *provider.optional)},
             **gateway_fields(settings)}
    accepted = set(specs) - set(CORE_FIELDS)
    unknown = [name for name in options if name not in accepted]
    if unknown:
        name = unknown[0]
        allowed = ", ".join(sorted(accepted)) or "none"
        raise LLMConfigError(
            name, f"is not a field of provider {provider.name!r}{did_you_mean(name, accepted | set(CORE_FIELDS))}"
                  f" (its fields: {allowed})"
        )
    problems = check_values(options, specs)
    if problems:
        raise LLMConfigError(problems[0][0], "; ".join(
            [problems[0][1], *(f"{name}: {problem}" for name, problem in problems[1:])]))
    if model_name is not None:
        model_name = check_text("model_name", model_name, max_length=256, error=LLMConfigError)
    if base_url is not None:
        base_url = check_base_url(base_url, network_policy)
    if api_key is not None:
        api_key = check_text("api_key", api_key, max_length=4096, error=LLMConfigError)
        if any(ch.isspace() for ch in api_key):
            raise LLMConfigError("api_key", "must not contain whitespace")
    return {"base_url": base_url, "api_key": api_key, "model_name": model_name or "", "options": dict(options)}


def public_llm(row: LLMRow) -> dict[str, Any]:
    """How a tenant sees one of its configurations: the key masked."""
    return {
        "id": row["id"], "name": row["name"], "provider": row["provider"], "model_name": row["model_name"],
        "base_url": row["base_url"], "api_key": row["api_key_masked"], "options": row["options"],
        "prices": row.get("prices"), "fallbacks": list(row.get("fallbacks", [])), "created_at": row["created_at"],
    }


def _fallback_ids(llm_id: str | None, fallbacks: object) -> list[str]:
    """The shape of a fallback list; an id of the wrong form is simply not found (like elsewhere)."""
    ids = check_fallback_list(llm_id, fallbacks)
    for item in ids:
        check_id(item, "llm")
    return ids


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
            raise LLMConfigError(
                "provider",
                f"{name!r} is not an installed provider{did_you_mean(name, self.plugins.providers)} (installed: {known})",
            )
        return entry

    def _seal(self, tenant: str, llm_id: str, key: str | None) -> dict[str, Any]:
        return {
            "api_key_ciphertext": self._secrets().encrypt(key, tenant=tenant, context=key_context(llm_id)) if key else None,
            "api_key_masked": mask(key),
        }

    def add(self, tenant: str, *, base_url: str | None, api_key: str | None, model_name: str | None,
            llm_name: str | None, provider: str, options: dict[str, Any], max_llms: int,
            fallbacks: object = (), prices: object = None, exist_ok: bool = False) -> str:
        """Validate and store a configuration (the key encrypted) with its fallbacks; return its id
        (see :mod:`mt_core.reuse` for ``exist_ok``)."""
        entry = self.provider(provider)
        clean = validate_llm_fields(entry, base_url=base_url, api_key=api_key, model_name=model_name,
                                    options=options, settings=self.settings, network_policy=self.network_policy)
        fallback_ids = _fallback_ids(None, fallbacks)
        clean_prices = check_prices(prices)
        name = check_llm_name(llm_name if llm_name is not None else default_llm_name(clean["model_name"] or provider))
        existing = next((r for r in self.storage.list_llms(tenant) if r["name"] == name), None)
        given = {"provider": provider, "model_name": clean["model_name"], "base_url": clean["base_url"],
                 "options": clean["options"], "fallbacks": list(fallback_ids), "prices": clean_prices,
                 "api_key": clean["api_key"]}
        reused = reuse_or_conflict("an LLM configuration", name, existing, given,  # type: ignore[arg-type]
                                   lambda r: self._comparable(tenant, r), exist_ok)
        if reused is not None:
            return reused
        llm_id = new_id("llm")
        row: LLMRow = {
            "id": llm_id, "name": name, "provider": provider, "model_name": clean["model_name"],
            "base_url": clean["base_url"], "options": clean["options"], "prices": clean_prices,
            **self._seal(tenant, llm_id, clean["api_key"]), "created_at": utcnow(),
        }
        self.storage.add_llm(tenant, row, max_llms=max_llms, fallbacks=fallback_ids)
        return llm_id

    def _comparable(self, tenant: str, row: LLMRow) -> dict[str, Any]:
        return {**row, "api_key": self._unseal(tenant, row)}
    def update(self, tenant: str, llm_id: object, *, base_url: Any = UNSET, api_key: Any = UNSET,
               model_name: Any = UNSET, llm_name: Any = UNSET, provider: Any = UNSET, fallbacks: Any = UNSET,
               prices: Any = UNSET, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Change a configuration: arguments left out keep their value; ``options`` are merged into
        the stored ones (``None`` removes one); ``prices`` replace the stored ones (``None`` removes
        them). The result is validated as a whole, like ``add``.
        Returns the configuration as :meth:`get` shows it."""
        llm_id = check_id(llm_id, "llm")
        row = self.storage.get_llm(tenant, llm_id)
        entry = self.provider(row["provider"] if provider is UNSET else provider)
        merged = dict(row["options"])
        for name, value in (options or {}).items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        key_given = api_key is not UNSET
        current_key = None
        if not key_given and "api_key" in entry.required and row["api_key_ciphertext"]:
            current_key = "stored"  # present: the required check only needs to know that
        clean = validate_llm_fields(
            entry, base_url=row["base_url"] if base_url is UNSET else base_url,
            api_key=api_key if key_given else current_key, model_name=row["model_name"] if model_name is UNSET else model_name,
            options=merged, settings=self.settings, network_policy=self.network_policy,
        )
        changes: dict[str, Any] = {"provider": entry.name, "model_name": clean["model_name"],
                                   "base_url": clean["base_url"], "options": clean["options"]}
        if llm_name is not UNSET:
            changes["name"] = check_llm_name(llm_name)
        if prices is not UNSET:
            changes["prices"] = check_prices(prices)
        if key_given:
            changes.update(self._seal(tenant, llm_id, clean["api_key"]))
        fallback_ids = None if fallbacks is UNSET else _fallback_ids(llm_id, fallbacks)
        self.storage.update_llm(tenant, llm_id, changes, fallback_ids)
        return self.get(tenant, llm_id)

    def get(self, tenant: str, llm_id: object) -> dict[str, Any]:
        """One configuration, key masked."""
        return public_llm(self.storage.get_llm(tenant, check_id(llm_id, "llm")))

    def list(self, tenant: str) -> list[dict[str, Any]]:
        """The tenant's configurations, keys masked, oldest first."""
        return [public_llm(row) for row in self.storage.list_llms(tenant)]

    def delete(self, tenant: str, llm_id: object) -> None:
        """Delete one configuration (refused while another lists it as a fallback)."""
        self.storage.delete_llm(tenant, check_id(llm_id, "llm"))

    def resolve(self, tenant: str, llm_id: object) -> LLMChain:
        """The chain a run's LLM calls try: the configuration, then its fallbacks (and theirs,
        depth first, each once), keys decrypted, with their providers. Never log it."""
        llm_id = check_id(llm_id, "llm")
        primary = self.storage.get_llm(tenant, llm_id)
        graph = self.storage.llm_fallback_graph(tenant) if primary.get("fallbacks") else {}
        links = [self._link(tenant, primary)]
        for other_id in chain_order(llm_id, graph, MAX_CHAIN)[1:]:
            try:
                links.append(self._link(tenant, self.storage.get_llm(tenant, other_id)))
            except NotFoundError:  # deleted between the two reads: the chain goes on without it
                logger.warning("fallback %s of %s for tenant %s is gone; skipped", other_id, llm_id, tenant)
            except LLMConfigError as exc:  # its provider's plugin is gone: a fallback must not stop the run
                logger.warning("fallback %s of %s for tenant %s skipped: %s", other_id, llm_id, tenant, exc)
        return LLMChain(tuple(links))

    def _unseal(self, tenant: str, row: LLMRow) -> str | None:
        """The configuration's API key in plain text (``None`` when it has none)."""
        ciphertext = row["api_key_ciphertext"]
        return self._secrets().decrypt(ciphertext, tenant=tenant, context=key_context(row["id"])) if ciphertext else None

    def _link(self, tenant: str, row: LLMRow) -> ChainLink:
        provider = self.plugins.providers.get(row["provider"])
        if provider is None:
            raise LLMConfigError("provider", f"{row['provider']!r} of {row['id']} is not installed (see `mt plugins`)")
        api_key = self._unseal(tenant, row)
        stored = dict(row["options"])
        limit = float(self.settings.llm_timeout)
        timeout = min(float(stored.get("timeout", limit)), limit)
        retries = min(int(stored.get("max_retries", DEFAULT_MAX_RETRIES)), int(self.settings.max_llm_retries))
        cache_ttl = stored.get("cache_ttl")
        config = LLMConfig(
            tenant=tenant, id=row["id"], name=row["name"], provider=row["provider"], model_name=row["model_name"],
            base_url=row["base_url"], api_key=api_key,
            options={k: v for k, v in stored.items() if k not in GATEWAY_FIELDS}, timeout=timeout,
            network_policy=self.network_policy, max_retries=retries,
            cache_ttl=float(cache_ttl) if cache_ttl else None, prices=row.get("prices"),
        )
        return ChainLink(config, provider)
