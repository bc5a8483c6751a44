"""Rotating the master key leaves the installation working after the shell that rotated it closes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mt_core.secrets import generate_master_key

SECRET = "sk-rotate-0123456789abcdef"

# A new process that decrypts the key: it runs a query against a scripted server on 127.0.0.1,
# whose recorded Authorization header proves the decrypted key was sent.
USE_THE_KEY = f'''
import sys
from mt_core import get_core, run_query
from mt_core.testing import ScriptedLLMServer

acme = get_core().tenant("acme")
with ScriptedLLMServer(["<code>final_answer('ok')</code>"]) as server:
    llm_id = acme.add_llm(base_url=server.base_url, api_key={SECRET!r}, model_name="m",
                          llm_name="scripted") if sys.argv[1] == "add" else acme.get_llms()[0]["id"]
    if sys.argv[1] != "add":
        # the stored configuration points at the server of the first process: point a copy here
        config = get_core().llms.resolve("acme", llm_id).primary
        llm_id = acme.add_llm(base_url=server.base_url, api_key=config.api_key, model_name="m",
                              llm_name="scripted-" + sys.argv[1])
    result = run_query([], llm_id, "say ok", use_docker=False, tenant="acme")
    assert server.requests[0]["headers"]["authorization"] == "Bearer {SECRET}"
print(result)
'''


def user_env(home: Path, **variables: str) -> dict[str, str]:
    """A shell of a user with MT_HOME set and nothing else of ours (no master key variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MT_") or k == "MT_CACHE_DIR"}
    return {**env, "MT_HOME": str(home), "MT_LOAD_PLUGINS": "", "MT_LLM_ALLOWED_NETWORKS": "127.0.0.0/8", **variables}


def run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def python(snippet_arg: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-c", USE_THE_KEY, snippet_arg], env, cwd)


def mt(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "mt_core", *args], env, cwd)


def test_rotating_a_key_file_installation_keeps_it_working_in_new_processes(tmp_path):
    home = tmp_path / "home"
    env = user_env(home)
    first = python("add", env, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "generated a master key" in first.stderr
    key_file = home / "master.key"
    old_key = key_file.read_text()

    rotated = mt("keys", "rotate", env=env, cwd=tmp_path)
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.startswith("rotated 1 secrets to master key ")
    assert f"keep {key_file}" in rotated.stdout and "mt keys rotate --finish" in rotated.stdout
    assert key_file.read_text() != old_key
    previous = home / "master.key.previous"
    assert previous.read_text() == old_key
    for path in (key_file, previous):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SECRET not in rotated.stdout + rotated.stderr

    # the shell closed: a new process with no key variable at all decrypts and uses the key
    after = python("after-rotate", env, tmp_path)
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip() == "ok"

    finished = mt("keys", "rotate", "--finish", env=env, cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    assert f"deleted {previous}" in finished.stdout and not previous.exists()
    again = python("after-finish", env, tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "ok"


@pytest.mark.filterwarnings("ignore:MT_MASTER_KEY is not set")
def test_a_running_process_follows_a_rotation_of_its_key_file(tmp_path):
    from mt_core import MTCore, Settings

    home = tmp_path / "home"
    running = MTCore(settings=Settings(home=home, load_plugins=(), llm_allowed_networks=("127.0.0.0/8",)))  # key file mode, like a service
    acme = running.tenant("acme")
    before = acme.add_llm(base_url="http://127.0.0.1:9/v1", api_key=SECRET, model_name="m", llm_name="before")
    assert mt("keys", "rotate", env=user_env(home), cwd=tmp_path).returncode == 0
    # rows re-encrypted under the new key decrypt (the key file is re-read), new rows use the new key
    assert running.llms.resolve("acme", before).primary.api_key == SECRET
    added = acme.add_llm(base_url="http://127.0.0.1:9/v1", api_key=SECRET, model_name="m", llm_name="after")
    stored = running.storage.get_llm("acme", added)["api_key_ciphertext"]
    assert stored.split(":")[1] == running.secrets.current_key_id  # written under the new key
    assert mt("keys", "rotate", "--finish", env=user_env(home), cwd=tmp_path).returncode == 0
    assert MTCore(settings=Settings(home=home, load_plugins=(), llm_allowed_networks=("127.0.0.0/8",))).llms.resolve("acme", added).primary.api_key == SECRET


def test_environment_rotation_refuses_to_strand_a_key_file(tmp_path):
    home = tmp_path / "home"
    env = user_env(home)
    assert python("add", env, tmp_path).returncode == 0
    old, new = (home / "master.key").read_text().strip(), generate_master_key()

    refused = mt("keys", "rotate", env={**env, "MT_MASTER_KEY": new, "MT_MASTER_KEY_PREVIOUS": old}, cwd=tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"Error: MT_MASTER_KEY is set, but this installation's key file {home / 'master.key'}")
    assert "Nothing was changed" in refused.stderr and "--drop-key-file" in refused.stderr
    assert (home / "master.key").read_text().strip() == old
    assert python("after-refusal", env, tmp_path).returncode == 0  # still works without any variable

    moved = mt("keys", "rotate", "--drop-key-file", env={**env, "MT_MASTER_KEY": new, "MT_MASTER_KEY_PREVIOUS": old},
               cwd=tmp_path)
    assert moved.returncode == 0, moved.stderr
    assert "keep MT_MASTER_KEY (master key " in moved.stdout and "keep MT_MASTER_KEY_PREVIOUS set" in moved.stdout
    assert not (home / "master.key").exists()
    # without the variable the installation says what is missing instead of generating a useless key
    without = python("without-key", env, tmp_path)
    assert without.returncode == 1 and "No new key was generated" in without.stderr
    assert not (home / "master.key").exists()
    with_key = python("with-key", {**env, "MT_MASTER_KEY": new}, tmp_path)
    assert with_key.returncode == 0, with_key.stderr
    finished = mt("keys", "rotate", "--finish", env={**env, "MT_MASTER_KEY": new}, cwd=tmp_path)
    assert finished.returncode == 0 and "MT_MASTER_KEY_PREVIOUS is no longer needed" in finished.stdout
