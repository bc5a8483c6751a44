"""Scripts are rerunnable: exist_ok=True returns the stored id of an identical definition."""

from __future__ import annotations


import pytest

import mt_core
from conftest import API_KEY, CALCULATOR, raw_sql
from mt_core import ConflictError


def test_add_tool_again_reuses_an_identical_tool_and_explains_a_conflict(core):
    acme = core.tenant("acme")
    tool_id = acme.add_tool("calculator", "Evaluates arithmetic.", CALCULATOR, dependencies=["packaging>=20"])
    assert acme.add_tool("calculator", "Evaluates arithmetic.", CALCULATOR, dependencies=["packaging >= 20"],
                         exist_ok=True) == tool_id  # the same requirement, written differently
    with pytest.raises(ConflictError) as caught:
        acme.add_tool("calculator", "Evaluates arithmetic.", CALCULATOR)
    assert str(caught.value) == (
        f"this tenant already has a tool named 'calculator' ({tool_id}); pass exist_ok=True to reuse it when the"
        " definition is the same, or choose another name"
    )
    with pytest.raises(ConflictError, match=rf"'calculator' \({tool_id}\) with a different description and code;"
                       " delete it first to replace it, or choose another name"):
        acme.add_tool("calculator", "Other.", CALCULATOR + "\n# changed\n", dependencies=["packaging>=20"], exist_ok=True)
    assert [t["id"] for t in acme.get_tools()] == [tool_id]


def test_add_llm_again_reuses_an_identical_configuration_comparing_the_decrypted_key(core):
    acme = core.tenant("acme")
    fields = {"base_url": "http://127.0.0.1:9/v1", "api_key": API_KEY, "model_name": "llama-3", "temperature": 0.2}
    llm_id = acme.add_llm(**fields)  # named after the model: the user never chose "llama-3" as a name
    assert acme.add_llm(**fields, exist_ok=True) == llm_id
    with pytest.raises(ConflictError) as caught:
        acme.add_llm(**fields)
    assert str(caught.value) == (
        f"this tenant already has an LLM configuration named 'llama-3' ({llm_id}); pass exist_ok=True to reuse it"
        " when the definition is the same, or choose another name"
    )
    with pytest.raises(ConflictError, match="with a different api_key;"):
        acme.add_llm(**{**fields, "api_key": API_KEY + "x"}, exist_ok=True)
    with pytest.raises(ConflictError, match="with a different base_url and options;"):
        acme.add_llm(**{**fields, "base_url": "http://127.0.0.1:8/v1", "temperature": 0.3}, exist_ok=True)
    assert len(acme.get_llms()) == 1
    # the comparison stored nothing in plaintext
    assert not raw_sql(core, "SELECT 1 FROM llms WHERE api_key_ciphertext LIKE ?", (f"%{API_KEY}%",))


def test_module_functions_take_exist_ok(default_core):
    tool_id = mt_core.add_tool("calculator", "Evaluates arithmetic.", CALCULATOR, tenant="acme")
    assert mt_core.add_tool("calculator", "Evaluates arithmetic.", CALCULATOR, tenant="acme", exist_ok=True) == tool_id
    llm_id = mt_core.add_llm(base_url="http://127.0.0.1:9/v1", api_key=API_KEY, model_name="m", tenant="acme")
    assert mt_core.add_llm(base_url="http://127.0.0.1:9/v1", api_key=API_KEY, model_name="m", tenant="acme",
                           exist_ok=True) == llm_id
    # another tenant's identical definitions are its own
    assert mt_core.add_tool("calculator", "Evaluates arithmetic.", CALCULATOR, tenant="globex", exist_ok=True) != tool_id
