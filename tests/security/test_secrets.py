"""Secrets stay secret: bound ciphertext, rotation, and no key in logs, errors, reprs or output."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from conftest import CALCULATOR, CALCULATOR_SCRIPT, current_backend, decrypted, make_settings, raw_sql
from mt_core import MTCore, RunError, SecretError
from mt_core.secrets import generate_master_key

pytestmark = pytest.mark.filterwarnings("ignore::mt_core.errors.SandboxFallbackWarning")

SECRET = "sk-live-TOPSECRET-0123456789abcdef"


def test_ciphertext_copied_to_another_row_or_tenant_does_not_decrypt(core):
    acme, globex = core.tenant("acme"), core.tenant("globex")
    first = acme.add_llm(base_url="http://127.0.0.1:9/v1", api_key=SECRET, model_name="a")
    second = acme.add_llm(base_url="http://127.0.0.1:9/v1", api_key="sk-other-key-000000000", model_name="b")
    theirs = globex.add_llm(base_url="http://127.0.0.1:9/v1", api_key="sk-globex-key-00000000", model_name="c")
    sealed = raw_sql(core, "SELECT api_key_ciphertext FROM llms WHERE id = ?", (first,))[0][0]
    raw_sql(core, "UPDATE llms SET api_key_ciphertext = ? WHERE id IN (?, ?)", (sealed, second, theirs))
    assert decrypted(core, "acme", first).api_key == SECRET
    with pytest.raises(SecretError, match="does not decrypt for this tenant and row"):
        decrypted(core, "acme", second)
    with pytest.raises(SecretError, match="does not decrypt for this tenant and row"):
        decrypted(core, "globex", theirs)


def test_rotation_re_encrypts_everything_and_reads_never_stop(tmp_path):
    old, new = generate_master_key(), generate_master_key()
    before = MTCore(settings=make_settings(tmp_path, master_key=old))
    ids = {t: before.tenant(t).add_llm(base_url="http://127.0.0.1:9/v1", api_key=f"{SECRET}-{t}", model_name="m")
           for t in ("acme", "globex", "initech")}

    during = MTCore(settings=make_settings(tmp_path, master_key=new, previous_master_keys=(old,)))
    assert decrypted(during, "acme", ids["acme"]).api_key == f"{SECRET}-acme"  # old ciphertext, new core
    added = during.tenant("acme").add_llm(base_url="http://127.0.0.1:9/v1", api_key=f"{SECRET}-new", model_name="n")
    assert during.rotate_secrets() == {"rotated": 3, "skipped": 0}
    assert during.rotate_secrets() == {"rotated": 0, "skipped": 0}

    after = MTCore(settings=make_settings(tmp_path, master_key=new))  # old key gone
    for tenant, llm_id in ids.items():
        assert decrypted(after, tenant, llm_id).api_key == f"{SECRET}-{tenant}"
    assert decrypted(after, "acme", added).api_key == f"{SECRET}-new"
    with pytest.raises(SecretError, match="not configured"):
        decrypted(MTCore(settings=make_settings(tmp_path, master_key=old)), "acme", ids["acme"])


def test_mt_keys_rotate_command(tmp_path):
    old, new = generate_master_key(), generate_master_key()
    core = MTCore(settings=make_settings(tmp_path, master_key=old))
    llm_id = core.tenant("acme").add_llm(base_url="http://127.0.0.1:9/v1", api_key=SECRET, model_name="m")
    env = {**os.environ, **current_backend().env(tmp_path), "MT_MASTER_KEY": new, "MT_MASTER_KEY_PREVIOUS": old,
           "MT_LOAD_PLUGINS": ""}
    out = subprocess.run([sys.executable, "-m", "mt_core", "keys", "rotate"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("rotated 1 secrets")
    assert SECRET not in out.stdout + out.stderr
    assert decrypted(MTCore(settings=make_settings(tmp_path, master_key=new)), "acme", llm_id).api_key == SECRET


def test_key_never_appears_in_logs_output_errors_reprs_or_records(tmp_path, llm_server, caplog, capfd):
    caplog.set_level(logging.DEBUG)  # every logger: ours, smolagents', openai's, httpx's
    core = MTCore(settings=make_settings(tmp_path))
    acme = core.tenant("acme")
    server = llm_server(CALCULATOR_SCRIPT)
    tool_id = acme.add_tool("calculator", "Evaluates arithmetic.", CALCULATOR)
    llm_id = acme.add_llm(base_url=server.base_url, api_key=SECRET, model_name="m")
    result = acme.run_query([tool_id], llm_id, "What is 25 multiplied by 16?", verbosity=2)
    assert str(result) == "400"
    # a failing run whose endpoint echoes the key back in its error
    failing = llm_server([{"status": 401, "content": f"Incorrect API key provided: {SECRET}"}])
    bad_llm = acme.add_llm(base_url=failing.base_url, api_key=SECRET, model_name="m2", max_retries=0)
    with pytest.raises(RunError) as caught:
        acme.run_query([tool_id], bad_llm, "hello", verbosity=2)

    assert server.requests[0]["headers"]["authorization"] == f"Bearer {SECRET}"  # it was really used
    seen = {
        "logs": caplog.text,
        "output": "".join(capfd.readouterr()),
        "error": str(caught.value) + repr(caught.value),
        "records": repr(acme.get_runs()),
        "configs": repr(acme.get_llms()) + repr(acme.get_llm_config(llm_id)),
        "config repr": repr(decrypted(core, "acme", llm_id)),
        "result": repr(result) + repr(result.trace),
        "core": repr(core) + repr(core.settings) + repr(core.secrets),
    }
    for where, text in seen.items():
        assert SECRET not in text, f"the API key leaked into {where}"
        assert SECRET[5:-2] not in text, f"most of the API key leaked into {where}"
    assert "[REDACTED]" in acme.get_run(caught.value.run_id)["error"]


def test_settings_repr_hides_master_key(tmp_path):
    settings = make_settings(tmp_path)
    assert settings.master_key not in repr(settings)
