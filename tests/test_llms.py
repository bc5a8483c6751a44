"""LLM configurations: providers, validation, masking and encryption at rest."""

from __future__ import annotations

import os
import stat
import warnings

import pytest

from conftest import API_KEY, CALCULATOR, decrypted, make_settings
from mt_core import LLMConfigError, MTCore, NotFoundError, SecretError, Settings
from mt_core.secrets import SecretBox, generate_master_key, mask


def test_add_and_read_back_with_key_masked(core):
    acme = core.tenant("acme")
    llm_id = acme.add_llm(
        base_url="http://127.0.0.1:9/v1", api_key=API_KEY, model_name="llama-3", llm_name="llama-model", temperature=0.2
    )
    config = acme.get_llm_config(llm_id)
    assert config == {
        "id": llm_id, "name": "llama-model", "provider": "openai", "model_name": "llama-3",
        "base_url": "http://127.0.0.1:9/v1", "api_key": "sk-te…ET", "options": {"temperature": 0.2},
        "prices": None, "fallbacks": [], "created_at": config["created_at"],
    }
    assert acme.get_llms() == [config]
    assert API_KEY not in repr(decrypted(core, "acme", llm_id))
    assert decrypted(core, "acme", llm_id).api_key == API_KEY


def test_llm_name_defaults_to_model_name_and_must_be_unique(core):
    acme = core.tenant("acme")
    acme.add_llm(base_url="http://127.0.0.1:9/v1", api_key=API_KEY, model_name="llama-3")
    assert acme.get_llms()[0]["name"] == "llama-3"
    from mt_core import ConflictError

    with pytest.raises(ConflictError, match="already has an LLM configuration named 'llama-3'"):
        acme.add_llm(base_url="http://127.0.0.1:9/v1", api_key=API_KEY, model_name="llama-3")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"provider": "nope"}, "provider: 'nope' is not an installed provider"),
        ({"base_url": None}, "base_url: is required by provider 'openai'"),
        ({"model_name": None}, "model_name: is required by provider 'openai'"),
        ({"model_name": "  "}, "model_name: is required"),
        ({"base_url": "ftp://example.com"}, "base_url: 'ftp://example.com' is not an http:// or https:// URL"),
        ({"base_url": "localhost:8000"}, "is not an http:// or https:// URL"),
        ({"base_url": "file:///etc/passwd"}, "is not an http:// or https:// URL"),
        ({"api_key": "has space"}, "api_key: must not contain whitespace"),
        ({"llm_name": "../x"}, "llm_name: '../x' is not a valid name"),
        ({"colour": "blue"}, "colour: is not a field of provider 'openai'"),
        ({"temperature": [1]}, "temperature: must be a number from 0 to 2, got list"),
        ({"organization": [1]}, "organization: must be a string, got list"),
        ({"organization": "org\x00"}, "organization: must not contain NUL bytes"),
        ({"organization": "org\ud800"}, "organization: is not valid UTF-8 text"),
    ],
)
def test_invalid_configurations_are_rejected_and_nothing_is_stored(core, kwargs, message):
    acme = core.tenant("acme")
    arguments = {"base_url": "http://127.0.0.1:9/v1", "api_key": API_KEY, "model_name": "m", **kwargs}
    with pytest.raises(LLMConfigError, match=message):
        acme.add_llm(**arguments)
    assert acme.get_llms() == []


def test_delete(core):
    acme = core.tenant("acme")
    llm_id = acme.add_llm(base_url="http://127.0.0.1:9/v1", api_key=API_KEY, model_name="m")
    acme.delete_llm(llm_id)
    assert acme.get_llms() == []
    with pytest.raises(NotFoundError, match=f"llm '{llm_id}' not found"):
        acme.get_llm_config(llm_id)


@pytest.mark.backends("sqlite")
def test_database_file_never_holds_the_plaintext_key(core):
    acme = core.tenant("acme")
    acme.add_llm(base_url="http://127.0.0.1:9/v1", api_key=API_KEY, model_name="m")
    core.close()  # checkpoint nothing away: read the main file and the WAL as they are
    stored = b"".join(p.read_bytes() for p in core.home.iterdir() if p.name.startswith("mt.db"))
    assert b"mt.db" not in stored and len(stored) > 0
    assert API_KEY.encode() not in stored
    assert b"v1:" in stored  # the versioned ciphertext is there instead


def test_ciphertext_is_bound_to_tenant_and_row():
    box = SecretBox(os.urandom(32))
    sealed = box.encrypt("sk-secret", tenant="acme", context="llms:llm_1:api_key")
    assert sealed.startswith("v1:")
    assert box.decrypt(sealed, tenant="acme", context="llms:llm_1:api_key") == "sk-secret"
    with pytest.raises(SecretError, match="does not decrypt for this tenant and row"):
        box.decrypt(sealed, tenant="globex", context="llms:llm_1:api_key")
    with pytest.raises(SecretError, match="does not decrypt"):
        box.decrypt(sealed, tenant="acme", context="llms:llm_2:api_key")
    with pytest.raises(SecretError, match="not configured"):
        SecretBox(os.urandom(32)).decrypt(sealed, tenant="acme", context="llms:llm_1:api_key")
    with pytest.raises(SecretError, match="malformed"):
        box.decrypt("v1:garbage", tenant="acme", context="x")


def test_generated_key_file_is_private_and_warned_about(tmp_path):
    core = MTCore(settings=Settings(home=tmp_path / "home", load_plugins=(), llm_allowed_networks=("127.0.0.0/8",)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        core.tenant("acme").add_llm(base_url="http://127.0.0.1:9/v1", api_key=API_KEY, model_name="m")
    assert any("MT_MASTER_KEY is not set" in str(w.message) for w in caught)
    key_file = tmp_path / "home" / "master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # a second installation on the same directory reads the same key back
    again = MTCore(settings=Settings(home=tmp_path / "home", load_plugins=(), llm_allowed_networks=("127.0.0.0/8",)))
    assert decrypted(again, "acme", again.tenant("acme").get_llms()[0]["id"]).api_key == API_KEY


def test_wrong_master_key_is_a_clear_error(tmp_path):
    MTCore(settings=make_settings(tmp_path)).tenant("acme").add_llm(
        base_url="http://127.0.0.1:9/v1", api_key=API_KEY, model_name="m"
    )
    other = MTCore(settings=make_settings(tmp_path))
    llm_id = other.tenant("acme").get_llms()[0]["id"]
    with pytest.raises(SecretError, match="not configured"):
        decrypted(other, "acme", llm_id)
    with pytest.raises(SecretError, match="MT_MASTER_KEY must be urlsafe base64 of 32 bytes"):
        MTCore(settings=make_settings(tmp_path / "x", master_key="too-short")).secrets


def test_mask():
    assert mask("sk-abcdefghijklmnopyz") == "sk-ab…yz"
    assert mask("short") == "…"
    assert mask(None) is None
    assert len(generate_master_key()) == 44


def test_database_never_holds_the_plaintext_key(core):
    acme = core.tenant("acme")
    acme.add_llm(base_url="http://127.0.0.1:9/v1", api_key=API_KEY, model_name="m")
    acme.add_tool("calculator", "Evaluates arithmetic.", CALCULATOR, secrets={"CALC_TOKEN": API_KEY})
    dump = repr([rows for _, rows in core.storage.export_rows()])  # every row of every table, as stored
    assert API_KEY not in dump and API_KEY[5:-2] not in dump
    assert dump.count("v1:") == 2  # the two versioned ciphertexts are there instead
