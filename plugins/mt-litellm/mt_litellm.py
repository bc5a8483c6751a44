"""The ``litellm`` LLM provider for mt-core: any model LiteLLM supports, through smolagents.

The configuration's ``model_name`` is a LiteLLM model string (``openai/gpt-4o-mini``,
``anthropic/claude-3-5-haiku-latest``, ``ollama/llama3``, ...). ``litellm`` is imported only
when a model is built, so installing this plugin does not slow down mt-core's startup.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from mt_core import hookimpl
from mt_core.fields import SAMPLING_FIELDS

if TYPE_CHECKING:
    from collections.abc import Callable

    from smolagents import Model

    from mt_core.llms import LLMConfig
    from mt_core.netguard import NetworkPolicy

PROVIDER_NAME = "litellm"
PLACEHOLDER_KEY = "not-needed"
# Field types, so that mt-core checks values too (a plain tuple of names works with older mt-core).
REQUIRED = {"model_name": str}
OPTIONAL = {"base_url": str, "api_key": str, "temperature": SAMPLING_FIELDS["temperature"],
            "max_tokens": SAMPLING_FIELDS["max_tokens"], "timeout": float}
# LiteLLM routes these through the openai SDK, which takes a client per call: it gets the SSRF
# guard's pinned one (with ``client=``). Other providers go through LiteLLM's own HTTP handlers.
OPENAI_SDK_PROVIDERS = frozenset({"openai", "custom_openai"})
# Defaults LiteLLM uses without an api_base but does not report through get_api_base (1.110).
UNREPORTED_DEFAULT_API_BASES = {"ollama_chat": "http://localhost:11434"}


class GuardedCompletion:
    """What a ``LiteLLMModel`` calls instead of the ``litellm`` module: ``completion`` first checks
    the endpoint with the SSRF guard, then calls LiteLLM, with a pinned openai client if there is one.

    Args:
        litellm: the ``litellm`` module.
        url: the endpoint LiteLLM will call (``base_url``, or the provider's default), None if unknown.
        policy: where requests may connect.
        openai_client: an ``openai.OpenAI`` on the guard's pinned HTTP client, passed as ``client=``.
    """

    def __init__(self, litellm: Any, url: str | None, policy: NetworkPolicy, openai_client: Any = None) -> None:
        self.litellm = litellm
        self.url = url
        self.policy = policy
        self.openai_client = openai_client

    def completion(self, **kwargs: Any) -> Any:
        """``litellm.completion`` behind the guard; raises ``BlockedAddressError`` for a refused endpoint."""
        from mt_core.netguard import check_url

        if self.url:
            check_url(self.url, self.policy)
        if self.openai_client is not None:
            kwargs["client"] = self.openai_client
        return self.litellm.completion(**kwargs)

    def close(self) -> None:
        """Close the pinned client's connections (mt-core calls it after a run)."""
        if self.openai_client is not None:
            self.openai_client.close()


def build_model(config: LLMConfig) -> Model:
    """A smolagents ``LiteLLMModel`` for one stored LLM configuration.

    smolagents' own retry on rate limits (a minute per attempt) is turned off and LiteLLM does not
    retry either: mt-core's gateway retries, falls back and keeps the circuit breaker, classifying
    LiteLLM's errors by type (they subclass the ``openai`` SDK's). A configuration without an API key
    sends a placeholder, so LiteLLM never falls back to credentials in the server's environment
    (``OPENAI_API_KEY`` and the like), which belong to the operator, not to a tenant.

    SSRF guard (``config.network_policy``): before every call the endpoint's host is resolved and
    checked (``mt_core.netguard.check_url``). For OpenAI-compatible models (``openai/...``) with a
    ``base_url`` the request also goes through the guard's pinned client, so it connects only to
    the address that was checked, and redirects are checked too; other providers' requests go
    through LiteLLM's own HTTP stack, which resolves the host again (see the README).

    Args:
        config: The stored configuration, with its API key decrypted.

    Returns:
        The model; it makes no request until it is called.
    """
    # LiteLLM otherwise downloads its model price list from GitHub when it is first imported.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm
    from smolagents import LiteLLMModel

    # Its "Give Feedback / Get Help" banner goes to stdout, which belongs to the host program.
    litellm.suppress_debug_info = True

    options = dict(config.options)
    timeout = float(options.pop("timeout", config.timeout))
    api_key = config.api_key or PLACEHOLDER_KEY
    provider, default_api_base = _provider_of(litellm, config.model_name)
    openai_client = None
    if config.base_url and provider in OPENAI_SDK_PROVIDERS:
        openai_client = _pinned_openai_client(config, api_key, timeout)
    guard = GuardedCompletion(litellm, config.base_url or default_api_base, config.network_policy, openai_client)
    return LiteLLMModel(
        model_id=config.model_name,
        api_base=config.base_url or None,
        api_key=api_key,
        client=guard,
        retry=False,
        timeout=timeout,
        num_retries=0,
        **options,
    )


def _provider_of(litellm: Any, model: str) -> tuple[str | None, str | None]:
    """LiteLLM's provider for ``model`` and the endpoint it calls when no api_base is given."""
    try:
        _, provider, _, api_base = litellm.get_llm_provider(model=model)
    except Exception:  # noqa: BLE001 - an unknown model fails at the call, with LiteLLM's own message
        return None, None
    if not api_base:
        try:
            api_base = litellm.get_api_base(model=model, optional_params={})
        except Exception:  # noqa: BLE001
            api_base = None
    return provider, api_base or UNREPORTED_DEFAULT_API_BASES.get(provider)


def _pinned_openai_client(config: LLMConfig, api_key: str, timeout: float) -> Any:
    """An ``openai.OpenAI`` whose HTTP client is the SSRF guard's, or None when the installed SDK
    is built on an HTTP library the guard does not know (then only ``check_url`` applies)."""
    import openai

    from mt_core.default_plugins.openai_provider import sdk_http_library
    from mt_core.netguard import guarded_http_client

    library = sdk_http_library()
    if library not in ("httpx2", "httpx"):
        return None
    http_client = guarded_http_client(config.network_policy, timeout=timeout, library=library)
    return openai.OpenAI(api_key=api_key, base_url=config.base_url, timeout=timeout, max_retries=0, http_client=http_client)


@hookimpl
def mt_register_llm_providers(register: Callable[..., None]) -> None:
    """Register the ``litellm`` provider."""
    register(PROVIDER_NAME, build_model, required=REQUIRED, optional=OPTIONAL)
