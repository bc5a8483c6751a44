"""The ``huggingface`` LLM provider: Hugging Face Inference Providers, an Inference Endpoint or
any TGI / vLLM server, through smolagents ``InferenceClientModel`` and ``huggingface_hub``'s
``InferenceClient``.

``model_name`` is the model id sent in each request (``Qwen/Qwen2.5-Coder-32B-Instruct``, or
``<model>:<provider>`` to pick an inference provider on the router); ``base_url`` defaults to the
Hugging Face router (``https://router.huggingface.co/v1``); ``api_key`` is the Hugging Face token
(never taken from the server's ``HF_TOKEN``). Requests are OpenAI-style chat completions to
``<base_url>/chat/completions``.

SSRF guard: ``huggingface_hub`` sends every request through one process-wide HTTP session that
takes no per-client transport, so the client here overrides its one request method to send
through the guard's pinned client instead (:class:`GuardedInferenceClient`). With a
``huggingface_hub`` not built on httpx/httpx2, it falls back to ``check_url`` before each request.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

from mt_core.fields import SAMPLING_FIELDS, FieldSpec
from mt_core.hookspecs import hookimpl

DEFAULT_BASE_URL = "https://router.huggingface.co/v1"
PLACEHOLDER_KEY = "not-needed"


def hub_http_library() -> str | None:
    """The HTTP library ``huggingface_hub``'s inference client uses (``httpx2`` or ``httpx``), or None."""
    module = importlib.import_module("huggingface_hub.inference._client")
    for name in ("httpx2", "httpx"):
        if name in vars(module):
            return name
    return None


@functools.lru_cache(maxsize=None)
def guarded_client_class(library: str | None) -> type:
    """``InferenceClient`` with its requests sent through a given HTTP client (the SSRF guard's)."""
    from huggingface_hub import InferenceClient
    from huggingface_hub.errors import InferenceTimeoutError
    from huggingface_hub.utils import hf_raise_for_status

    from mt_core.netguard import check_url

    http = importlib.import_module(library) if library else None

    class GuardedInferenceClient(InferenceClient):  # type: ignore[misc]
        """An ``InferenceClient`` whose requests go through ``http_client`` (pinned by the SSRF guard),
        or, without one, are checked with ``check_url`` first."""

        def __init__(self, *, http_client: Any, policy: Any, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._mt_http = http_client
            self._mt_policy = policy

        def _inner_post(self, request_parameters: Any, *, stream: bool = False) -> Any:
            if self._mt_http is None:
                check_url(request_parameters.url, self._mt_policy)
                return super()._inner_post(request_parameters, stream=stream)
            try:
                response_cm = self._mt_http.stream(
                    "POST", request_parameters.url, json=request_parameters.json, content=request_parameters.data,
                    headers=request_parameters.headers, cookies=self.cookies, timeout=self.timeout,
                )
                if stream:
                    response = self.exit_stack.enter_context(response_cm)
                    hf_raise_for_status(response)
                    return response.iter_lines()
                with response_cm as response:
                    hf_raise_for_status(response)
                    return response.read()
            except http.TimeoutException as error:  # type: ignore[union-attr]
                raise InferenceTimeoutError(f"Inference call timed out: {request_parameters.url}") from error

        def close(self) -> None:
            """Close the pinned client's connections (mt-core calls it after a run)."""
            if self._mt_http is not None:
                self._mt_http.close()

    return GuardedInferenceClient


def build_model(config: Any) -> Any:
    """A smolagents ``InferenceClientModel`` for ``config``, its retries off (the gateway retries)."""
    from smolagents import InferenceClientModel

    from mt_core.netguard import guarded_http_client

    library = hub_http_library()
    timeout = float(config.timeout)
    http_client = (guarded_http_client(config.network_policy, timeout=timeout, library=library) if library else None)
    options = dict(config.options)
    bill_to = options.pop("bill_to", None)
    api_key = config.api_key or PLACEHOLDER_KEY
    client = guarded_client_class(library)(
        http_client=http_client, policy=config.network_policy, base_url=config.base_url or DEFAULT_BASE_URL,
        api_key=api_key, timeout=timeout, bill_to=bill_to,
    )
    return InferenceClientModel(model_id=config.model_name, client=client, api_key=api_key, retry=False,
                                model=config.model_name, **options)


@hookimpl
def mt_register_llm_providers(register: Any) -> None:
    register(
        "huggingface",
        build_model,
        required={"model_name": str},
        optional={"base_url": str, "api_key": str, **SAMPLING_FIELDS,
                  "bill_to": FieldSpec(str, description="the Hugging Face organization billed (Enterprise Hub)")},
    )
