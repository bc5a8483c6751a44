"""The ``mt`` command, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import API_KEY, CALCULATOR, current_backend


def mt(*args: str, home) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **current_backend().env(home), "MT_LOAD_PLUGINS": ""}
    return subprocess.run([sys.executable, "-m", "mt_core", *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def populated(core):
    acme = core.tenant("acme")
    acme.add_tool("calculator", "Evaluates arithmetic.", CALCULATOR)
    acme.add_llm(base_url="http://127.0.0.1:9/v1", api_key=API_KEY, model_name="m", llm_name="gpt")
    return core


def test_plugins_lists_the_default_plugins(tmp_path):
    out = mt("plugins", "--json", home=tmp_path)
    assert out.returncode == 0, out.stderr
    names = {p["name"]: p for p in json.loads(out.stdout)}
    assert names["mt_core.default_plugins.openai_provider"]["hooks"] == ["mt_register_llm_providers"]
    assert names["mt_core.default_plugins.executors"]["error"] is None


def test_tools_and_llms_lists_are_scoped_and_masked(populated):
    out = mt("tools", "list", "--tenant", "acme", home=populated.home)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split() == ["id", "name", "origin", "output_type", "description"]
    assert "calculator" in out.stdout
    assert "(none)" in mt("tools", "list", "--tenant", "globex", home=populated.home).stdout
    llms = mt("llms", "list", "--tenant", "acme", "--json", home=populated.home)
    assert json.loads(llms.stdout)[0]["api_key"] == "sk-te…ET"
    assert API_KEY not in llms.stdout + llms.stderr


def test_bad_tenant_is_a_clean_error(tmp_path):
    out = mt("tools", "list", "--tenant", "../etc", home=tmp_path)
    assert out.returncode == 1
    assert "Error: tenant: '../etc' is not a valid tenant name" in out.stderr
    assert "Traceback" not in out.stderr


def test_keys_generate(tmp_path):
    out = mt("keys", "generate", home=tmp_path)
    assert out.returncode == 0 and len(out.stdout.strip()) == 44
