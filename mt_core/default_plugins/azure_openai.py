"""The ``azure_openai`` LLM provider: an Azure OpenAI deployment, through smolagents ``AzureOpenAIModel``.

``base_url`` is the resource's endpoint (``https://<resource>.openai.azure.com``), ``model_name``
the deployment name and ``api_version`` the API version (``2024-10-21``). Requests go to
``<endpoint>/openai/deployments/<deployment>/chat/completions?api-version=<version>`` with the key
in the ``api-key`` header, over the SSRF guard's pinned HTTP client.
"""

from __future__ import annotations

from typing import Any

from mt_core.fields import SAMPLING_FIELDS, FieldSpec
from mt_core.hookspecs import hookimpl


def build_model(config: Any) -> Any:
    """A smolagents ``AzureOpenAIModel`` for ``config``, its retries off (the gateway retries)."""
    from smolagents import AzureOpenAIModel

    from mt_core.default_plugins.openai_provider import _require_usage, openai_client

    options = {k: v for k, v in config.options.items() if k != "api_version"}
    client = _require_usage(openai_client(config, azure=True, api_version=config.options["api_version"]))
    return AzureOpenAIModel(model_id=config.model_name, client=client, retry=False, **options)


@hookimpl
def mt_register_llm_providers(register: Any) -> None:
    register(
        "azure_openai",
        build_model,
        required={"base_url": str, "model_name": str,
                  "api_version": FieldSpec(str, description="the Azure OpenAI API version, e.g. 2024-10-21")},
        optional={"api_key": str, **SAMPLING_FIELDS},
    )
