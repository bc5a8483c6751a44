"""The ``openai`` LLM provider: any OpenAI-compatible chat completions endpoint."""

from __future__ import annotations

from typing import Any

from mt_core.hookspecs import hookimpl

PLACEHOLDER_KEY = "not-needed"


def build_model(config: Any) -> Any:
    """A smolagents ``OpenAIModel`` for ``config``, with a request timeout and bounded retries.

    smolagents' own retry on HTTP 429 waits a minute per attempt; it is turned off so a run ends
    within the configured timeout, and the ``openai`` client retries briefly instead.
    """
    from smolagents import OpenAIModel

    options = dict(config.options)
    max_retries = int(options.pop("max_retries", 1))
    timeout = float(options.pop("timeout", config.timeout))
    return OpenAIModel(
        model_id=config.model_name,
        api_base=config.base_url,
        api_key=config.api_key or PLACEHOLDER_KEY,
        client_kwargs={"timeout": timeout, "max_retries": max_retries},
        retry=False,
        **options,
    )


@hookimpl
def mt_register_llm_providers(register: Any) -> None:
    register(
        "openai",
        build_model,
        required=("base_url", "model_name"),
        optional=("api_key", "temperature", "max_tokens", "timeout", "max_retries", "organization"),
    )
