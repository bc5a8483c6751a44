"""The Makefile's install commands, run as `make install` runs them (offline: no dependencies)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.backends("sqlite")  # the Makefile does not touch a database

ROOT = Path(__file__).resolve().parent.parent
BANNER = "Editable installation"


def test_editable_installs_print_no_setuptools_banner(tmp_path):
    venv = tmp_path / "venv"
    planned = subprocess.run(["make", "-n", "-B", "install", f"VENV={venv}"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout
    [install] = [line for line in planned.splitlines() if " -e " in line]
    # a throwaway venv that borrows this one's pip and setuptools, so nothing is downloaded
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}

    def run(command: str) -> str:
        done = subprocess.run(f"{command} --no-deps --no-build-isolation", shell=True, cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    assert BANNER not in run(install)
    unfiltered = install.replace('PYTHONWARNINGS="ignore:Editable installation" ', "")
    assert unfiltered != install and BANNER in run(unfiltered)  # what the filter silences is really there
