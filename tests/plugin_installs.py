"""Real pip installs of plugin distributions into a throwaway folder, for the plugin tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_TOOLS = ROOT / "example_tools_pkg"
BROKEN_PLUGINS = ROOT / "tests" / "plugins" / "mt-broken-plugins"


def pip_install(target: Path, *requirements: str | Path, deps: bool = False) -> None:
    """``pip install --target`` (no build isolation: setuptools comes from the test extras)."""
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--no-build-isolation", "--target", str(target),
    ]
    if not deps:
        command.append("--no-deps")
    result = subprocess.run([*command, *map(str, requirements)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"pip install failed:\n{result.stdout}\n{result.stderr}")


def write_distribution(folder: Path, name: str, version: str, module_source: str) -> Path:
    """A minimal plugin project (pyproject + one module) registering through group ``mt_core``."""
    module = name.replace("-", "_")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(module_source)
    (folder / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{name}"\nversion = "{version}"\n'
        f'[project.entry-points.mt_core]\n{module} = "{module}"\n'
        f'[tool.setuptools]\npy-modules = ["{module}"]\n'
    )
    return folder
