"""The ``openai`` LLM provider: any OpenAI-compatible chat completions endpoint."""

from __future__ import annotations

from typing import Any

from mt_core.errors import PluginError
from mt_core.fields import SAMPLING_FIELDS
from mt_core.hookspecs import hookimpl

PLACEHOLDER_KEY = "not-needed"

def sdk_http_library() -> str | None:
    """The HTTP library the installed ``openai`` SDK is built on (``httpx``, or ``httpx2`` in
    newer SDKs), or None for an SDK this provider does not know."""
    import openai

    try:
        return openai.DefaultHttpxClient.__mro__[1].__module__.partition(".")[0]
    except (AttributeError, IndexError):
        return None


def _require_usage(client: Any) -> Any:
    """Make a response without ``usage`` a clear error (token accounting needs it)."""
    completions = client.chat.completions
    create = completions.create

    def checked_create(*args: Any, **kwargs: Any) -> Any:
        response = create(*args, **kwargs)
        if not kwargs.get("stream") and getattr(response, "usage", None) is None:
            raise ValueError("the endpoint's response has no 'usage' (token counts), which mt-core records per run")
        return response

    completions.create = checked_create
    return client


def openai_client(config: Any, *, azure: bool = False, api_version: str | None = None) -> Any:
    """An ``openai.OpenAI`` (or ``AzureOpenAI``) for ``config`` on the SSRF guard's HTTP client,
    with the SDK's own retries off (mt-core's gateway retries) and ``config.timeout``.

    Every connection, each redirect hop's too, goes only to an address ``config.network_policy``
    allows, pinned; each request ends by the deadline of the gateway's attempt.
    """
    import openai

    from mt_core.netguard import guarded_http_client

    library = sdk_http_library()
    if library not in ("httpx2", "httpx"):
        raise PluginError(
            f"the installed openai SDK ({openai.__version__}) is built on {library or 'an unknown HTTP library'},"
            " not httpx or httpx2, so mt-core cannot guard its connections; install an openai release built on one"
        )
    timeout = float(config.timeout)
    http_client = guarded_http_client(config.network_policy, timeout=timeout, library=library)
    options = config.options
    if azure:
        return openai.AzureOpenAI(
            api_key=config.api_key or PLACEHOLDER_KEY, azure_endpoint=config.base_url, api_version=api_version,
            timeout=timeout, max_retries=0, http_client=http_client,
        )
    return openai.OpenAI(
        api_key=config.api_key or PLACEHOLDER_KEY, base_url=config.base_url, organization=options.get("organization"),
        timeout=timeout, max_retries=0, http_client=http_client,
    )


def build_model(config: Any) -> Any:
    """A smolagents ``OpenAIModel`` for ``config``.

    Neither smolagents (``retry=False``; its own waits a minute per attempt on a 429) nor the
    ``openai`` client (``max_retries=0``) retries: mt-core's gateway does, once, by error type.
    """
    from smolagents import OpenAIModel

    options = {k: v for k, v in config.options.items() if k != "organization"}
    client = _require_usage(openai_client(config))
    return OpenAIModel(model_id=config.model_name, client=client, retry=False, **options)


@hookimpl
def mt_register_llm_providers(register: Any) -> None:
    register(
        "openai",
        build_model,
        required={"base_url": str, "model_name": str},
        optional={"api_key": str, **SAMPLING_FIELDS, "organization": str},
    )
