"""The ``openai`` LLM provider: any OpenAI-compatible chat completions endpoint."""

from __future__ import annotations

import importlib
import threading
from typing import Any

from mt_core.hookspecs import hookimpl

PLACEHOLDER_KEY = "not-needed"

_ssl_context: Any = None
_ssl_lock = threading.Lock()


def shared_ssl_context() -> Any:
    """One TLS context for every client this process builds, made the way the ``openai`` SDK makes it.

    Building a context reads the CA bundle (about 25 ms, half the CPU of a short run); a context
    holds no per-connection or per-tenant state and is safe to share between threads.
    """
    global _ssl_context
    if _ssl_context is None:
        with _ssl_lock:
            if _ssl_context is None:
                import openai

                try:  # the HTTP library the SDK is built on (httpx, or httpx2 in newer SDKs)
                    http = importlib.import_module(openai.DefaultHttpxClient.__mro__[1].__module__.partition(".")[0])
                    _ssl_context = http.create_ssl_context()
                except (AttributeError, ImportError, IndexError):  # an SDK we do not know: let it verify its way
                    _ssl_context = True
    return _ssl_context


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


def build_model(config: Any) -> Any:
    """A smolagents ``OpenAIModel`` for ``config``, with a request timeout and bounded retries.

    smolagents' own retry on HTTP 429 waits a minute per attempt; it is turned off so a run ends
    within the configured timeout, and the ``openai`` client retries briefly instead.
    """
    import openai
    from smolagents import OpenAIModel

    options = dict(config.options)
    max_retries = int(options.pop("max_retries", 1))
    timeout = float(options.pop("timeout", config.timeout))
    organization = options.pop("organization", None)
    client = openai.OpenAI(
        api_key=config.api_key or PLACEHOLDER_KEY, base_url=config.base_url, organization=organization,
        timeout=timeout, max_retries=max_retries,
        http_client=openai.DefaultHttpxClient(verify=shared_ssl_context(), timeout=timeout),
    )
    return OpenAIModel(model_id=config.model_name, client=_require_usage(client), retry=False, **options)


@hookimpl
def mt_register_llm_providers(register: Any) -> None:
    register(
        "openai",
        build_model,
        required=("base_url", "model_name"),
        optional=("api_key", "temperature", "max_tokens", "timeout", "max_retries", "organization"),
    )
