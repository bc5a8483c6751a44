"""The ``litellm`` LLM provider for mt-core: any model LiteLLM supports, through smolagents.

The configuration's ``model_name`` is a LiteLLM model string (``openai/gpt-4o-mini``,
``anthropic/claude-3-5-haiku-latest``, ``ollama/llama3``, ...). ``litellm`` is imported only
when a model is built, so installing this plugin does not slow down mt-core's startup.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mt_core import hookimpl

if TYPE_CHECKING:
    from collections.abc import Callable

    from smolagents import Model

    from mt_core.llms import LLMConfig

PROVIDER_NAME = "litellm"
PLACEHOLDER_KEY = "not-needed"
REQUIRED = ("model_name",)
OPTIONAL = ("base_url", "api_key", "temperature", "max_tokens", "timeout")


def build_model(config: LLMConfig) -> Model:
    """A smolagents ``LiteLLMModel`` for one stored LLM configuration.

    smolagents' own retry on rate limits (a minute per attempt) is turned off and LiteLLM does not
    retry either, so a call ends within the configured timeout. A configuration without an API key
    sends a placeholder, so LiteLLM never falls back to credentials in the server's environment
    (``OPENAI_API_KEY`` and the like), which belong to the operator, not to a tenant.

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
    return LiteLLMModel(
        model_id=config.model_name,
        api_base=config.base_url or None,
        api_key=config.api_key or PLACEHOLDER_KEY,
        retry=False,
        timeout=timeout,
        num_retries=0,
        **options,
    )


@hookimpl
def mt_register_llm_providers(register: Callable[..., None]) -> None:
    """Register the ``litellm`` provider."""
    register(PROVIDER_NAME, build_model, required=REQUIRED, optional=OPTIONAL)
