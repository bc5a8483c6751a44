"""Without a usable Docker sandbox the Docker tests skip, reported as one line saying what to set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.backends("sqlite")  # skip messages do not touch a database

ROOT = Path(__file__).resolve().parent.parent


def test_docker_skips_are_one_line_naming_the_variable(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MT_REQUIRE_DOCKER"}
    env["DOCKER_IMAGE"] = "mt-no-such-image:never"
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", str(ROOT / "tests" / "docker")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    skipped = [line for line in out.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(skipped) == 1, "\n".join(skipped)
    assert skipped[0].startswith("SKIPPED [") and "tests/docker/docker_support.py:1: Docker sandbox tests skipped:" in skipped[0]
    assert "set DOCKER_IMAGE to a local base image" in skipped[0]
    assert " skipped" in out.stdout.splitlines()[-1] and "failed" not in out.stdout.splitlines()[-1]
