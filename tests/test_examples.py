"""The files a user runs first: example.py (make demo) and test.py (the seed's check)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LLM_API_KEY", "MT_MASTER_KEY", "API_BASE_URL", "MODEL_NAME")}
    env["MT_HOME"] = str(tmp_path / "home")
    env["MT_LOAD_PLUGINS"] = ""
    return subprocess.run(
        [sys.executable, str(ROOT / script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.backends("sqlite")
def test_example_runs_the_offline_demo_model(tmp_path):
    first = _run("example.py", tmp_path)
    assert first.returncode == 0, first.stderr
    assert "OFFLINE DEMO MODEL" in first.stdout
    assert "Answer: 400" in first.stdout
    assert "status=succeeded" in first.stdout
    assert "demo-key" not in first.stdout + first.stderr
    # a second run reuses the tool instead of failing on the taken name
    second = _run("example.py", tmp_path)
    assert second.returncode == 0, second.stderr
    assert "Answer: 400" in second.stdout


@pytest.mark.backends("sqlite")
def test_seed_check_passes(tmp_path):
    result = _run("test.py", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout
    assert result.stdout.count("ok ") == 4
    assert (tmp_path / "home" / "mt.db").is_file()
