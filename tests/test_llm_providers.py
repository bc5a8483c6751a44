"""The built-in LLM providers on the wire (Azure OpenAI, Hugging Face), the SSRF guard on each,
and typed provider fields: values checked, not only names."""

from __future__ import annotations

import socket
import warnings

import pytest

from conftest import API_KEY, make_settings
from mt_core import BlockedAddressError, FieldSpec, LLMConfigError, MTCore, RunError, hookimpl
from mt_core.testing import FakeDNS, in_order

# providers build models; storing configurations is covered on both backends by tests/test_llms.py
pytestmark = pytest.mark.backends("sqlite")

FINAL = '<code>final_answer("done")</code>'


def run(acme, llm_id):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = acme.run_query([], llm_id, "Say done.", use_docker=False, max_steps=2)
        except RunError as error:
            return error, acme.get_run(error.run_id)
    return result, acme.get_run(result.run_id)


def _root(server):
    return server.base_url[: -len("/v1")]


# -- Azure OpenAI --------------------------------------------------------------------------------


def test_azure_openai_sends_to_the_deployment_with_the_api_version_and_key(core, llm_server):
    server = llm_server(script=[FINAL])
    acme = core.tenant("acme")
    llm_id = acme.add_llm(provider="azure_openai", base_url=_root(server), api_key=API_KEY,
                          model_name="gpt-4o-mini-prod", api_version="2024-10-21", temperature=0)

    result, record = run(acme, llm_id)

    assert str(result) == "done"
    [request] = server.requests
    assert request["path"] == "/openai/deployments/gpt-4o-mini-prod/chat/completions"
    assert request["query"] == {"api-version": "2024-10-21"}
    assert request["headers"]["api-key"] == API_KEY and "authorization" not in request["headers"]
    assert request["body"]["temperature"] == 0
    assert record["llm_calls"][0]["provider"] == "azure_openai"
    assert record["llm_calls"][0]["model"] == "gpt-4o-mini-prod" and record["llm_calls"][0]["input_tokens"] > 0


def test_azure_openai_requires_its_api_version(core):
    with pytest.raises(LLMConfigError, match="api_version: is required by provider 'azure_openai'"):
        core.tenant("acme").add_llm(provider="azure_openai", base_url="https://res.openai.azure.com",
                                    api_key=API_KEY, model_name="d")


def test_azure_openai_errors_are_retried_like_openai(core, llm_server):
    server = llm_server(responder=in_order([{"status": 429, "headers": {"retry-after-ms": "100"}}, FINAL]))
    acme = core.tenant("acme")
    llm_id = acme.add_llm(provider="azure_openai", base_url=_root(server), api_key=API_KEY, model_name="d",
                          api_version="2024-10-21")
    _, record = run(acme, llm_id)
    assert [(c["outcome"], c["status_code"], c["error_type"]) for c in record["llm_calls"]] == [
        ("retried", 429, "RateLimitError"), ("ok", None, None)]


# -- Hugging Face --------------------------------------------------------------------------------


def test_huggingface_sends_an_openai_style_chat_completion(core, llm_server):
    server = llm_server(script=[FINAL])
    acme = core.tenant("acme")
    llm_id = acme.add_llm(provider="huggingface", base_url=server.base_url, api_key="hf_token_0123456789",
                          model_name="Qwen/Qwen2.5-Coder-32B-Instruct", max_tokens=512, temperature=0)

    result, record = run(acme, llm_id)

    assert str(result) == "done"
    [request] = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == "Bearer hf_token_0123456789"
    assert request["body"]["model"] == "Qwen/Qwen2.5-Coder-32B-Instruct"
    assert request["body"]["max_tokens"] == 512 and request["body"]["temperature"] == 0
    assert request["body"]["stream"] is False
    call = record["llm_calls"][0]
    assert call["provider"] == "huggingface" and call["outcome"] == "ok" and call["input_tokens"] > 0


def test_huggingface_errors_are_classified_and_retried(core, llm_server):
    server = llm_server(responder=in_order([{"status": 503}, {"reset": True}, FINAL]))
    acme = core.tenant("acme")
    llm_id = acme.add_llm(provider="huggingface", base_url=server.base_url, model_name="m")
    result, record = run(acme, llm_id)
    assert str(result) == "done" and len(server.requests) == 3
    calls = [(c["outcome"], c["status_code"], c["error_type"]) for c in record["llm_calls"]]
    assert calls[0] == ("retried", 503, "HfHubHTTPError") and calls[2] == ("ok", None, None)
    assert calls[1][:2] == ("retried", None) and calls[1][2] in ("ReadError", "RemoteProtocolError")  # httpx2's
    # without a key, a placeholder is sent: never the server's own HF_TOKEN
    assert server.requests[0]["headers"]["authorization"] == "Bearer not-needed"


def test_huggingface_defaults_to_the_router_and_never_reads_hf_token(core, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_operator_secret")
    acme = core.tenant("acme")
    llm_id = acme.add_llm(provider="huggingface", model_name="Qwen/Qwen2.5-72B-Instruct:together")
    assert acme.get_llm_config(llm_id)["base_url"] is None
    link = core.llms.resolve("acme", llm_id).links[0]
    model = link.provider.factory(link.config)
    try:
        assert model.client.model == "https://router.huggingface.co/v1"
        assert model.client.token == "not-needed" and "hf_operator_secret" not in repr(vars(model))
    finally:
        model.client.close()


@pytest.mark.parametrize("provider", ["azure_openai", "huggingface", "openai"])
def test_every_built_in_provider_goes_through_the_ssrf_guard(tmp_path, llm_server, monkeypatch, provider):
    """A name that resolves to loopback is refused when the request connects, for each provider;
    the server is never reached and the refusal is not retried."""
    server = llm_server(script=[FINAL])
    dns = FakeDNS({"llm.attacker.test": ["127.0.0.1"]})
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    core = MTCore(settings=make_settings(tmp_path / "home", llm_allowed_networks=()))
    acme = core.tenant("acme")
    base_url = f"http://llm.attacker.test:{server.port}" + ("" if provider == "azure_openai" else "/v1")
    extra = {"api_version": "2024-10-21"} if provider == "azure_openai" else {}
    llm_id = acme.add_llm(provider=provider, base_url=base_url, api_key=API_KEY, model_name="m", max_retries=3,
                          **extra)

    error, record = run(acme, llm_id)

    assert isinstance(error, RunError) and server.requests == []
    assert "resolves to 127.0.0.1, a loopback address" in str(error) and "MT_LLM_ALLOWED_NETWORKS" in str(error)
    assert dns.calls["llm.attacker.test"] == 1
    assert [(c["outcome"], c["error_type"]) for c in record["llm_calls"]] == [("failed", "BlockedAddressError")]


def test_literal_addresses_are_refused_at_add_llm_for_every_provider(tmp_path):
    core = MTCore(settings=make_settings(tmp_path / "home", llm_allowed_networks=()))
    acme = core.tenant("acme")
    for provider, extra in (("azure_openai", {"api_version": "2024-10-21"}), ("huggingface", {})):
        with pytest.raises(BlockedAddressError):
            acme.add_llm(provider=provider, base_url="http://169.254.169.254", model_name="m", **extra)


# -- typed fields --------------------------------------------------------------------------------


def test_option_values_are_checked_and_every_problem_is_named(core):
    acme = core.tenant("acme")
    with pytest.raises(LLMConfigError) as caught:
        acme.add_llm(base_url="http://127.0.0.1:9/v1", model_name="m", temperature="hot", max_tokens=-5)
    assert caught.value.field == "temperature"
    assert str(caught.value) == ("temperature: must be a number from 0 to 2, got 'hot';"
                                 " max_tokens: must be a whole number of at least 1, got -5")
    assert acme.get_llms() == []


@pytest.mark.parametrize(("options", "message"), [
    ({"temperature": 2.5}, "temperature: must be a number from 0 to 2, got 2.5"),
    ({"temperature": True}, "temperature: must be a number from 0 to 2, got True"),
    ({"top_p": -0.1}, "top_p: must be a number from 0 to 1, got -0.1"),
    ({"max_tokens": 1.5}, "max_tokens: must be a whole number of at least 1, got 1.5"),
    ({"seed": "7"}, "seed: must be a whole number, got '7'"),
    ({"timeout": 0}, "timeout: must be a number above 0 and at most 60 seconds (the operator's MT_LLM_TIMEOUT)"),
    ({"timeout": 61}, "got 61"),
    ({"max_retries": 6}, "max_retries: must be a whole number from 0 to 5 (the operator's MT_LLM_MAX_RETRIES), got 6"),
    ({"cache_ttl": -1}, "cache_ttl: must be a number above 0 and at most 2.592e+06 seconds, got -1"),
    ({"temprature": 0}, "temprature: is not a field of provider 'openai' (did you mean 'temperature'?)"),
    ({"max_token": 5}, "did you mean 'max_tokens'?"),
])
def test_bad_values_and_misspelt_names(core, options, message):
    with pytest.raises(LLMConfigError) as caught:
        core.tenant("acme").add_llm(base_url="http://127.0.0.1:9/v1", model_name="m", **options)
    assert message in str(caught.value)


def test_a_misspelt_provider_gets_a_suggestion(core):
    with pytest.raises(LLMConfigError, match=r"provider: 'opnai' is not an installed provider \(did you mean 'openai'\?\)"):
        core.tenant("acme").add_llm(base_url="http://127.0.0.1:9/v1", model_name="m", provider="opnai")
    with pytest.raises(LLMConfigError, match="installed: azure_openai, huggingface, openai"):
        core.tenant("acme").add_llm(base_url="http://127.0.0.1:9/v1", model_name="m", provider="zzz")


def test_the_operator_bounds_move_with_the_settings(tmp_path):
    core = MTCore(settings=make_settings(tmp_path / "home", llm_timeout=10.0, max_llm_retries=1))
    acme = core.tenant("acme")
    with pytest.raises(LLMConfigError, match="at most 10 seconds"):
        acme.add_llm(base_url="http://127.0.0.1:9/v1", model_name="m", timeout=11)
    with pytest.raises(LLMConfigError, match="from 0 to 1"):
        acme.add_llm(base_url="http://127.0.0.1:9/v1", model_name="m", max_retries=2)


class TypedPlugin:
    """A provider plugin that declares its fields with types and a FieldSpec."""

    @staticmethod
    @hookimpl
    def mt_register_llm_providers(register):
        register("typed", lambda config: None, required={"model_name": str},
                 optional={"temperature": float, "mode": FieldSpec(str, choices=("fast", "exact")),
                           "depth": FieldSpec(int, minimum=1, maximum=3), "verbose": bool, "anything": None})


class PlainPlugin:
    """A provider plugin written before typed fields: names only."""

    @staticmethod
    @hookimpl
    def mt_register_llm_providers(register):
        register("plain", lambda config: None, required=("model_name",), optional=("temperature", "colour"))


class BadPlugin:
    @staticmethod
    @hookimpl
    def mt_register_llm_providers(register):
        register("bad", lambda config: None, optional={"temperature": list})


def test_plugins_declare_typed_fields_and_old_style_names_still_work(core):
    core.plugins.register(TypedPlugin, name="typed-plugin")
    core.plugins.register(PlainPlugin, name="plain-plugin")
    info = core.plugins.register(BadPlugin, name="bad-plugin")
    assert "provider 'bad': field 'temperature': declare str, int, float, bool or a FieldSpec" in info.error
    assert "bad" not in core.plugins.providers
    typed = core.plugins.providers["typed"]
    assert typed.required == ("model_name",) and "mode" in typed.optional
    acme = core.tenant("acme")
    assert acme.add_llm(provider="typed", model_name="m", mode="fast", depth=2, verbose=True, anything=[1][0])
    with pytest.raises(LLMConfigError, match="mode: must be one of 'fast', 'exact', got 'slow'"):
        acme.add_llm(provider="typed", model_name="m", mode="slow")
    with pytest.raises(LLMConfigError, match="depth: must be a whole number from 1 to 3, got 4"):
        acme.add_llm(provider="typed", model_name="m", depth=4)
    with pytest.raises(LLMConfigError, match="verbose: must be true or false, got 1"):
        acme.add_llm(provider="typed", model_name="m", verbose=1)
    # names only: any string, number or boolean, as before
    assert acme.add_llm(provider="plain", model_name="m", llm_name="p", temperature="warm", colour="blue")
    with pytest.raises(LLMConfigError, match="colour: must be a string, number or boolean, got list"):
        acme.add_llm(provider="plain", model_name="m", colour=["blue"])


def test_a_fallback_whose_provider_is_gone_is_left_out_of_the_chain(core):
    from mt_core.default_plugins.openai_provider import build_model

    class Gone:
        @staticmethod
        @hookimpl
        def mt_register_llm_providers(register):
            register("soon-gone", build_model, required=("base_url", "model_name"))

    core.plugins.register(Gone, name="gone-plugin")
    acme = core.tenant("acme")
    fallback = acme.add_llm(provider="soon-gone", base_url="http://127.0.0.1:9/v1", model_name="m", llm_name="f")
    primary = acme.add_llm(base_url="http://127.0.0.1:9/v1", model_name="m", llm_name="p", fallbacks=[fallback])
    assert [link.config.id for link in core.llms.resolve("acme", primary)] == [primary, fallback]
    core.plugins.unregister("gone-plugin")
    assert [link.config.id for link in core.llms.resolve("acme", primary)] == [primary]
    with pytest.raises(LLMConfigError, match="'soon-gone' of .* is not installed"):
        core.llms.resolve("acme", fallback)
